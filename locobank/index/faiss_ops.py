"""FAISS plumbing: making, training, filling, searching, saving and reading indexes.

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
- On disk, under ``$LOCOBANK_HOME/index/<catalog id>/`` by default: ``<clip>.faiss`` and ``<clip>.json``
  (metadata), each written to a temp file and renamed into place.
- Searches run on the GPU when faiss has one (``faiss.get_num_gpus() > 0``); the index is always kept,
  changed and saved on the CPU.
"""


from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from locobank import __version__
from locobank.catalog import Catalog
from locobank.errors import InputError, SearchIndexError
from locobank.progress import Progress, stage

from .files import (ADD_CHUNK, DEFAULT_FACTORY, GPU_MAX_K, TRAIN_POINTS_PER_LIST, IndexInfo, SignedHit, atomic_write,
                    compare_status, utc_now)

log = logging.getLogger(__name__)

FAISS_VERSION = faiss.__version__


def gpu_count() -> int:
    """GPUs faiss can search on (0 on faiss-cpu)."""
    return faiss.get_num_gpus()


def write_index_files(index: faiss.Index, info: IndexInfo, faiss_path: Path, json_path: Path) -> None:
    """Save index then metadata; a crash between the two leaves an older json that a rebuild repairs."""
    faiss_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(faiss_path, lambda p: faiss.write_index(index, str(p)))
    atomic_write(json_path, lambda p: p.write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n"))


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


def new_index(dim: int, resolved: str) -> faiss.Index:
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


def add_vectors(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray, progress: Progress | None) -> None:
    """Add vectors under their direction ids, in chunks."""
    total = len(ids)
    update = stage(progress, "indexing", total)
    for start in range(0, total, ADD_CHUNK):
        stop = min(start + ADD_CHUNK, total)
        index.add_with_ids(
            np.ascontiguousarray(vectors[start:stop], dtype=np.float32), np.ascontiguousarray(ids[start:stop], np.int64)
        )
        update(stop - start)


def index_ids(index: faiss.Index) -> np.ndarray:
    """The direction ids an index holds, sorted."""
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = _ivf(index)
    if ivf is None:  # pragma: no cover - new_index never makes one
        raise SearchIndexError(f"cannot list the ids of a {type(index).__name__}")
    inv = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy() for i in range(inv.nlist) if inv.list_size(i)
    ]
    return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, np.int64)


def remove_ids(index: faiss.Index, ids: np.ndarray) -> bool:
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


def make_index(
    ids: np.ndarray, vectors: np.ndarray, factory: str, progress: Progress | None = None
) -> tuple[faiss.Index, str, int | None]:
    """A fresh index over these vectors: (index, resolved factory, vectors trained on)."""
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise InputError(f"need ids (n,) and vectors (n, dim), got {ids.shape} and {vectors.shape}")
    resolved = resolve_factory(factory, len(vectors))
    index = new_index(vectors.shape[1], resolved)
    trained_on = _train(index, vectors, resolved)
    add_vectors(index, ids, vectors, progress)
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
        index, resolved, trained_on = make_index(ids, vectors, factory)
        info = IndexInfo(
            clip_id=clip_id, factory=factory, resolved_factory=resolved, dim=int(vectors.shape[1]),
            ntotal=int(index.ntotal), catalog="", catalog_state="", effects_state="", effects_seq=0,
            max_direction_id=int(ids.max()) if len(ids) else None, built_at=utc_now(), trained_on=trained_on,
            nprobe=default_nprobe(index), faiss_version=FAISS_VERSION, locobank_version=__version__,
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
        return index_ids(self.index)

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
        return compare_status(catalog, self.info, self.ids, gpu_count() > 0)


def read_faiss(faiss_path: Path, info: IndexInfo) -> faiss.Index | None:
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


