"""Benchmark: `apply --query --candidates N` on the toy model, per image, against trying the
candidates one by one.

The candidates are the top N mouth directions of one held-out face (`find_directions`, rank N),
the text "smile", the images other held-out faces written as PNG files. The baseline is the
definition of the pick: each candidate applied on its own to every image with
`apply_to_images`, then `choose` (each candidate inverts every image again and, with a mask,
re-projects and samples its unedited reference again). The new path is `apply_best_of`, where
the candidates share each image's inversion, re-projection and reference
(`core.edit_each`). Both run plain and with each face's own mouth mask (`--mask`, with the
default spill passes); the picks of the two paths are printed side by side.

    .venv/bin/python tests/bench/bench_best_of.py [--candidates 5] [--images 8] [--masked 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank import core  # noqa: E402
from locobank.apply import Prepared, apply_best_of, apply_to_images, choose  # noqa: E402
from locobank.clip import load_clip  # noqa: E402
from locobank.loco.register import PartPrint, profiles  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import TOY_DDPM  # noqa: E402
from locobank.search import text_direction  # noqa: E402
from locobank.toyworld import HELD_OUT_SEED, batch, face  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=5)
    ap.add_argument("--images", type=int, default=8, help="images for the plain timing")
    ap.add_argument("--masked", type=int, default=2, help="images for the --mask timing; 0: skip")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    model = load_model(TOY_DDPM, device=args.device)
    clip = load_clip("toy", device=args.device)
    st = model.settings
    t = core.to_timestep(model, st.t_edit)
    steps = st.steps
    lam = model.strength_for("mouth")
    src = torch.from_numpy(batch([HELD_OUT_SEED]))
    src_mask = torch.from_numpy(face(HELD_OUT_SEED).masks["mouth"])
    found = core.find_directions(model, core.invert(model, src, t, steps), t, src_mask, rank=args.candidates,
                                   null_rank=st.null_rank, iters=20)
    part = PartPrint(src_mask, *profiles(src[0], src_mask))  # as the catalog gives them: registered
    cands = [Prepared(model, [core.Direction(f.vector, f.t_edit, f.fingerprint, name=f"v{i}", source=part)], [lam])
             for i, f in enumerate(found)]
    text = text_direction(clip, "smile")
    hw = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"toy model, {hw}; {len(cands)} candidates; {steps} DDIM steps each way, t_edit={t}, strength {lam}")

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as tmp:
        n = max(args.images, args.masked)
        paths, masks = [], []
        for s in range(HELD_OUT_SEED + 1, HELD_OUT_SEED + 1 + n):
            f = face(s)
            paths.append(Path(tmp) / f"face_{s}.png")
            masks.append(Path(tmp) / f"face_{s}_mouth.png")
            Image.fromarray(f.image).save(paths[-1])
            Image.fromarray(f.masks["mouth"].astype("uint8") * 255).save(masks[-1])
        opts = cands[0].model.settings.edit_options(steps=steps)
        apply_best_of(cands[:2], clip, text, paths[:1], options=opts)  # warm-up
        # plain: all images in one call (batched); with --mask: one call per image and its mask
        runs = [("plain", [(paths[: args.images], {})])]
        if args.masked:
            runs.append(("with --mask", [([p], {"mask": m}) for p, m in zip(paths[: args.masked], masks)]))
        for label, calls in runs:
            n = sum(len(ps) for ps, _ in calls)
            start = time.perf_counter()
            one_by_one = []
            for ps, o in calls:
                outs = [torch.stack(apply_to_images(c, ps, options=opts, **o)) for c in cands]
                one_by_one += choose(outs, clip, text)
            sync()
            base = (time.perf_counter() - start) / n
            start = time.perf_counter()
            shared = []
            for ps, o in calls:
                shared += apply_best_of(cands, clip, text, ps, options=opts, **o)[1]
            sync()
            new = (time.perf_counter() - start) / n
            print(f"{label}, {n} images: one by one {1000 * base:8.1f} ms per image, shared "
                  f"{1000 * new:8.1f} ms per image: {base / new:.2f}x; picks {one_by_one} and {shared}")

if __name__ == "__main__":
    main()
