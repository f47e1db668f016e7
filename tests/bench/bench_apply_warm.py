"""Benchmark: `apply --mask` over a folder of faces: each image's re-projection from a random null
basis grown in whole blocks with J v in forward mode and J^T u under vmap, stopped when the projected
vector settles (the baseline, before 2026-12-07), the shipped path (small Krylov blocks,
:data:`locobank.loco.jacobian.KRYLOV_BLOCK`, J v as :data:`locobank.loco.linearization.JVP_MODE` says,
J^T u as ``VJP_MODE`` does, stopped when the direction's share of change outside the mask settles,
:data:`locobank.core.transfer.REPROJECT_SETTLE`), and warm (started from the null basis of the face
before, ``core.NullBases``).

One mouth direction (found on a held-out face, with its part, as the catalog gives it) is applied
with a mask to each of N other faces, three times per face, interleaved so load drift hits all:
whole blocks, small blocks, then warm. Then the whole folder as `apply --mask 'DIR/{stem}_mouth.png'`
runs it (``core.edit_masked``: every face re-localised on its own mask, from random vectors as one at a
time, and the inversions, edits, references and spill passes of all the faces in one batch through the model),
twice, before and after the one-by-one runs' middle face, so load drift hits it as the others. It prints seconds per face, the null basis's iterations, the re-projection's share of
the work in forward-pass equivalents (FPE: one forward pass timed in this run), and the locality
(share of the change inside the mask) of both, which should agree to two digits.

    .venv/bin/python tests/bench/bench_apply_warm.py [--faces 8] [--model toy|toy-sd]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank import core  # noqa: E402
from locobank.loco import jacobian  # noqa: E402
from locobank.loco.linearization import JVP_MODE, VJP_MODE, jvp_mode, vjp_mode  # noqa: E402
from locobank.loco.register import PartPrint, profiles  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import resolve_model  # noqa: E402
from locobank.toyworld.data.faces import HELD_OUT_SEED, batch, face  # noqa: E402


@contextlib.contextmanager
def settling(mode: str | None):
    """The re-projection's stop (:data:`locobank.core.transfer.REPROJECT_SETTLE`) set to ``mode`` (None:
    the shipped one) inside the ``with``."""
    from locobank.core import transfer

    shipped = transfer.REPROJECT_SETTLE
    transfer.REPROJECT_SETTLE = mode or shipped
    try:
        yield
    finally:
        transfer.REPROJECT_SETTLE = shipped


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="toy")
    ap.add_argument("--faces", type=int, default=8)
    ap.add_argument("--label", default="mouth")
    args = ap.parse_args(argv)
    model = load_model(resolve_model(args.model))
    st = model.settings
    t = core.to_timestep(model, st.t_edit)
    src = torch.from_numpy(batch([HELD_OUT_SEED]))
    src_mask = torch.from_numpy(face(HELD_OUT_SEED).masks[args.label])
    xt = core.invert(model, src, t, st.steps)
    found = core.find_directions(model, xt[0], t, src_mask, rank=1, null_rank=st.null_rank, iters=20)
    d = found[0]
    d.source = PartPrint(src_mask, *profiles(src[0], src_mask))
    lam = model.strength_for(args.label)
    imgs = torch.from_numpy(batch(range(HELD_OUT_SEED + 1, HELD_OUT_SEED + 1 + args.faces)))
    unit = core.forward_seconds(model, xt[0], t)
    memory = core.NullBases()
    masks = [torch.from_numpy(face(HELD_OUT_SEED + 1 + i).masks[args.label]) for i in range(args.faces)]

    def folder() -> tuple[float, list]:
        t0 = time.perf_counter()
        res = core.edit_masked(model, imgs, [(d, lam)], masks)  # as `apply --mask` over a folder: cold bases
        return (time.perf_counter() - t0) / args.faces, [r.images[0] for r in res]

    batched = []
    rows = []
    for i in range(args.faces):
        if i in (1, args.faces // 2 + 1):
            batched.append(folder())
        m = masks[i]
        ref = core.edit(model, imgs[i : i + 1], [(d, 0.0)]).images[0]  # the face unedited, untimed
        row = {"ref": ref}
        shipped = jacobian.KRYLOV_BLOCK
        for name, mem, block, mode, vmode, stop in (("whole", None, 0, "forward", "vmap", "projection"),
                                                    ("cold", None, shipped, None, None, None),
                                                    ("warm", memory, shipped, None, None, None)):
            with jacobian.krylov_block(block), jvp_mode(mode or JVP_MODE), vjp_mode(vmode or VJP_MODE), settling(stop):
                t0 = time.perf_counter()
                r = core.edit(model, imgs[i : i + 1], [(d, lam)], mask=m, null_bases=mem)
                row[name] = time.perf_counter() - t0
            row[name + "_loc"] = core.locality(r.images[0] - ref, m)
        rows.append(row)
        print(f"face {i}: whole blocks, forward J v {row['whole']:.2f} s (locality {row['whole_loc']:.3f}), block {shipped} "
              f"{row['cold']:.2f} s ({row['cold_loc']:.3f}), warm {row['warm']:.2f} s ({row['warm_loc']:.3f})", flush=True)
    whole, cold, warm = (statistics.mean(r[k] for r in rows[1:]) for k in ("whole", "cold", "warm"))
    print(f"{args.model}, {args.faces} faces, {args.label}, 2-core CPU (shared): one forward pass {1000 * unit:.1f} ms")
    print(f"per face after the first: whole blocks, forward J v {whole:.2f} s = {whole / unit:.0f} FPE, block "
          f"{jacobian.KRYLOV_BLOCK}, J v {JVP_MODE} "
          f"{cold:.2f} s = {cold / unit:.0f} FPE, warm {warm:.2f} s = {warm / unit:.0f} FPE; shipped / baseline "
          f"{whole / cold:.2f}x, warm / whole {whole / warm:.2f}x (bar 2x)")
    if not batched:
        batched.append(folder())
    for r, img, m in zip(rows, batched[-1][1], masks):
        r["batch_loc"] = core.locality(img - r["ref"], m)
    folder_s = statistics.mean(b for b, _ in batched)
    mid = {k: statistics.median(r[k] for r in rows[1:]) for k in ("whole", "cold")}  # one slow face moves a mean
    print(f"the folder together (core.edit_masked, {args.faces} faces in one batch): "
          f"{' and '.join(f'{b:.2f}' for b, _ in batched)} s = {folder_s / unit:.0f} FPE per face; "
          f"/ baseline {whole / folder_s:.2f}x (bar 2x), / one by one {cold / folder_s:.2f}x; against the medians "
          f"per face ({mid['whole']:.2f} s, {mid['cold']:.2f} s): {mid['whole'] / folder_s:.2f}x, {mid['cold'] / folder_s:.2f}x")
    loc = {k: statistics.mean(r[k + "_loc"] for r in rows) for k in ("whole", "cold", "warm", "batch")}
    print(f"locality: whole blocks {loc['whole']:.3f}, block {jacobian.KRYLOV_BLOCK} {loc['cold']:.3f}, warm {loc['warm']:.3f}, "
          f"the folder together {loc['batch']:.3f}; largest difference from the whole blocks' on one face "
          f"{max(max(abs(r[k + '_loc'] - r['whole_loc']) for k in ('cold', 'warm', 'batch')) for r in rows):.4f}")
    return {"rows": rows, "ratio": whole / cold, "warm_ratio": whole / warm, "folder_ratio": mid["whole"] / folder_s}


if __name__ == "__main__":
    main()
