"""Benchmark: time per image for a transfer edit on the toy model, at batch 1 and batch 16.

Transfer = invert to the direction's t_edit, add lambda v, sample back (the path `locobank apply`
runs). The direction is the toy model's top mouth direction of one face. For comparison, the
LOCO reference reports 2 s per transfer edit at 256x256 on its GPU. With ``--masked N``, also
the time per image of `apply --mask` (registration and re-projection on each image) on N images,
without and with the default spill passes, and the registration's share.

    .venv/bin/python tests/bench/bench_apply.py [--images 16] [--masked 4] [--device cuda]
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
from locobank.loco.register import PartPrint, profiles  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import TOY_DDPM  # noqa: E402
from locobank.toyworld import HELD_OUT_SEED, batch, face  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--masked", type=int, default=0, help="images for the re-localised (--mask) timing; 0: skip")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    model = load_model(TOY_DDPM, device=args.device)
    st = model.settings
    t = core.to_timestep(model, st.t_edit)
    steps = st.steps
    lam = st.strength
    src = torch.from_numpy(batch([HELD_OUT_SEED]))
    xt = core.invert(model, src, t, steps)
    src_mask = torch.from_numpy(face(HELD_OUT_SEED).masks["mouth"])
    found = core.find_directions(model, xt, t, src_mask, rank=1, null_rank=st.null_rank, iters=20)
    direction = found[0]
    direction.source = PartPrint(src_mask, *profiles(src[0], src_mask))  # as the catalog gives it: registered
    imgs = torch.from_numpy(batch(range(HELD_OUT_SEED + 1, HELD_OUT_SEED + 1 + args.images)))
    hw = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"toy model, {hw}; {steps} DDIM steps each way, t_edit={t}, strength {lam}")

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    core.edit(model, imgs[:1], [(direction, lam)], steps=steps)  # warm-up
    sync()
    start = time.perf_counter()
    for i in range(args.images):
        core.edit(model, imgs[i : i + 1], [(direction, lam)], steps=steps)
    sync()
    one = (time.perf_counter() - start) / args.images
    start = time.perf_counter()
    core.edit(model, imgs, [(direction, lam)], steps=steps)
    sync()
    many = (time.perf_counter() - start) / args.images
    print(f"batch 1:  {1000 * one:7.1f} ms per image")
    print(f"batch {args.images}: {1000 * many:7.1f} ms per image")
    print(f"speed-up from batching: {one / many:.1f}x")
    if args.masked:
        passes = model.settings.spill_passes
        times = {}
        for n in (0, passes):
            start = time.perf_counter()
            for i in range(args.masked):
                m = torch.from_numpy(face(HELD_OUT_SEED + 1 + i).masks["mouth"])
                core.edit(model, imgs[i : i + 1], [(direction, lam)], steps=steps, mask=m,
                            null_rank=st.null_rank, spill_passes=n)
            sync()
            times[n] = (time.perf_counter() - start) / args.masked
            print(f"with --mask, {n} spill passes: {1000 * times[n]:7.1f} ms per image")
        print(f"cost of {passes} spill passes: {times[passes] / times[0]:.2f}x the re-projection alone")
        start = time.perf_counter()
        for i in range(args.masked):
            m = torch.from_numpy(face(HELD_OUT_SEED + 1 + i).masks["mouth"])
            core.register(model, direction.vector[None], [direction.source], m, image=imgs[i])
        print(f"of which the registration: {1000 * (time.perf_counter() - start) / args.masked:7.1f} ms per image")


if __name__ == "__main__":
    main()
