"""Repeated searches through ``load_index``: reading the index from disk on every call (the
baseline, ``cache=False``, what every search did before) against the in-process cache.

Run:  .venv/bin/python tests/bench/bench_index_load.py [--n 100000] [--dim 128] [--queries 50]

- A Flat index of ``--n`` random unit vectors is built in memory with
  ``LoadedIndex.from_vectors`` and written with the same writer ``locobank index build`` uses.
- Each timed query is ``load_index(...)`` then ``.search(q, 10)``: the path ``locobank.search``
  takes per call (the CLIP text encoding and catalog lookups are left out).
- Both paths run in this process on the same files, one after the other; p50 and the ratio are
  printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank.index import LoadedIndex, index_files, load_index, write_index_files  # noqa: E402

CLIP = "bench:load"


def per_query_ms(folder: Path, queries: np.ndarray, cache: bool) -> np.ndarray:
    """Wall time of load + search for each query, in milliseconds (one warm-up call first)."""
    load_index(CLIP, folder, cache=cache).search(queries[0], 10)
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        load_index(CLIP, folder, cache=cache).search(q, 10)
        out[i] = (time.perf_counter() - t0) * 1000
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128, help="128: the toy CLIP; 512: ViT-B-32")
    p.add_argument("--queries", type=int, default=50)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[rng.integers(args.n, size=args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        built = LoadedIndex.from_vectors(np.arange(1, args.n + 1), data, factory="Flat", clip_id=CLIP)
        write_index_files(built.index, built.info, *index_files(CLIP, folder))
        size_mb = index_files(CLIP, folder)[0].stat().st_size / 1e6
        base = per_query_ms(folder, queries, cache=False)
        cached = per_query_ms(folder, queries, cache=True)
    b50, c50 = float(np.median(base)), float(np.median(cached))
    print(f"Flat index, {args.n:,} x {args.dim} ({size_mb:.0f} MB on disk), {args.queries} queries, k=10")
    print(f"baseline (read the index every call): p50 {b50:8.2f} ms   p99 {np.percentile(base, 99):8.2f} ms")
    print(f"cached (load_index default):          p50 {c50:8.2f} ms   p99 {np.percentile(cached, 99):8.2f} ms")
    print(f"ratio (baseline / cached, p50): {b50 / c50:.1f}x")


if __name__ == "__main__":
    main()
