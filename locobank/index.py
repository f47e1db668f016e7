"""The search index: one FAISS index per CLIP model over the catalog's effect embeddings.

This is the only module that imports faiss. The catalog is the truth; an index is a cache of it that
records which catalog state it was built from, so it can say when it is stale and catch up by adding
and removing only what changed.

- Ids in the index are direction ids. Vectors are unit effect embeddings; the metric is inner product,
  so scores are cosines for unit queries.
- ``factory`` is any FAISS ``index_factory`` string: ``"Flat"`` (exact, the default), ``"IVF1024,Flat"``,
  ``"HNSW32"``, ``"IVF,PQ16"``... A bare ``IVF`` gets ``nlist = 4·sqrt(n)`` (the FAISS guideline),
  capped at ``n // 39`` so every cell has the 39 training points k-means wants. IVF quantizers train
  on at most ``50·nlist`` sampled vectors and are retrained when the catalog has grown 4x since.
  Searches visit ``nprobe`` cells: nlist/16 (at least 16) unless the caller passes another.
- On disk, under ``$LOCOBANK_HOME/index/`` by default: ``<clip>.faiss`` and ``<clip>.json``
  (metadata), each written to a temp file and renamed into place.
- Searches run on the GPU when faiss has one (``faiss.get_num_gpus() > 0``); the index is always kept,
  changed and saved on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import faiss
import numpy as np

from locobank import __version__
from locobank.catalog import Catalog, default_home
from locobank.errors import IndexMissing, InputError, SearchIndexError
from locobank.paths import slug

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "Flat"
FORMAT = 1
TRAIN_POINTS_PER_LIST = 50  # k-means wants >= 39 per centroid; more only slows training
RETRAIN_GROWTH = 4.0  # retrain an IVF quantizer once the catalog is this many times what it saw
ADD_CHUNK = 65_536  # vectors per add() call, so progress moves and peak memory stays flat

Progress = Callable[[int, int], None]  # (vectors added so far, vectors to add)


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


def default_folder() -> Path:
    """``$LOCOBANK_HOME/index``."""
    return default_home() / "index"


def index_files(clip_id: str, folder: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """The (``.faiss``, ``.json``) paths for a CLIP model: a readable slug plus a hash, never colliding."""
    folder = Path(folder) if folder is not None else default_folder()
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


def _write(index: faiss.Index, info: IndexInfo, faiss_path: Path, json_path: Path) -> None:
    """Save index then metadata; a crash between the two leaves an older json that a rebuild repairs."""
    faiss_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(faiss_path, lambda p: faiss.write_index(index, str(p)))
    _atomic_write(json_path, lambda p: p.write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n"))


# -- FAISS plumbing ------------------------------------------------------------------------------


def _ivf(index: faiss.Index) -> Any:
    """The IVF part of an index (also under a pre-transform), or None."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def auto_nlist(n: int) -> int:
    """IVF cells for ``n`` vectors: 4·sqrt(n), at most n // 39, at least 1."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))


def resolve_factory(factory: str, n: int) -> str:
    """Fill in a bare ``IVF`` with ``auto_nlist(n)``; ``IVF`` alone means ``IVF<nlist>,Flat``."""
    factory = factory.strip()
    if not factory:
        raise InputError("the index factory string is empty (try Flat, IVF, IVF1024,Flat or HNSW32)")
    parts = [p.strip() for p in factory.split(",")]
    parts = [f"IVF{auto_nlist(n)}" if p == "IVF" else p for p in parts]
    if len(parts) == 1 and parts[0].startswith("IVF") and parts[0][3:].isdigit():
        parts.append("Flat")
    return ",".join(parts)


def _new_index(dim: int, resolved: str) -> faiss.Index:
    """An empty inner-product index that takes direction ids: IVF keeps ids itself, others get IDMap2."""
    try:
        index = faiss.index_factory(dim, resolved, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(f"not a usable FAISS index factory string: {resolved!r} ({first})") from e
    if _ivf(index) is not None or isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return index
    return faiss.IndexIDMap2(index)


def _train(index: faiss.Index, vectors: np.ndarray, resolved: str) -> int | None:
    """Train on a seeded sample if the index needs it; returns how many vectors it saw (None: no training)."""
    if index.is_trained:
        return None
    ivf = _ivf(index)
    nlist = ivf.nlist if ivf is not None else 256
    if len(vectors) < nlist:
        raise SearchIndexError(
            f"{resolved} needs at least {nlist} vectors to train ({39 * nlist} recommended) and the catalog has "
            f"{len(vectors)}; use Flat, a bare IVF (sized to the catalog) or a smaller nlist"
        )
    sample = vectors
    if len(vectors) > TRAIN_POINTS_PER_LIST * nlist:
        pick = np.random.default_rng(0).choice(len(vectors), TRAIN_POINTS_PER_LIST * nlist, replace=False)
        sample = vectors[np.sort(pick)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return len(vectors)


def _add(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray, progress: Progress | None) -> None:
    """Add vectors under their direction ids, in chunks."""
    total = len(ids)
    for start in range(0, total, ADD_CHUNK):
        stop = min(start + ADD_CHUNK, total)
        index.add_with_ids(
            np.ascontiguousarray(vectors[start:stop], dtype=np.float32), np.ascontiguousarray(ids[start:stop], np.int64)
        )
        if progress is not None:
            progress(stop, total)


def _index_ids(index: faiss.Index) -> np.ndarray:
    """The direction ids an index holds, sorted."""
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = _ivf(index)
    if ivf is None:  # pragma: no cover - _new_index never makes one
        raise SearchIndexError(f"cannot list the ids of a {type(index).__name__}")
    inv = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy() for i in range(inv.nlist) if inv.list_size(i)
    ]
    return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)


def _remove(index: faiss.Index, ids: np.ndarray) -> bool:
    """Remove ids in place; False when this kind of index cannot (e.g. HNSW): the caller rebuilds."""
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        # IDMap compacts its id list assuming the inner index compacts too; only flat codes do.
        if not isinstance(faiss.downcast_index(index.index), faiss.IndexFlatCodes):
            return False
    elif _ivf(index) is None:  # pragma: no cover
        return False
    try:
        index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
    except RuntimeError:
        return False
    return True


def _make(
    ids: np.ndarray, vectors: np.ndarray, factory: str, progress: Progress | None = None
) -> tuple[faiss.Index, str, int | None]:
    """A fresh index over these vectors: (index, resolved factory, vectors trained on)."""
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise InputError(f"need ids (n,) and vectors (n, dim), got {ids.shape} and {vectors.shape}")
    resolved = resolve_factory(factory, len(vectors))
    index = _new_index(vectors.shape[1], resolved)
    trained_on = _train(index, vectors, resolved)
    _add(index, ids, vectors, progress)
    return index, resolved, trained_on


def default_nprobe(index: faiss.Index) -> int | None:
    """IVF cells a search visits unless told otherwise: nlist/16, at least 16 (None for non-IVF).

    Errs towards recall: on clustered data (tests/bench/bench_search.py) it gives recall@10 above
    0.95 where nlist/128 may not; pass ``nprobe`` to ``search`` to trade recall for speed.
    """
    ivf = _ivf(index)
    return None if ivf is None else int(min(ivf.nlist, max(16, ivf.nlist // 16)))


def set_threads(n: int) -> None:
    """How many OpenMP threads FAISS uses in this process (search, training, adding)."""
    faiss.omp_set_num_threads(int(n))


# -- searching -----------------------------------------------------------------------------------


class LoadedIndex:
    """A searchable index in memory, with the metadata it was built with."""

    def __init__(self, index: faiss.Index, info: IndexInfo, *, gpu: bool | None = None) -> None:
        """Wrap a CPU index; ``gpu=None`` searches on the GPU when faiss has one, False never."""
        self.index = index
        self.info = info
        self._ivf = _ivf(index)
        self._gpu_wanted = (faiss.get_num_gpus() > 0) if gpu is None else gpu
        self._gpu_index: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_vectors(
        cls, ids: np.ndarray, vectors: np.ndarray, *, factory: str = DEFAULT_FACTORY, clip_id: str = "memory",
        gpu: bool | None = None,
    ) -> LoadedIndex:
        """Build in memory, no catalog and no files: the same index and search path as ``build_index``.

        ``vectors`` may be any float array (float16 too); it is converted to float32 chunk by chunk.
        """
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors)
        index, resolved, trained_on = _make(ids, vectors, factory)
        info = IndexInfo(
            clip_id=clip_id, factory=factory, resolved_factory=resolved, dim=int(vectors.shape[1]),
            ntotal=int(index.ntotal), catalog="", catalog_state="", effects_state="", effects_seq=0,
            max_direction_id=int(ids.max()) if len(ids) else None, built_at=_now(), trained_on=trained_on,
            nprobe=default_nprobe(index), faiss_version=faiss.__version__, locobank_version=__version__,
            added=len(ids), rebuilt=True,
        )
        return cls(index, info, gpu=gpu)

    @property
    def ntotal(self) -> int:
        """How many directions the index holds."""
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return int(self.index.d)

    def ids(self) -> np.ndarray:
        """The direction ids in the index, sorted."""
        return _index_ids(self.index)

    def _searcher(self) -> Any:
        """The index searches run on: a GPU clone when wanted and possible, else the CPU index."""
        if not self._gpu_wanted:
            return self.index
        with self._lock:
            if self._gpu_index is None:
                try:
                    self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
                except (AttributeError, RuntimeError) as e:  # CPU-only build, or a type the GPU lacks (HNSW)
                    log.info("searching %s on the CPU: %s", self.info.resolved_factory, e)
                    self._gpu_wanted = False
                    return self.index
            return self._gpu_index

    def search(self, queries: np.ndarray, k: int, *, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores (q, k) float32, ids (q, k) int64); missing hits are id -1, score -inf."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(
                f"queries must have shape (q, {self.dim}) for the index of {self.info.clip_id}, got {tuple(q.shape)}"
            )
        if int(k) < 1:
            raise InputError(f"k must be at least 1, got {k}")
        if nprobe is not None and self._ivf is None:
            raise InputError(
                f"nprobe applies to IVF indexes; the index of {self.info.clip_id} is {self.info.resolved_factory}"
            )
        nprobe = nprobe if nprobe is not None else self.info.nprobe
        q = np.ascontiguousarray(q)
        searcher = self._searcher() if int(k) <= GPU_MAX_K else self.index  # GPU selection stops at k = 2048
        if searcher is self.index:
            params = faiss.SearchParametersIVF(nprobe=int(nprobe)) if self._ivf is not None else None
            scores, ids = searcher.search(q, int(k), params=params)
        else:
            with self._lock:  # GPU indexes take nprobe as state, not per call
                if self._ivf is not None:
                    faiss.GpuParameterSpace().set_index_parameter(searcher, "nprobe", int(nprobe))
                scores, ids = searcher.search(q, int(k))
        scores[ids < 0] = -np.inf
        return scores, ids.astype(np.int64, copy=False)

    def search_signed_many(self, queries: np.ndarray, k: int, *, nprobe: int | None = None) -> list[list[SignedHit]]:
        """For each query, the k directions whose v or -v matches best, each once, with that sign."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        n = len(q)
        scores, ids = self.search(np.concatenate([q, -q]), k, nprobe=nprobe)  # one batched call
        out = []
        for r in range(n):
            cand_ids = np.concatenate([ids[r], ids[n + r]])
            cand_scores = np.concatenate([scores[r], scores[n + r]])
            signs = np.repeat(np.array([1, -1], dtype=np.int64), len(ids[r]))
            hits: list[SignedHit] = []
            seen: set[int] = set()
            for j in np.argsort(-cand_scores, kind="stable"):
                did = int(cand_ids[j])
                if did < 0 or did in seen:
                    continue
                seen.add(did)
                hits.append(SignedHit(did, float(cand_scores[j]), int(signs[j])))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def search_signed(self, query: np.ndarray, k: int, *, nprobe: int | None = None) -> list[SignedHit]:
        """The k directions whose v or -v best matches one query: [(id, score, sign)], best first."""
        q = np.asarray(query, dtype=np.float32)
        if q.ndim != 1 and not (q.ndim == 2 and len(q) == 1):
            raise InputError(f"search_signed takes one query vector; use search_signed_many for {tuple(q.shape)}")
        return self.search_signed_many(q.reshape(1, -1), k, nprobe=nprobe)[0]

    def status(self, catalog: Catalog) -> dict[str, Any]:
        """Whether this index still matches the catalog, and what changed (see ``index_status``)."""
        return _status(catalog, self.info, self.ids)


# -- building and loading ------------------------------------------------------------------------


def _now() -> str:
    """UTC now, ISO 8601."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _full_rebuild_reason(old: IndexInfo | None, catalog: Catalog, factory: str, dim: int, n_live: int) -> str | None:
    """Why the index must be rebuilt from scratch rather than updated, or None."""
    if old is None:
        return "no index yet"
    if old.factory != factory:
        return f"factory changed from {old.factory!r} to {factory!r}"
    if old.catalog != catalog.url:
        return f"built from another catalog ({old.catalog})"
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
    faiss_path, json_path = index_files(clip_id, folder)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(json_path):
        # State first, vectors after: anything stored in between is fetched again next time, never missed.
        catalog_state = catalog.state_token()
        state = catalog.effects_state(clip_id)
        if state.dim is None:
            raise SearchIndexError(
                f"the catalog {catalog.url} has no effect embeddings for CLIP model {clip_id!r}; embed the "
                "directions first"
            )
        old: IndexInfo | None = None
        if json_path.exists() and faiss_path.exists():
            try:
                old = _read_info(json_path)
            except SearchIndexError as e:
                log.warning("%s; rebuilding", e)
        if factory is None:
            factory = old.factory if old is not None else DEFAULT_FACTORY
        why = "rebuild asked" if rebuild else _full_rebuild_reason(old, catalog, factory, state.dim, state.live)
        index = _read_faiss(faiss_path, old) if why is None and old is not None else None
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
            ids, vectors = catalog.effects_for(clip_id)
            if len(ids):
                index, resolved, trained_on = _make(ids, vectors, factory, progress)
            else:  # every embedded direction was deleted: an empty index, if the kind needs no training
                resolved, trained_on = resolve_factory(factory, 0), None
                index = _new_index(state.dim, resolved)
                if not index.is_trained:
                    raise SearchIndexError(f"{resolved} must be trained and {clip_id!r} has no live effects; use Flat")
            added, removed = len(ids), 0
            del vectors
        all_ids = _index_ids(index)
        info = IndexInfo(
            clip_id=clip_id,
            factory=factory,
            resolved_factory=resolved,
            dim=int(index.d),
            ntotal=int(index.ntotal),
            catalog=catalog.url,
            catalog_state=catalog_state,
            effects_state=state.token,
            effects_seq=state.last_seq,
            max_direction_id=int(all_ids[-1]) if all_ids.size else None,
            built_at=_now(),
            trained_on=trained_on,
            nprobe=default_nprobe(index),
            faiss_version=faiss.__version__,
            locobank_version=__version__,
            added=added,
            removed=removed,
            rebuilt=why is not None,
        )
        _write(index, info, faiss_path, json_path)
    return info


def _update(
    index: faiss.Index, catalog: Catalog, clip_id: str, since_seq: int, progress: Progress | None
) -> tuple[int, int] | None:
    """Apply what changed since ``since_seq`` in place: (added, removed), or None if it cannot remove."""
    have = _index_ids(index)
    live = catalog.effect_ids(clip_id)
    ids, vectors = catalog.effects_for(clip_id, since_id=since_seq)  # new and re-embedded
    late = np.setdiff1d(np.setdiff1d(live, have), ids)  # committed after an earlier build read the state
    if late.size:
        more_ids, more = catalog.effects_for(clip_id, ids=late)
        ids, vectors = np.concatenate([ids, more_ids]), np.concatenate([vectors, more])
    gone = np.setdiff1d(have, live)
    drop = np.union1d(gone, np.intersect1d(ids, have))  # re-embedded ones go out, then back in
    if drop.size and not _remove(index, drop):
        return None
    _add(index, ids, vectors, progress)
    return len(ids), int(gone.size)


def _read_faiss(faiss_path: Path, info: IndexInfo) -> faiss.Index | None:
    """The index file, or None if it is unreadable or does not match its metadata."""
    try:
        index = faiss.read_index(str(faiss_path))
    except RuntimeError as e:
        log.warning("cannot read %s: %s", faiss_path, e)
        return None
    if index.ntotal != info.ntotal or index.d != info.dim:
        log.warning(
            "%s holds %d x %d, its metadata says %d x %d", faiss_path, index.ntotal, index.d, info.ntotal, info.dim
        )
        return None
    return index


_LOADED: OrderedDict[tuple, LoadedIndex] = OrderedDict()
_LOADED_MAX = 4
_LOADED_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def load_index(
    clip_id: str, folder: str | os.PathLike[str] | None = None, *, gpu: bool | None = None, cache: bool = True
) -> LoadedIndex:
    """The saved index of a CLIP model, ready to search; ``IndexMissing`` if none was built.

    Loaded indexes are kept in memory (the last few), keyed by their files' identity, so repeated
    searches in one process do not read the index again; a rebuild writes new files and is picked
    up on the next call. ``cache=False`` always reads from disk.
    """
    faiss_path, json_path = index_files(clip_id, folder)
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
    info = _read_info(json_path)
    index = _read_faiss(faiss_path, info)
    if index is None:
        raise SearchIndexError(
            f"the index {faiss_path} is unreadable or does not match its metadata; "
            "run `locobank index build --rebuild`"
        )
    return LoadedIndex(index, info, gpu=gpu)


def _status(catalog: Catalog, info: IndexInfo, index_ids: Callable[[], np.ndarray]) -> dict[str, Any]:
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
        "gpu": faiss.get_num_gpus() > 0,
    }


def index_status(catalog: Catalog, clip_id: str, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Is the saved index of ``clip_id`` up to date? ``stale`` plus ``reasons`` like "12 new directions".

    Cheap when fresh (two small queries and the json); the index file is read only to count changes.
    """
    faiss_path, json_path = index_files(clip_id, folder)
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
    info = _read_info(json_path)

    def ids() -> np.ndarray:
        index = _read_faiss(faiss_path, info)
        if index is None:
            raise SearchIndexError(f"the index {faiss_path} is unreadable or does not match its metadata")
        return _index_ids(index)

    try:
        out = _status(catalog, info, ids)
    except SearchIndexError as e:
        out = _status(catalog, info, lambda: np.zeros(0, np.int64))
        out["reasons"] = [f"{e}; run `locobank index build --rebuild`"]
        out["stale"] = True
    out["path"] = str(faiss_path)
    return out
