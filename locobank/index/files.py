"""The index's records and files: its metadata sidecar, where its files live, atomic writes and
the build lock."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from locobank.catalog import Catalog, default_home
from locobank.errors import SearchIndexError
from locobank.paths import slug

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "Flat"
FORMAT = 1
TRAIN_POINTS_PER_LIST = 50  # k-means wants >= 39 per centroid; more only slows training
RETRAIN_GROWTH = 4.0  # retrain an IVF quantizer once the catalog is this many times what it saw
ADD_CHUNK = 65_536  # vectors per add() call, so progress moves and peak memory stays flat



# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexInfo:
    """What an index file holds and which catalog state it was built from (its ``.json`` sidecar)."""

    clip_id: str
    factory: str  # as the user gave it, e.g. "IVF" (a change forces a rebuild)
    resolved_factory: str  # what FAISS built, e.g. "IVF632,Flat"
    dim: int
    ntotal: int
    catalog: str  # the catalog URL, password hidden
    catalog_state: str  # Catalog.state_token() when built
    effects_state: str  # Catalog.effects_state(clip_id).token when built: the staleness check
    effects_seq: int  # last effect sequence id included: incremental builds continue from it
    max_direction_id: int | None
    built_at: str  # ISO 8601, UTC
    trained_on: int | None  # vectors the quantizer was trained on (None: needs no training)
    nprobe: int | None  # default cells to visit (IVF only)
    faiss_version: str
    locobank_version: str
    added: int = 0  # by the build that wrote this file
    removed: int = 0
    rebuilt: bool = False
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


class SignedHit(NamedTuple):
    """A hit of a signed search: applying ``sign * v`` of direction ``id`` matches the query by ``score``."""

    id: int
    score: float
    sign: int


GPU_MAX_K = 2048  # the largest k faiss-gpu's selection kernels take


# -- files ---------------------------------------------------------------------------------------


def default_folder(catalog_url: str | None = None) -> Path:
    """``$LOCOBANK_HOME/index``, and in it one folder per catalog (:func:`catalog_folder`)."""
    return catalog_folder(default_home(), catalog_url)


def catalog_folder(home: Path, catalog_url: str | None) -> Path:
    """``HOME/index/<the catalog's key>``: indexes of different catalogs under one home never collide
    (``HOME/index`` itself without a catalog)."""
    base = Path(home) / "index"
    if catalog_url is None:
        return base
    key = hashlib.sha256(catalog_url.encode()).hexdigest()[:8]
    return base / f"{slug(catalog_url.split('://')[-1], 'catalog')[-60:]}-{key}"


def index_files(clip_id: str, folder: str | os.PathLike[str] | None = None, *,
                catalog_url: str | None = None) -> tuple[Path, Path]:
    """The (``.faiss``, ``.json``) paths for a CLIP model: a readable slug plus a hash, never colliding;
    in ``folder``, else in the catalog's own folder under ``$LOCOBANK_HOME/index``."""
    folder = Path(folder) if folder is not None else default_folder(catalog_url)
    stem = f"{slug(clip_id, 'clip')[:80]}-{hashlib.sha256(clip_id.encode()).hexdigest()[:8]}"
    return folder / f"{stem}.faiss", folder / f"{stem}.json"


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the same folder, fsync, and rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _build_lock(json_path: Path) -> Iterator[None]:
    """One builder per index at a time (POSIX advisory lock; elsewhere, no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(json_path.with_suffix(".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_info(json_path: Path) -> IndexInfo:
    """The metadata of an index, or ``SearchIndexError`` if the file is not ours."""
    try:
        data = json.loads(json_path.read_text())
        if data.get("format") != FORMAT:
            raise SearchIndexError(f"{json_path} is index format {data.get('format')!r}, this code reads {FORMAT}")
        return IndexInfo(**data)
    except (OSError, ValueError, TypeError) as e:
        raise SearchIndexError(
            f"cannot read index metadata {json_path}: {e}; rebuild with `locobank index build --rebuild`"
        ) from e


def _now() -> str:
    """UTC now, ISO 8601."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _status(catalog: Catalog, info: IndexInfo, index_ids: Callable[[], np.ndarray], gpu: bool) -> dict[str, Any]:
    """Compare an index's recorded state with the catalog; ``index_ids`` is called only when they differ."""
    state = catalog.effects_state(info.clip_id)
    reasons: list[str] = []
    new = deleted = reembedded = 0
    if info.catalog != catalog.url:
        reasons.append(f"built from another catalog ({info.catalog})")
    if state.dim is not None and state.dim != info.dim:
        reasons.append(f"effects now have dimension {state.dim}, the index {info.dim}")
    if state.token != info.effects_state or reasons:
        have = index_ids()
        live = catalog.effect_ids(info.clip_id)
        changed = catalog.effect_ids(info.clip_id, since_id=info.effects_seq)
        new = int(np.setdiff1d(live, have).size)
        deleted = int(np.setdiff1d(have, live).size)
        reembedded = int(np.intersect1d(changed, have).size)
        for count, what in ((new, "new"), (deleted, "deleted"), (reembedded, "re-embedded")):
            if count:
                reasons.append(f"{count} {what} direction{'s' if count != 1 else ''}")
    notes = []
    without = len(catalog.directions_without_effect(info.clip_id))
    if without:
        notes.append(f"{without} direction{'s' if without != 1 else ''} not embedded with this CLIP model yet")
    return {
        "clip_id": info.clip_id,
        "exists": True,
        "stale": bool(reasons),
        "reasons": reasons,
        "notes": notes,
        "new": new,
        "deleted": deleted,
        "reembedded": reembedded,
        "without_effect": without,
        "effects": state.live,
        "ntotal": info.ntotal,
        "dim": info.dim,
        "factory": info.factory,
        "resolved_factory": info.resolved_factory,
        "nprobe": info.nprobe,
        "built_at": info.built_at,
        "catalog": info.catalog,
        "catalog_state": info.catalog_state,
        "effects_state": info.effects_state,
        "max_direction_id": info.max_direction_id,
        "gpu": gpu,
    }
