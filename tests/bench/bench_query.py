"""A whole text query, as ``locobank.search.search`` runs it: CLIP text encoding, FAISS, and the
catalog. The baseline ranks by score alone (FAISS top-k, then one catalog lookup per hit: the
path before hits were ranked by match); the new path ranks by match = score x agreement, which
reads each candidate's transfer consistency and grows its candidate pool until the ranking is
exact.

Run:  .venv/bin/python tests/bench/bench_query.py [--n 30000] [--queries 60] [--db URL]

- The catalog is real: SQLite in a temporary folder by default, or any URL given with ``--db``
  (an empty Postgres database, say). It holds ``--n`` directions of one model (half harvested
  with a mouth mask, half with an eyes mask, for the filtered timing), each with a
  synthetic effect for the shipped toy CLIP: unit vectors clustered around the text directions of
  the query phrases and around random centres, with transfer consistencies drawn from -0.1 to 1.
- The index is a Flat index built by ``build_index``; the text encoder is the shipped toy CLIP
  (loaded once, not timed). Each query is timed whole, one at a time, k=10, after a warm-up.
- Also printed: how many candidates each query read from the catalog (the final pool), and how
  many of its hits differ from the score ranking. The data is clustered, so scores fall off
  quickly past a query's cluster; near-tied scores over many directions would grow the pool more.
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
sys.path.insert(0, str(ROOT / "tests"))

from catalog_support import harvest_all, make_world  # noqa: E402

from locobank.catalog import Catalog, NewEffect  # noqa: E402
from locobank.clip import load_clip  # noqa: E402
from locobank.index import build_index, load_index  # noqa: E402
from locobank.search import search, text_direction  # noqa: E402

PHRASES = ["smile", "frown", "blue eyes", "brown eyes", "bigger eyes", "blond hair", "black hair", "long hair",
           "glasses", "red hair", "a frowning face -> a smiling face", "green eyes"]


def score_only(cat: Catalog, clip, folder: Path, query: str, k: int) -> list:
    """The baseline: FAISS top-k by score, then each hit's catalog record."""
    hits = load_index(clip.clip_id, folder).search_signed(text_direction(clip, query), k)
    return [cat.get_direction(int(h.id)) for h in hits]


def timed(fn, queries: list[str]) -> np.ndarray:
    fn(queries[0])
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        fn(q)
        out[i] = (time.perf_counter() - t0) * 1000
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=30_000, help="directions in the catalog (a multiple of 3)")
    p.add_argument("--queries", type=int, default=60)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--db", default=None, help="catalog URL (default: a new SQLite file)")
    args = p.parse_args()
    clip = load_clip("toy")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{tmp}/bench.db"
        folder = Path(tmp) / "index"
        with Catalog.open(url, upgrade=True) as cat:
            t0 = time.perf_counter()
            ids = harvest_all(cat, make_world(cat, n_images=args.n // 6, labels=("mouth", "eyes")))
            texts = np.stack([text_direction(clip, q) for q in PHRASES])
            centres = np.concatenate([texts, rng.standard_normal((200, texts.shape[1]))])
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            x = centres[rng.integers(len(centres), size=len(ids))] + 0.08 * rng.standard_normal((len(ids), texts.shape[1]))
            consistency = rng.uniform(-0.1, 1.0, size=len(ids))
            cat.put_effects([NewEffect(i, clip.clip_id, v, float(c), 5, 4.0) for i, v, c in zip(ids, x, consistency)])
            build_index(cat, clip.clip_id, folder=folder)
            print(f"catalog {cat.url.split('://')[0]} with {len(ids):,} directions and effects, "
                  f"index built, in {time.perf_counter() - t0:.0f} s")
            queries = [PHRASES[i % len(PHRASES)] for i in range(args.queries)]
            text = timed(lambda q: text_direction(clip, q), queries)
            base = timed(lambda q: score_only(cat, clip, folder, q, args.k), queries)
            new = timed(lambda q: search(cat, clip, q, k=args.k, index_folder=folder), queries)
            masked = timed(lambda q: search(cat, clip, q, k=args.k, mask_label="eyes", index_folder=folder), queries)
            read, differ = [], []
            transfer_of = cat.transfer_of
            for q in PHRASES:
                asked: list[int] = []
                cat.transfer_of = lambda clip_id, ids, **kw: (asked.append(len(ids)), transfer_of(clip_id, ids, **kw))[1]
                hits = search(cat, clip, q, k=args.k, index_folder=folder)
                cat.transfer_of = transfer_of
                read.append(sum(asked))
                differ.append(sum(h.id not in {b.id for b in score_only(cat, clip, folder, q, args.k)} for h in hits))
    print(f"{args.queries} queries, k={args.k}, one at a time; milliseconds")
    print(f"text encoding alone (toy CLIP):      p50 {np.median(text):7.2f}   p99 {np.percentile(text, 99):7.2f}")
    print(f"baseline, ranked by score:           p50 {np.median(base):7.2f}   p99 {np.percentile(base, 99):7.2f}")
    print(f"ranked by match (locobank search):   p50 {np.median(new):7.2f}   p99 {np.percentile(new, 99):7.2f}")
    print(f"  with a filter (--mask eyes):       p50 {np.median(masked):7.2f}   p99 {np.percentile(masked, 99):7.2f}")
    print(f"ratio (match / score, p50): {np.median(new) / np.median(base):.2f}x")
    print(f"candidates read per query (the pool): {read}")
    print(f"hits that differ from the score ranking, per query: {differ}")


if __name__ == "__main__":
    main()
