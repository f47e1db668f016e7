"""Building, loading and checking the search index against its catalog."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from locobank import __version__
from locobank.catalog import Catalog
from locobank.errors import IndexMissing, SearchIndexError
from locobank.progress import Progress

from .faiss_ops import (FAISS_VERSION, LoadedIndex, add_vectors, default_nprobe, gpu_count, index_ids, make_index,
                        new_index, read_faiss, remove_ids, resolve_factory, write_index_files)
from .files import (DEFAULT_FACTORY, RETRAIN_GROWTH, IndexInfo, build_lock, compare_status, foreign_catalog,
                    index_files, read_info, utc_now)

log = logging.getLogger(__name__)

# -- building and loading ------------------------------------------------------------------------


def _full_rebuild_reason(old: IndexInfo | None, catalog: Catalog, factory: str, dim: int, n_live: int) -> str | None:
    """Why the index must be rebuilt from scratch rather than updated, or None."""
    if old is None:
        return "no index yet"
    if old.factory != factory:
        return f"factory changed from {old.factory!r} to {factory!r}"
    foreign = foreign_catalog(old, catalog)
    if foreign:
        return foreign
    if old.dim != dim:
        return f"dimension changed from {old.dim} to {dim}"
    if old.trained_on and n_live > RETRAIN_GROWTH * old.trained_on:
        return f"the catalog grew from {old.trained_on} to {n_live} effects since the quantizer was trained"
    return None


def build_index(
    catalog: Catalog,
    clip_id: str,
    *,
    factory: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> IndexInfo:
    """Bring the index of ``clip_id`` up to date with the catalog and save it; returns its metadata.

    Adds the directions embedded since the last build, re-adds re-embedded ones, removes deleted
    ones. Builds from scratch when there is no index, when ``rebuild``, or when the factory, catalog,
    or dimension changed (or the index kind cannot remove, like HNSW, and something was deleted).
    ``factory=None`` keeps the existing index's factory (``Flat`` for a new index).
    """
    faiss_path, json_path = index_files(clip_id, folder, catalog=catalog)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(json_path):
        # State first, vectors after: anything stored in between is fetched again next time, never missed.
        catalog_state = catalog.state_token()
        state = catalog.effects_state(clip_id)
        if state.dim is None:
            raise SearchIndexError(
                f"the catalog {catalog.url} has no effect embeddings for CLIP model {clip_id!r}; embed the "
                "directions first"
            )
        old = _old_info(json_path, faiss_path)
        if factory is None:
            factory = old.factory if old is not None else DEFAULT_FACTORY
        why = "rebuild asked" if rebuild else _full_rebuild_reason(old, catalog, factory, state.dim, state.live)
        index = read_faiss(faiss_path, old) if why is None and old is not None else None
        if why is None and index is None:
            why = "the index file does not match its metadata"
        if why is None and old is not None:
            changes = _update(index, catalog, clip_id, old.effects_seq, progress)
            if changes is None:
                why = f"{old.resolved_factory} cannot remove entries"
            else:
                (added, removed), trained_on, resolved = changes, old.trained_on, old.resolved_factory
        if why is not None:
            log.info("building the index of %s from scratch: %s", clip_id, why)
            index, resolved, trained_on, added = _from_scratch(catalog, clip_id, factory, state.dim, progress)
            removed = 0
        all_ids = index_ids(index)
        info = IndexInfo(
            clip_id=clip_id, factory=factory, resolved_factory=resolved, dim=int(index.d), ntotal=int(index.ntotal),
            catalog=catalog.url, catalog_id=catalog.catalog_id, catalog_state=catalog_state, effects_state=state.token, effects_seq=state.last_seq,
            max_direction_id=int(all_ids[-1]) if all_ids.size else None, built_at=utc_now(), trained_on=trained_on,
            nprobe=default_nprobe(index), faiss_version=FAISS_VERSION, locobank_version=__version__, added=added,
            removed=removed, rebuilt=why is not None,
        )
        write_index_files(index, info, faiss_path, json_path)
    return info


def _old_info(json_path: Path, faiss_path: Path) -> IndexInfo | None:
    """The metadata of the index already there (None: none, or unreadable and so rebuilt)."""
    if not (json_path.exists() and faiss_path.exists()):
        return None
    try:
        return read_info(json_path)
    except SearchIndexError as e:
        log.warning("%s; rebuilding", e)
        return None


def _from_scratch(catalog: Catalog, clip_id: str, factory: str, dim: int, progress: Progress | None):
    """A new index of every live effect: (index, resolved factory, vectors trained on, added)."""
    ids, vectors = catalog.effects_for(clip_id)
    if len(ids):
        index, resolved, trained_on = make_index(ids, vectors, factory, progress)
        return index, resolved, trained_on, len(ids)
    # every embedded direction was deleted: an empty index, if the kind needs no training
    resolved = resolve_factory(factory, 0)
    index = new_index(dim, resolved)
    if not index.is_trained:
        raise SearchIndexError(f"{resolved} must be trained and {clip_id!r} has no live effects; use Flat")
    return index, resolved, None, 0


def _update(
    index: Any, catalog: Catalog, clip_id: str, since_seq: int, progress: Progress | None
) -> tuple[int, int] | None:
    """Apply what changed since ``since_seq`` in place: (added, removed), or None if it cannot remove."""
    have = index_ids(index)
    live = catalog.effect_ids(clip_id)
    ids, vectors = catalog.effects_for(clip_id, since_id=since_seq)  # new and re-embedded
    late = np.setdiff1d(np.setdiff1d(live, have), ids)  # committed after an earlier build read the state
    if late.size:
        more_ids, more = catalog.effects_for(clip_id, ids=late)
        ids, vectors = np.concatenate([ids, more_ids]), np.concatenate([vectors, more])
    gone = np.setdiff1d(have, live)
    drop = np.union1d(gone, np.intersect1d(ids, have))  # re-embedded ones go out, then back in
    if drop.size and not remove_ids(index, drop):
        return None
    add_vectors(index, ids, vectors, progress)
    return len(ids), int(gone.size)


_LOADED: OrderedDict[tuple, LoadedIndex] = OrderedDict()
_LOADED_MAX = 4
_LOADED_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def load_index(
    clip_id: str, folder: str | os.PathLike[str] | None = None, *, gpu: bool | None = None, cache: bool = True,
    catalog: Catalog | None = None,
) -> LoadedIndex:
    """The saved index of a CLIP model, ready to search; ``IndexMissing`` if none was built.
    ``catalog`` picks its folder (``catalog_index_folder``) when ``folder`` is not given.

    Loaded indexes are kept in memory (the last few), keyed by their files' identity, so repeated
    searches in one process do not read the index again; a rebuild writes new files and is picked
    up on the next call. ``cache=False`` always reads from disk.
    """
    faiss_path, json_path = index_files(clip_id, folder, catalog=catalog)
    if not (json_path.exists() and faiss_path.exists()):
        raise IndexMissing(
            f"no search index for CLIP model {clip_id!r} in {json_path.parent}; run `locobank index build`"
        )
    if not cache:
        return _load_index_files(faiss_path, json_path, gpu)
    try:
        key = (str(faiss_path.resolve()), _file_key(faiss_path), _file_key(json_path), gpu)
    except OSError:  # replaced between the check and the stat: read it the plain way
        return _load_index_files(faiss_path, json_path, gpu)
    with _LOADED_LOCK:
        hit = _LOADED.get(key)
        if hit is not None:
            _LOADED.move_to_end(key)
            return hit
    loaded = _load_index_files(faiss_path, json_path, gpu)
    with _LOADED_LOCK:
        for old in [k for k in _LOADED if k[0] == key[0]]:
            del _LOADED[old]  # an older build of the same index
        _LOADED[key] = loaded
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return loaded


def _load_index_files(faiss_path: Path, json_path: Path, gpu: bool | None) -> LoadedIndex:
    info = read_info(json_path)
    index = read_faiss(faiss_path, info)
    if index is None:
        raise SearchIndexError(
            f"the index {faiss_path} is unreadable or does not match its metadata; "
            "run `locobank index build --rebuild`"
        )
    return LoadedIndex(index, info, gpu=gpu)


def index_status(catalog: Catalog, clip_id: str, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Is the saved index of ``clip_id`` up to date? ``stale`` plus ``reasons`` like "12 new directions".

    Cheap when fresh (two small queries and the json); the index file is read only to count changes.
    """
    faiss_path, json_path = index_files(clip_id, folder, catalog=catalog)
    if not (json_path.exists() and faiss_path.exists()):
        state = catalog.effects_state(clip_id)
        return {
            "clip_id": clip_id,
            "exists": False,
            "stale": True,
            "reasons": ["no index yet; run `locobank index build`"],
            "notes": [],
            "effects": state.live,
            "ntotal": 0,
            "path": str(faiss_path),
        }
    info = read_info(json_path)

    def ids() -> np.ndarray:
        index = read_faiss(faiss_path, info)
        if index is None:
            raise SearchIndexError(f"the index {faiss_path} is unreadable or does not match its metadata")
        return index_ids(index)

    try:
        out = compare_status(catalog, info, ids, gpu_count() > 0)
    except SearchIndexError as e:
        out = compare_status(catalog, info, lambda: np.zeros(0, np.int64), gpu_count() > 0)
        out["reasons"] = [f"{e}; run `locobank index build --rebuild`"]
        out["stale"] = True
    out["path"] = str(faiss_path)
    return out

