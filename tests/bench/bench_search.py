"""Search latency of the FAISS index: exact Flat (the baseline) against IVF, at 100k and 1M directions.

Run:  .venv/bin/python tests/bench/bench_search.py [--dim 128|512] [--sizes 100000,1000000] [--threads 1]

- Indexes are built in memory with ``LoadedIndex.from_vectors`` and searched with
  ``LoadedIndex.search``: the index class and search path ``locobank search`` uses, minus the
  catalog and the CLIP text encoder (model load and text encoding are not timed).
- Data: a synthetic but clustered stand-in for effect embeddings. A Gaussian mixture of
  ``--clusters`` centres with Zipf-like weights (a few kinds of edit are common, many are rare) and a
  spread per cluster (cosine to the centre between about 0.6 and 0.85), L2-normalised. Queries are
  fresh draws from the same mixture. Uniform noise would be the easy-to-beat worst case for IVF and
  the wrong picture of CLIP embeddings, which cluster by meaning.
- Latency: one query at a time, k=10, ``--queries`` of them after a warm-up; p50 and p99.
- IVF: nlist defaults to the power of two nearest sqrt(n); nprobe is the smallest power of two whose
  recall@10 against Flat (on the same queries) is at least ``--target-recall``. The sweep is printed.
- Memory: the data is generated in chunks into one array (float16 when float32 would pass 1 GiB;
  the index holds float32), and the Flat index is freed before IVF is built. Peak RSS is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank.index import LoadedIndex, set_threads  # noqa: E402

CHUNK = 100_000


def mixture(n: int, dim: int, clusters: int, seed: int, dtype: type) -> np.ndarray:
    """n unit vectors from a fixed Zipf-weighted Gaussian mixture (the same mixture for every seed)."""
    shape_rng = np.random.default_rng(1234)  # the mixture itself
    centres = shape_rng.standard_normal((clusters, dim)).astype(np.float32) / math.sqrt(dim)
    spread = shape_rng.uniform(0.6, 1.3, size=clusters).astype(np.float32)  # cos to centre ~0.85..0.6
    weights = 1.0 / (np.arange(clusters) + 10.0)
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=dtype)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        label = rng.choice(clusters, size=m, p=weights)
        x = centres[label] + spread[label, None] * rng.standard_normal((m, dim), dtype=np.float32) / math.sqrt(dim)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def latencies_ms(index: LoadedIndex, queries: np.ndarray, k: int, nprobe: int | None, warmup: int = 20) -> np.ndarray:
    """Per-query wall time of ``index.search`` for single queries, in milliseconds."""
    for q in queries[:warmup]:
        index.search(q[None, :], k, nprobe=nprobe)
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        index.search(q[None, :], k, nprobe=nprobe)
        out[i] = (time.perf_counter() - t0) * 1000
    return out


def recall_at(truth: np.ndarray, found: np.ndarray) -> float:
    """Mean fraction of the true top-k found."""
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found, strict=True)]))


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def bench_size(n: int, args: argparse.Namespace) -> dict[str, float]:
    """Flat and IVF over n vectors; prints and returns the figures."""
    dtype = np.float32 if n * args.dim * 4 <= 2**30 else np.float16
    t0 = time.perf_counter()
    data = mixture(n, args.dim, args.clusters, seed=n, dtype=dtype)
    queries = mixture(args.queries, args.dim, args.clusters, seed=7, dtype=np.float32)
    ids = np.arange(1, n + 1, dtype=np.int64)
    print(f"\n== n={n:,} dim={args.dim} ({np.dtype(dtype).name} data, generated in {time.perf_counter() - t0:.1f}s)")

    set_threads(args.build_threads)
    t0 = time.perf_counter()
    flat = LoadedIndex.from_vectors(ids, data, factory="Flat")
    print(f"Flat   built in {time.perf_counter() - t0:.1f}s")
    truth = flat.search(queries, args.k)[1]  # batched: ground truth for recall
    set_threads(args.threads)
    n_flat = min(len(queries), args.flat_queries)
    flat_ms = latencies_ms(flat, queries[:n_flat], args.k, None)
    del flat

    nlist = args.nlist or 2 ** round(math.log2(math.sqrt(n)))
    factory = f"IVF{nlist},Flat"
    set_threads(args.build_threads)
    t0 = time.perf_counter()
    ivf = LoadedIndex.from_vectors(ids, data, factory=factory)
    build_s = time.perf_counter() - t0
    del data
    print(f"{factory} built in {build_s:.1f}s (trained on {min(n, 50 * nlist):,} sampled vectors)")
    sweep = []
    chosen = None
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        if nprobe > nlist:
            break
        r = recall_at(truth, ivf.search(queries, args.k, nprobe=nprobe)[1])
        sweep.append(f"{nprobe}:{r:.3f}")
        if r >= args.target_recall:
            chosen, recall = nprobe, r
            break
    print("recall@10 by nprobe  " + "  ".join(sweep))
    if chosen is None:
        chosen, recall = nprobe, r
        print(f"!! recall {args.target_recall} not reached up to nprobe={nprobe}")
    set_threads(args.threads)
    ivf_ms = latencies_ms(ivf, queries, args.k, chosen)
    del ivf

    f50, f99 = np.percentile(flat_ms, [50, 99])
    i50, i99 = np.percentile(ivf_ms, [50, 99])
    print(f"{'index':<22}{'p50 ms':>9}{'p99 ms':>9}{'recall@10':>11}{'queries':>9}")
    print(f"{'Flat (baseline)':<22}{f50:9.3f}{f99:9.3f}{1.0:11.3f}{n_flat:9d}")
    print(f"{factory + f' nprobe={chosen}':<22}{i50:9.3f}{i99:9.3f}{recall:11.3f}{len(ivf_ms):9d}")
    print(f"speed-up of IVF over Flat at p50: {f50 / i50:.1f}x   (peak RSS so far {peak_rss_gb():.2f} GB)")
    return dict(n=n, flat_p50=f50, flat_p99=f99, ivf_p50=i50, ivf_p99=i99, recall=recall, nprobe=chosen, nlist=nlist)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=128, help="128: the toy CLIP; 512: ViT-B-32")
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated index sizes")
    p.add_argument("--queries", type=int, default=1000, help="single queries timed (and recall queries)")
    p.add_argument("--flat-queries", type=int, default=300, help="at most this many timed on Flat (slow at 1M)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--clusters", type=int, default=1000, help="mixture components")
    p.add_argument("--nlist", type=int, default=None, help="IVF cells (default: power of two nearest sqrt(n))")
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=1, help="FAISS threads while timing searches")
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1, help="FAISS threads while building")
    args = p.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"bench_search: dim {args.dim}, k={args.k}, {args.threads} FAISS thread(s) for search "
        f"({args.build_threads} for building), {os.cpu_count()} CPUs, load average {load:.2f} at start"
    )
    print("data: clustered Gaussian mixture (Zipf-weighted clusters), L2-normalised; not uniform noise")
    rows = [bench_size(int(s), args) for s in args.sizes.split(",") if s.strip()]
    print("\nsummary (targets on CPU: Flat 100k p50 <= 10 ms; IVF 1M p50 <= 10 ms at recall@10 >= 0.95)")
    for r in rows:
        print(
            f"  n={r['n']:>9,}  Flat p50 {r['flat_p50']:7.3f} ms  p99 {r['flat_p99']:7.3f} ms | "
            f"IVF{r['nlist']} nprobe={r['nprobe']} p50 {r['ivf_p50']:6.3f} ms  p99 {r['ivf_p99']:6.3f} ms  "
            f"recall@10 {r['recall']:.3f} | Flat/IVF p50 ratio {r['flat_p50'] / r['ivf_p50']:.1f}x"
        )
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at end {load_end:.2f}; peak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
