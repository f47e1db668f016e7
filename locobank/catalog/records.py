"""Plain frozen records the catalog hands out, so no ORM object or session leaks past the package."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _jsonable(value: Any) -> Any:
    """Datetimes as ISO strings and tuples as lists, so records print as JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class _Record:
    """Shared ``to_dict`` for the CLI's ``--json`` output."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelRecord(_Record):
    """A model the catalog knows, keyed by config fingerprint."""

    id: int
    model_id: str
    revision: str | None
    fingerprint: str
    resolution: int
    channels: int
    kind: str
    config: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ImageRecord(_Record):
    """A source image, keyed by the sha256 of its bytes."""

    id: int
    uri: str
    sha256: str
    width: int
    height: int
    channels: int


@dataclass(frozen=True)
class MaskRecord(_Record):
    """A labelled region of one image."""

    id: int
    image_id: int
    label: str
    sha256: str
    area: int
    uri: str | None


@dataclass(frozen=True)
class RunRecord(_Record):
    """A harvest run: one parameter set on one model."""

    id: int
    model_id: int
    params: dict[str, Any]
    params_hash: str
    locobank_version: str
    created_at: datetime


@dataclass(frozen=True)
class JobRecord(_Record):
    """A job with what a worker needs to run it (image and mask locations) without more queries."""

    id: int
    run_id: int
    image_id: int
    mask_id: int
    status: str
    attempts: int
    error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    image_uri: str
    image_sha256: str
    mask_label: str
    mask_uri: str | None
    mask_sha256: str
    condition: dict[str, Any] | None = None  # text-to-image models: prompt, guidance, seed, edit_prompt


@dataclass(frozen=True)
class DirectionRecord(_Record):
    """A stored direction and its full provenance."""

    id: int
    job_id: int
    run_id: int
    model_db_id: int
    model_id: str
    model_revision: str | None
    fingerprint: str
    rank_index: int
    singular_value: float
    t_edit: int
    t_edit_frac: float
    null_rank: int
    vector_sha256: str
    norm: float
    shape: tuple[int, ...]
    diagnostics: dict[str, Any]
    label: str | None
    label_score: float | None
    label_sign: int | None
    mask_label: str
    mask_sha256: str
    image_sha256: str
    image_uri: str
    locobank_version: str
    mask_uri: str | None
    created_at: datetime
    deleted_at: datetime | None
    condition: dict[str, Any] | None = None  # its job's: the prompt it was found under, etc.


@dataclass(frozen=True)
class NewDirection:
    """What a worker hands to ``complete_job`` for each direction it found.

    ``vector`` is a torch tensor or a numpy array (float16/bfloat16/float32/float64).
    """

    rank_index: int
    singular_value: float
    vector: Any
    t_edit: int
    t_edit_frac: float
    null_rank: int
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewEffect:
    """An effect embedding to store: what ``locobank.embed`` measured for one direction and CLIP model.

    ``vector`` is any float array-like of shape (dim,); the store L2-normalises it. ``consistency`` is
    the mean cosine between per-image effects (None when only one image was rendered).
    """

    direction_id: int
    clip_id: str
    vector: Any
    consistency: float | None
    n_images: int
    strength: float


@dataclass(frozen=True)
class EffectRecord(_Record):
    """A stored effect embedding; ``id`` is its sequence number (larger means stored later)."""

    id: int
    direction_id: int
    clip_id: str
    dim: int
    vector: Any = field(compare=False, repr=False)  # read-only float32 numpy array, unit norm
    consistency: float | None
    n_images: int
    strength: float
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the vector as a list of floats."""
        out = super().to_dict()
        out["vector"] = [float(x) for x in self.vector]
        return out


@dataclass(frozen=True)
class EffectsState:
    """What a search index for one CLIP model depends on; ``token`` changes whenever that changes."""

    clip_id: str
    dim: int | None  # None until the first effect for this CLIP model is stored
    live: int  # live directions with an effect for this CLIP model
    deleted: int  # deleted directions that still have one
    last_seq: int  # the largest effect id (0 when none): ``effects_for(since_id=...)`` continues from it
    token: str
