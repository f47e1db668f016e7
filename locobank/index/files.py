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
from locobank.catalog.connect import sqlite_file
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
    catalog: str  # the catalog URL, password hidden (shown in messages)
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
    catalog_id: str = ""  # Catalog.catalog_id; "" in sidecars written before ids (then the URL binds)

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


def catalog_folder(home: str | os.PathLike[str], catalog_id: str | None) -> Path:
    """``HOME/index/<catalog id>``: bound to the catalog's identity, not to how it was reached, so
    indexes of different catalogs under one home never collide and an index follows a home that is
    copied or moved (``HOME/index`` itself without a catalog)."""
    base = Path(home) / "index"
    return base if catalog_id is None else base / catalog_id


def _holds_index(folder: Path) -> bool:
    """Whether a folder holds any built index."""
    return any(folder.glob("*.faiss"))


def catalog_index_folder(catalog: Catalog, home: str | os.PathLike[str] | None = None) -> Path:
    """Where the search index of ``catalog`` lives; every command that builds, checks or searches
    an index asks here, so they all agree.

    Under ``home`` when given. Else under ``$LOCOBANK_HOME``, unless that holds no index of this
    catalog and a SQLite catalog file has one beside it (``<its folder>/index/<id>``, as
    ``locobank demo`` leaves it) or an index from before catalog ids is there
    (:func:`legacy_folder`); a new index is built under ``$LOCOBANK_HOME``."""
    if home is not None:
        return catalog_folder(home, catalog.catalog_id)
    own = catalog_folder(default_home(), catalog.catalog_id)
    path = sqlite_file(catalog.url)
    places = [catalog_folder(path.parent, catalog.catalog_id)] if path is not None else []
    places.append(legacy_folder(default_home(), catalog.url))
    return next((p for p in [own, *places] if _holds_index(p)), own)


def legacy_folder(home: str | os.PathLike[str], catalog_url: str) -> Path:
    """Where locobank before catalog ids (migration 0006) kept a catalog's index: named after the
    URL it was reached by. Still read, so an upgraded catalog keeps its index without a rebuild."""
    key = hashlib.sha256(catalog_url.encode()).hexdigest()[:8]
    return Path(home) / "index" / f"{slug(catalog_url.split('://')[-1], 'catalog')[-60:]}-{key}"


def index_files(clip_id: str, folder: str | os.PathLike[str] | None = None, *,
                catalog: Catalog | None = None) -> tuple[Path, Path]:
    """The (``.faiss``, ``.json``) paths for a CLIP model: a readable slug plus a hash, never colliding;
    in ``folder``, else in the catalog's folder (:func:`catalog_index_folder`), else ``$LOCOBANK_HOME/index``."""
    if folder is not None:
        where = Path(folder)
    elif catalog is not None:
        where = catalog_index_folder(catalog)
    else:
        where = catalog_folder(default_home(), None)
    stem = f"{slug(clip_id, 'clip')[:80]}-{hashlib.sha256(clip_id.encode()).hexdigest()[:8]}"
    return where / f"{stem}.faiss", where / f"{stem}.json"


def foreign_catalog(info: IndexInfo, catalog: Catalog) -> str | None:
    """Why an index belongs to another catalog, or None when it is this one's: by catalog id, or by
    URL for sidecars written before indexes recorded the id."""
    if info.catalog_id:
        if info.catalog_id != catalog.catalog_id:
            return f"built from another catalog ({info.catalog}, id {info.catalog_id})"
        return None
    if info.catalog and info.catalog != catalog.url:
        return f"built from another catalog ({info.catalog})"
    return None


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the same folder, fsync, and rename over ``path``, so a crash or a
    concurrent reader never sees a half-written index."""
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
def build_lock(json_path: Path) -> Iterator[None]:
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


def read_info(json_path: Path) -> IndexInfo:
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


def utc_now() -> str:
    """UTC now, ISO 8601: the ``built_at`` a sidecar records, comparable across machines."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def compare_status(catalog: Catalog, info: IndexInfo, index_ids: Callable[[], np.ndarray], gpu: bool) -> dict[str, Any]:
    """Compare an index's recorded state with the catalog, the one staleness check behind ``index
    status`` and ``LoadedIndex.status``; ``index_ids`` is called only when they differ."""
    state = catalog.effects_state(info.clip_id)
    reasons: list[str] = []
    new = deleted = reembedded = 0
    foreign = foreign_catalog(info, catalog)
    if foreign:
        reasons.append(foreign)
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
        "catalog_id": info.catalog_id,
        "catalog_state": info.catalog_state,
        "effects_state": info.effects_state,
        "max_direction_id": info.max_direction_id,
        "gpu": gpu,
    }
