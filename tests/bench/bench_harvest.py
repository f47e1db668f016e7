"""Benchmark: harvest throughput on a toy model: the path before (every basis pushes its whole
``r + oversample`` vectors each iteration, J v in forward mode) against the shipped one (small
blocks, :func:`locobank.loco.jacobian.block_width`: a quarter of each basis, at most
``KRYLOV_BLOCK``; J v as :data:`locobank.loco.linearization.JVP_MODE` says: reverse on the CPU),
cold against warm-started jobs (``--warm``), and what the catalog costs on top of finding
directions.

The same jobs run through plan() + work(), each run into a fresh SQLite catalog: every job from
random vectors with the whole block and forward J v, each job inverting its own image
(``warm_start=False``, the baseline: the path before; a batch now brings an image to its edit time
once for all its masks), small
blocks with forward J v (and J^T u under vmap, as before), the shipped path (J^T u through a batch of
copies of the state, :data:`locobank.loco.linearization.VJP_MODE`), then warm-started (``warm_start=True``: each job starts from the bases of the jobs
its worker finished before; the catalog is empty at first). Each prints directions per minute, and each job's cost in
forward-pass equivalents (FPE, from its diagnostics: one forward pass of the model, timed in the
same run, is the unit). Overhead = everything but finding directions, within the run.

    .venv/bin/python tests/bench/bench_harvest.py [--model toy|toy-sd] [--faces 4] [--labels eyes,mouth,hair]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank.catalog import Catalog  # noqa: E402
from locobank.harvest import HarvestParams, discover, plan, work, worker  # noqa: E402
from locobank.loco import jacobian  # noqa: E402
from locobank.loco.linearization import jvp_mode, resolve_jvp_mode, resolve_vjp_mode, vjp_mode  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import resolve_model  # noqa: E402
from locobank.toyworld import HELD_OUT_SEED, write_dataset  # noqa: E402


def harvest(model, pairs, params, db: Path, batch: int, warm: bool, together: bool = False) -> dict:
    """One harvest of ``pairs`` into a fresh catalog; its throughput and its jobs' diagnostics."""
    cat = Catalog.open(f"sqlite:///{db}", upgrade=True)
    start = time.perf_counter()
    run = plan(cat, model, pairs, params)
    summary = work(cat, model, run.id, params, batch=batch, warm_start=warm, together=together)
    full = time.perf_counter() - start
    diags = list({d.job_id: d.diagnostics for d in cat.list_directions()}.values())
    cat.close()
    return {"seconds": full, "summary": summary, "diags": diags,
            "per_min": 60 * summary.directions / full,
            "fpe": statistics.mean(d["fpe"] + d["state_fpe"] for d in diags),
            "rounds": statistics.mean(max(d["iterations"], d["null_iterations"]) for d in diags),
            "unit": statistics.median(d["forward_seconds"] for d in diags)}


@contextlib.contextmanager
def each_job_inverted():
    """The path before 2026-12-07 (later): a claimed batch inverted every job's image, an image's
    masks each inverting it again; here each job's image counts as its own."""
    shared = worker._states_by_time

    def alone(model, times, ready, params):
        return shared(model, times, [(replace(job, image_sha256=f"{job.image_sha256}#{job.id}"), x, m)
                                     for job, x, m in ready], params)

    worker._states_by_time = alone
    try:
        yield
    finally:
        worker._states_by_time = shared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy")
    ap.add_argument("--faces", type=int, default=4)
    ap.add_argument("--labels", default="eyes,mouth,hair")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--together", action="store_true", help="a third run: warm, each face's masks found together")
    args = ap.parse_args()
    model = load_model(resolve_model(args.model))
    st = model.settings
    params = HarvestParams(rank=st.rank, null_rank=st.null_rank, t_edit=st.t_edit,
                           steps=st.steps, iters=args.iters)
    print(f"{args.model} {model.fingerprint} on CPU ({torch.get_num_threads()} threads, 2-core machine, shared); "
          f"{args.faces} faces x [{args.labels}], rank {params.rank}, null rank {params.null_rank}, t_edit "
          f"{params.t_edit}, {params.steps} steps, <= {params.iters} iterations")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_dataset(tmp / "faces", args.faces, HELD_OUT_SEED)
        pairs = discover(tmp / "faces", labels=set(args.labels.split(",")))
        with jacobian.krylov_block(0), jvp_mode("forward"), vjp_mode("vmap"), each_job_inverted():
            whole = harvest(model, pairs, params, tmp / "whole.db", args.batch, warm=False)
        with jvp_mode("forward"), vjp_mode("vmap"):
            small = harvest(model, pairs, params, tmp / "small.db", args.batch, warm=False)
        cold = harvest(model, pairs, params, tmp / "cold.db", args.batch, warm=False)
        warm = harvest(model, pairs, params, tmp / "warm.db", args.batch, warm=True)
        widths = jacobian.basis_widths(params.rank, params.null_rank)
        cpu = torch.device("cpu")
        runs = [("cold, whole blocks, forward J v, an inversion per job (baseline)", whole),
                (f"cold, blocks of {widths[0]} and {widths[1]}, forward J v", small),
                (f"cold, the same, J v {resolve_jvp_mode(None, cpu)}, J^T u {resolve_vjp_mode(None, cpu)} (shipped)",
                 cold),
                ("warm (--warm)", warm)]
        if args.together:
            runs.append(("warm, together", harvest(model, pairs, params, tmp / "both.db", args.batch, True, True)))
    for name, r in runs:
        s = r["summary"]
        inside = s.seconds - s.find_seconds
        print(f"{name:66s} {r['seconds']:7.2f} s, {s.done} jobs, {s.directions} directions: "
              f"{r['per_min']:.1f} directions/min; {r['rounds']:.2f} rounds and {r['fpe']:.0f} FPE per job "
              f"(unit {1000 * r['unit']:.2f} ms); catalog and I/O {100 * inside / s.find_seconds:.1f}% of finding")
    print(f"throughput shipped / baseline: {cold['per_min'] / whole['per_min']:.2f}x (bar 2x); "
          f"FPE per job baseline / shipped: {whole['fpe'] / cold['fpe']:.2f}x; small blocks alone "
          f"{small['per_min'] / whole['per_min']:.2f}x, then the J v and J^T u modes "
          f"{cold['per_min'] / small['per_min']:.2f}x")
    print(f"throughput warm / cold: {warm['per_min'] / cold['per_min']:.2f}x; "
          f"FPE per job cold / warm: {cold['fpe'] / warm['fpe']:.2f}x")
    if args.together:
        both = runs[-1][1]
        print(f"throughput warm and together / warm alone: {both['per_min'] / warm['per_min']:.2f}x")


if __name__ == "__main__":
    main()
