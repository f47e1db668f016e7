"""ORM rows to plain records, and the checks on identifiers callers pass in."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from locobank.catalog.records import DirectionRecord, ImageRecord, JobRecord, MaskRecord, ModelRecord, RunRecord
from locobank.catalog.schema import Direction, HarvestRun, Image, Job, Mask, Model
from locobank.errors import InputError


def check_fingerprint(fingerprint: str) -> str:
    """Fingerprints are 16 lowercase hex chars; anything else is a caller bug."""
    if not (
        isinstance(fingerprint, str) and len(fingerprint) == 16 and all(c in "0123456789abcdef" for c in fingerprint)
    ):
        raise InputError(f"a model fingerprint is 16 lowercase hex characters, got {fingerprint!r}")
    return fingerprint


def check_sha(sha: str, what: str) -> str:
    """sha256 hex digests are 64 lowercase hex chars."""
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise InputError(f"{what} must be a sha256 hex digest, got {sha!r}")
    return sha


def model_record(m: Model) -> ModelRecord:
    """Detach a model row from its session."""
    return ModelRecord(
        m.id, m.model_id, m.revision, m.fingerprint, m.resolution, m.channels, m.kind, dict(m.config), m.created_at
    )


def image_record(i: Image) -> ImageRecord:
    """Detach an image row from its session."""
    return ImageRecord(i.id, i.uri, i.sha256, i.width, i.height, i.channels)


def mask_record(m: Mask) -> MaskRecord:
    """Detach a mask row from its session."""
    return MaskRecord(m.id, m.image_id, m.label, m.sha256, m.area, m.uri)


def run_record(r: HarvestRun) -> RunRecord:
    """Detach a run row from its session."""
    return RunRecord(r.id, r.model_id, dict(r.params), r.params_hash, r.locobank_version, r.created_at)


_DIRECTION_COLUMNS = (
    Direction,
    Job.run_id,
    Model,
    Image.sha256,
    Image.uri,
    Mask.label,
    Mask.sha256,
    HarvestRun.locobank_version,
    Mask.uri,
    Job.condition,
)


# Record fields that copy the row's column of the same name unchanged.
_JOB_SAME_NAMED = ("id", "run_id", "image_id", "mask_id", "status", "attempts", "error", "lease_owner",
               "lease_expires_at", "started_at", "finished_at")
_DIRECTION_SAME_NAMED = ("id", "job_id", "rank_index", "singular_value", "t_edit", "t_edit_frac", "null_rank",
                     "vector_sha256", "norm", "label", "label_score", "label_sign", "created_at", "deleted_at")


def _copied(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The row's columns of these names, keyed by name: the part of a record that is the row as is."""
    return {name: getattr(row, name) for name in names}


def job_record(
    j: Job, image_uri: str, image_sha256: str, mask_label: str, mask_uri: str | None, mask_sha256: str
) -> JobRecord:
    """A job plus where its image and mask live, so a worker needs no further queries."""
    return JobRecord(
        **_copied(j, _JOB_SAME_NAMED),
        image_uri=image_uri,
        image_sha256=image_sha256,
        mask_label=mask_label,
        mask_uri=mask_uri,
        mask_sha256=mask_sha256,
        condition=dict(j.condition) if j.condition else None,
    )


def direction_query() -> Select:
    """Directions joined with the provenance a record carries."""
    return (
        select(*_DIRECTION_COLUMNS)
        .join(Job, Direction.job_id == Job.id)
        .join(HarvestRun, Job.run_id == HarvestRun.id)
        .join(Model, Direction.model_id == Model.id)
        .join(Image, Job.image_id == Image.id)
        .join(Mask, Job.mask_id == Mask.id)
    )


def direction_record(row: Any) -> DirectionRecord:
    """A ``direction_query`` row as a record with its provenance."""
    d, run_id, m, image_sha, image_uri, mask_label, mask_sha, version, mask_uri, condition = row
    return DirectionRecord(
        **_copied(d, _DIRECTION_SAME_NAMED),
        run_id=run_id,
        model_db_id=m.id,
        model_id=m.model_id,
        model_revision=m.revision,
        fingerprint=m.fingerprint,
        shape=tuple(d.shape),
        diagnostics=dict(d.diagnostics),
        mask_label=mask_label,
        mask_sha256=mask_sha,
        image_sha256=image_sha,
        image_uri=image_uri,
        locobank_version=version,
        mask_uri=mask_uri,
        condition=dict(condition) if condition else None,
    )
