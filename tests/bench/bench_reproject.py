"""Benchmark: the re-projection of `apply --mask`, stopped when the projection settles, in small
Krylov blocks.

A direction transferred to a new image is projected off that image's outside-mask null basis
(:func:`locobank.core.reproject`). The baseline iterates the basis until it settles (largest
principal angle under 1e-3 rad between iterations), pushing its whole block of ``null rank + 2``
vectors through the model each iteration (what `reproject` did first); the next path stops once
the projected vectors move by less than ``REPROJECT_TOL`` of their norm, still with the whole
block (before 2026-12-07's change); the new path does the same in blocks of
:data:`locobank.loco.jacobian.KRYLOV_BLOCK`. All run on the same faces in this run; the script
prints their times, the ratios, and how far the results differ: the cosine of the vectors and the
change each sends outside the mask.

The directions are the toy model's top two of one held-out face for --part; each of --faces
other held-out faces is the target, with its own mask.

    .venv/bin/python tests/bench/bench_reproject.py [--faces 4] [--part mouth] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank import core  # noqa: E402
from locobank.loco import jacobian  # noqa: E402
from locobank.loco.jacobian import block_subspace_svd, project_out  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import TOY_DDPM  # noqa: E402
from locobank.toyworld import HELD_OUT_SEED, batch, face  # noqa: E402


def _r(values: torch.Tensor) -> list[float]:
    return [round(v, 4) for v in values.tolist()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=4)
    ap.add_argument("--part", default="mouth", choices=("eyes", "mouth", "hair"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    model = load_model(TOY_DDPM, device=args.device)
    st = model.settings
    t = core.to_timestep(model, st.t_edit)
    steps, null_rank = st.steps, st.null_rank
    hw = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"toy model, {hw}; t={t}, null rank {null_rank}, {args.part} directions; "
          f"new path stops at {core.REPROJECT_TOL:g} of the vectors' norm")

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    src = torch.from_numpy(batch([HELD_OUT_SEED])).to(model.device)
    xs = core.invert(model, src, t, steps)
    found = core.find_directions(model, xs, t, torch.from_numpy(face(HELD_OUT_SEED).masks[args.part]), rank=2,
                                   null_rank=null_rank, iters=20)
    V = found.vectors.to(model.device)
    flat = V.reshape(V.shape[0], -1)
    totals = {"basis": 0.0, "whole": 0.0, "new": 0.0}
    for s in range(HELD_OUT_SEED + 1, HELD_OUT_SEED + 1 + args.faces):
        x_t = core.invert(model, torch.from_numpy(batch([s])).to(model.device), t, steps)
        mask = torch.from_numpy(face(s).masks[args.part])
        outside = (~mask.to(model.device))[None].expand(model.channels, -1, -1)
        sync()
        start = time.perf_counter()
        lin = core.linearize(model, t, x_t[0])
        (res,) = block_subspace_svd(lin, [outside], [null_rank], tol=1e-3, block=0)
        base = project_out(flat, res.Vh)
        sync()
        t_base = time.perf_counter() - start
        with jacobian.krylov_block(0):
            start = time.perf_counter()
            whole = core.reproject(model, x_t, t, mask, V, null_rank=null_rank).reshape(flat.shape)
            sync()
            t_whole = time.perf_counter() - start
        start = time.perf_counter()
        new = core.reproject(model, x_t, t, mask, V, null_rank=null_rank).reshape(flat.shape)
        sync()
        t_new = time.perf_counter() - start
        totals["basis"] += t_base
        totals["whole"] += t_whole
        totals["new"] += t_new
        cos = torch.nn.functional.cosine_similarity(base, new, dim=1)
        cos_whole = torch.nn.functional.cosine_similarity(whole, new, dim=1)
        out = core.linearize(model, t, x_t[0])
        spill = [(out.jvp(P.reshape(-1, *x_t.shape[1:])) * outside).flatten(1).norm(dim=1) for P in (flat, base, new)]
        print(f"face {s}: basis settled {t_base:5.2f} s ({res.iterations} iterations), projection settled, whole "
              f"block {t_whole:5.2f} s, new (block {jacobian.KRYLOV_BLOCK}) {t_new:5.2f} s ({t_whole / t_new:.2f}x); "
              f"cosine to the settled basis's {float(cos.min()):.6f}, to the whole block's {float(cos_whole.min()):.6f}; "
              f"change outside the mask raw {_r(spill[0])}, basis {_r(spill[1])}, new {_r(spill[2])}")
    n = args.faces
    print(f"mean per image: basis settled {totals['basis'] / n:.2f} s, projection settled in whole blocks "
          f"{totals['whole'] / n:.2f} s, new {totals['new'] / n:.2f} s; speed-up against the whole blocks "
          f"{totals['whole'] / totals['new']:.2f}x, against the settled basis {totals['basis'] / totals['new']:.2f}x")


if __name__ == "__main__":
    main()
