"""Benchmark: warm-started LOCO bases against cold ones, on held-out toy faces.

A catalog of other faces (training seeds) is found cold first. Then, on each held-out face and
part, the same job runs cold (random start) and warm (``core.start_from``: the catalog's edit
bases registered onto this face's mask, its null bases as they are, each cut to its top
principal directions, plus fresh random rows). Convergence is judged the same way in both. It
prints the iterations of both (a round pushes the edit and null blocks through the model
together, so a job's rounds are the larger of its two counts), the largest principal angle
between the warm and the cold converged edit bases (and null bases, and the final projected
directions), and the time in seconds and in forward-pass equivalents (FPE: one forward pass of
the same model timed in this run).

    .venv/bin/python tests/bench/bench_warm.py                       # toy DDPM, 3 faces, 4 catalog faces
    .venv/bin/python tests/bench/bench_warm.py --model toy-sd
    .venv/bin/python tests/bench/bench_warm.py --faces 20 --catalog 8  # the issue's bar: 20 faces
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank import core  # noqa: E402
from locobank.core.cost import forward_seconds, fpe  # noqa: E402
from locobank.core.warm import part_of, start_from  # noqa: E402
from locobank.loco.jacobian import max_principal_angle  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.models.latent import conditioned  # noqa: E402
from locobank.paths import resolve_model  # noqa: E402
from locobank.toyworld.data.faces import HELD_OUT_SEED, batch, caption, face  # noqa: E402


def states(model, seeds, t, steps):
    """Each face's clean image, mask dict, model (under its caption for a text-to-image model) and state."""
    out = []
    for s in seeds:
        f = face(s)
        m = conditioned(model, caption(f.attrs)) if model.family.cond is not None else model
        x = torch.from_numpy(batch([s])).to(model.device)
        out.append((x[0], {k: torch.from_numpy(v) for k, v in f.masks.items()}, m, core.invert(m, x, t, steps)[0]))
    return out


def find(m, xt, t, mask, args, start=None):
    t0 = time.perf_counter()
    d = core.find_directions(m, xt, t, mask, rank=args.rank, null_rank=args.null_rank, iters=args.iters,
                             seed=args.seed, start=start)
    return d, time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy", help="toy (the pixel DDPM) or toy-sd (the latent model)")
    ap.add_argument("--faces", type=int, default=3, help="held-out faces (20 for the issue's bar)")
    ap.add_argument("--catalog", type=int, default=4, help="other faces found cold first, the warm starts' source")
    ap.add_argument("--labels", default="eyes,mouth,hair")
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--null-rank", type=int, default=None)
    ap.add_argument("--per-rank", type=float, default=None, help="start rows kept per basis, per rank "
                    "(default core.warm.COLUMNS_PER_RANK)")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model = load_model(resolve_model(args.model))
    st = model.settings
    args.rank = st.rank if args.rank is None else args.rank
    args.null_rank = st.null_rank if args.null_rank is None else args.null_rank
    labels = args.labels.split(",")
    t = core.to_timestep(model, st.t_edit)
    print(f"{args.model}: rank {args.rank}, null rank {args.null_rank}, t {t}, {args.catalog} catalog faces, "
          f"{args.faces} held-out faces x {labels}, {torch.get_num_threads()} threads (2-core CPU, shared)")
    cat = {lab: [] for lab in labels}
    for x, masks, m, xt in states(model, range(args.catalog), t, st.steps):
        for lab in labels:
            d, _ = find(m, xt, t, masks[lab], args)
            cat[lab].append((d.basis, part_of(x, masks[lab])))
    held = states(model, range(HELD_OUT_SEED, HELD_OUT_SEED + args.faces), t, st.steps)
    unit = statistics.median(forward_seconds(m, xt, t) for _, _, m, xt in held)
    rows = []
    for x, masks, m, xt in held:
        for lab in labels:
            cold, cs = find(m, xt, t, masks[lab], args)
            w0 = time.perf_counter()
            start = start_from(model, masks[lab], edit=[b.edit for b, _ in cat[lab]], sources=[p for _, p in cat[lab]],
                               null=[b.null for b, _ in cat[lab]], image=x, rank=args.rank, null_rank=args.null_rank,
                               **({} if args.per_rank is None else {"per_rank": args.per_rank}))
            warm, _ = find(m, xt, t, masks[lab], args, start)
            ws = time.perf_counter() - w0  # building the start included
            rows.append(_row(lab, cold, warm, cs, ws))
    return _report(rows, unit)


def _row(lab, cold, warm, cs, ws) -> dict:
    cd, wd = cold.diagnostics, warm.diagnostics
    return {"label": lab, "cold_it": max(cd["iterations"], cd["null_iterations"]),
            "warm_it": max(wd["iterations"], wd["null_iterations"]),
            "cold_edit_null": (cd["iterations"], cd["null_iterations"]),
            "warm_edit_null": (wd["iterations"], wd["null_iterations"]),
            "edit_angle": max_principal_angle(cold.basis.edit, warm.basis.edit),
            "null_angle": max_principal_angle(cold.basis.null, warm.basis.null) if cold.basis.null is not None else 0.0,
            "vectors_angle": max_principal_angle(_orth(cold.vectors), _orth(warm.vectors)),
            "converged": cd["converged"] and wd["converged"], "cold_s": cs, "warm_s": ws}


def _orth(v: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(v.reshape(v.shape[0], -1).T.double())
    return q.T


def _report(rows: list[dict], unit: float) -> dict:
    print(f"one forward pass (the FPE unit): {1000 * unit:.2f} ms")
    print("label  cold it (edit/null)  warm it (edit/null)  angle edit / null / directions (rad)  cold s  warm s  FPE cold / warm")
    for r in rows:
        print(f"{r['label']:6s} {r['cold_it']:3d} {str(r['cold_edit_null']):>12s}  {r['warm_it']:3d} {str(r['warm_edit_null']):>12s}"
              f"   {r['edit_angle']:.1e} / {r['null_angle']:.1e} / {r['vectors_angle']:.1e}"
              f"   {r['cold_s']:6.2f}  {r['warm_s']:6.2f}  {fpe(r['cold_s'], unit):6.0f} / {fpe(r['warm_s'], unit):6.0f}")
    cold_it = sum(r["cold_it"] for r in rows)
    warm_it = sum(r["warm_it"] for r in rows)
    cold_s = sum(r["cold_s"] for r in rows)
    warm_s = sum(r["warm_s"] for r in rows)
    out = {"jobs": len(rows), "cold_iterations": cold_it / len(rows), "warm_iterations": warm_it / len(rows),
           "iteration_ratio": warm_it / cold_it, "max_edit_angle": max(r["edit_angle"] for r in rows),
           "max_null_angle": max(r["null_angle"] for r in rows),
           "max_vectors_angle": max(r["vectors_angle"] for r in rows),
           "all_converged": all(r["converged"] for r in rows), "speedup": cold_s / warm_s,
           "cold_fpe": fpe(cold_s / len(rows), unit), "warm_fpe": fpe(warm_s / len(rows), unit)}
    print(f"mean rounds per job: cold {out['cold_iterations']:.2f}, warm {out['warm_iterations']:.2f} "
          f"(warm/cold {out['iteration_ratio']:.3f}; bar <= 0.333)")
    print(f"largest angle warm vs cold: edit basis {out['max_edit_angle']:.2e}, null basis {out['max_null_angle']:.2e}, "
          f"directions {out['max_vectors_angle']:.2e} rad (bar < 1e-2); all converged: {out['all_converged']}")
    print(f"time per job: cold {cold_s / len(rows):.2f} s = {out['cold_fpe']:.0f} FPE, warm {warm_s / len(rows):.2f} s "
          f"= {out['warm_fpe']:.0f} FPE (start building included): {out['speedup']:.2f}x")
    return out


if __name__ == "__main__":
    main()
