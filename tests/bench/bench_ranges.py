"""Benchmark: what measuring each card's strength scale (its unit strength and linear limit,
:mod:`locobank.rank.linear`) adds to `locobank index build`.

Harvests ``--faces`` held-out toy faces (eyes, mouth, hair; rank 3) with the toy pixel model into a
temporary catalog, then times `embed_directions` (renders each effect and measures its scale, as
`index build` does) and, on the same directions, `measure_ranges` alone (what the scale adds).
Prints both and their ratio.

    .venv/bin/python tests/bench/bench_ranges.py [--faces 2] [--probes 3] [--steps 20] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank.catalog import Catalog  # noqa: E402
from locobank.clip import load_clip  # noqa: E402
from locobank.embed import embed_directions  # noqa: E402
from locobank.harvest import HarvestParams, discover, plan, work  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.paths import TOY_DDPM  # noqa: E402
from locobank.ranges import measure_ranges  # noqa: E402
from locobank.toyworld import HELD_OUT_SEED, write_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=2)
    ap.add_argument("--probes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root / "faces", a.faces, HELD_OUT_SEED)
        model = load_model(TOY_DDPM, device=a.device)
        clip = load_clip("toy", device=a.device)
        with Catalog.open(f"sqlite:///{root / 'c.db'}", upgrade=True) as cat:
            params = HarvestParams.from_defaults(model.settings, rank=3, iters=8)
            work(cat, model, plan(cat, model, discover(root / "faces"), params).id, params)
            n = len(cat.list_directions())
            start = time.perf_counter()
            embed_directions(cat, clip, n_probes=a.probes, steps=a.steps, device=a.device)
            embed = time.perf_counter() - start
            start = time.perf_counter()
            got = measure_ranges(cat, ids=[d.id for d in cat.list_directions()], n_probes=a.probes, steps=a.steps,
                                 device=a.device)
            scale = time.perf_counter() - start
    print(f"{n} directions, {a.probes} probes, {a.steps} render steps, device {model.device}")
    print(f"embed (render, CLIP, preview and scale): {embed:.2f} s, {embed / n * 1e3:.0f} ms per direction")
    print(f"the scale alone ({got.measured} measured, with its own inversions): {scale:.2f} s, {scale / n * 1e3:.0f} ms per direction")
    print(f"share of the embed's time: {scale / embed:.2f}")


if __name__ == "__main__":
    main()
