"""Benchmark: harvest throughput on the toy model, and what the catalog costs on top of finding directions.

The bare run does exactly the work of each job (load image and mask, batched DDIM inversion,
find_directions); the harvest runs the same jobs through plan() + work() into a fresh SQLite
catalog (claims, leases, vector blobs, one transaction per job). Overhead = harvest / bare - 1.

    .venv/bin/python tests/bench/bench_harvest.py [--faces 4] [--labels eyes,mouth,hair]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank import core  # noqa: E402
from locobank.catalog import Catalog  # noqa: E402
from locobank.harvest import HarvestParams, discover, plan, work  # noqa: E402
from locobank.images import check_mask, load_image, load_mask  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import TOY_DDPM  # noqa: E402
from locobank.toyworld import HELD_OUT_SEED, write_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=4)
    ap.add_argument("--labels", default="eyes,mouth,hair")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    model = load_model(TOY_DDPM)
    st = model.settings
    params = HarvestParams(rank=st.rank, null_rank=st.null_rank, t_edit=st.t_edit,
                           steps=st.steps, iters=args.iters)
    print(f"toy model {model.fingerprint} on CPU ({torch.get_num_threads()} threads); {args.faces} faces x "
          f"[{args.labels}], rank {params.rank}, null rank {params.null_rank}, t_edit {params.t_edit}, "
          f"{params.steps} steps, <= {params.iters} iterations")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_dataset(tmp / "faces", args.faces, HELD_OUT_SEED)
        pairs = discover(tmp / "faces", labels=set(args.labels.split(",")))
        t = core.to_timestep(model, params.t_edit)

        start = time.perf_counter()
        n_dirs = 0
        for i in range(0, len(pairs), args.batch):
            chunk = pairs[i : i + args.batch]
            xs = torch.stack([load_image(p.image, model.resolution) for p in chunk])
            masks = [check_mask(load_mask(p.mask, model.resolution), (32, 32)) for p in chunk]
            xts = core.invert(model, xs, t, params.steps)
            for xt, m in zip(xts, masks):
                found = core.find_directions(model, xt, t, m, rank=params.rank, null_rank=params.null_rank,
                                               iters=params.iters, tol=params.tol, seed=params.seed)
                n_dirs += len(found)
        bare = time.perf_counter() - start

        cat = Catalog.open(f"sqlite:///{tmp / 'c.db'}", upgrade=True)
        start = time.perf_counter()
        run = plan(cat, model, pairs, params)
        summary = work(cat, model, run.id, params, batch=args.batch)
        full = time.perf_counter() - start
        cat.close()
    print(f"bare finding:  {bare:7.2f} s for {len(pairs)} jobs, {n_dirs} directions ({60 * n_dirs / bare:.1f} directions/min)")
    print(f"harvest:       {full:7.2f} s for {summary.done} jobs, {summary.directions} directions "
          f"({60 * summary.directions / full:.1f} directions/min)")
    print(f"catalog overhead: {100 * (full / bare - 1):+.1f}% (target < 5%; two separate runs, so load drift shows here)")
    inside = summary.seconds - summary.find_seconds
    print(f"within the harvest run: finding directions {summary.find_seconds:.2f} s, everything else (claims, "
          f"leases, vector blobs, commits, image loading) {inside:.2f} s = {100 * inside / summary.find_seconds:.1f}% "
          f"of that")


if __name__ == "__main__":
    main()
