"""What the pixel and latent models' measurements share: PSNR, the median and worst of a
measure, sample grids, and CLIP zero-shot reading of a face's attributes (the toy CLIP's own bar
on rendered faces, and the latent model's prompt adherence on generated ones)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ...images import to_uint8
from ..data.faces import HAIR, HELD_OUT_SEED, IRIS, FaceAttributes, batch, face


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image for tensors in [-1, 1] (peak-to-peak 2)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


def stats(values: Sequence[float]) -> dict:
    """The median, the worst (lowest) and the count of a measure, as every report prints them."""
    return {"median": statistics.median(values), "worst": min(values), "n": len(values)} if values else {"n": 0}


def tile(images: Sequence[torch.Tensor]) -> np.ndarray:
    """Images in [-1, 1] tiled into a square uint8 grid, row by row, blank tiles at the end."""
    tiles = [to_uint8(x) for x in images]
    side = int(np.ceil(np.sqrt(len(tiles))))
    tiles += [np.zeros_like(tiles[0])] * (side * side - len(tiles))
    return np.concatenate([np.concatenate(tiles[r * side:(r + 1) * side], 1) for r in range(side)], 0)


def save_grid(images: Sequence[torch.Tensor], path: Path) -> None:
    """The images as one grid, enlarged twice (nearest) so 32-pixel faces can be looked at."""
    from PIL import Image

    grid = tile(images)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


ZERO_SHOT_TASKS = {
    "hair colour": (lambda a: a.hair, {c: f"a face with {c} hair" for c in sorted(HAIR)}),
    "iris colour": (lambda a: a.iris, {c: f"a face with {c} eyes" for c in sorted(IRIS)}),
    "smile vs frown": (lambda a: "smile" if a.smile > 0 else "frown", {"smile": "a smiling face", "frown": "a frowning face"}),
    "glasses": (lambda a: "yes" if a.glasses else "no", {"yes": "a face with glasses", "no": "a face with no glasses"}),
}


def zero_shot(clip, n: int = 500, seed0: int = HELD_OUT_SEED) -> dict[str, float]:
    """Zero-shot accuracy of a CLIP on held-out faces, per attribute, with prompts built from attribute words."""
    seeds = list(range(seed0, seed0 + n))
    scores = zero_shot_on(clip, torch.from_numpy(batch(seeds)), [face(s).attrs for s in seeds])
    return {task: s["accuracy"] for task, s in scores.items()}


def zero_shot_on(clip, images: torch.Tensor, attrs: list[FaceAttributes],
                 keep: Callable[[str, FaceAttributes], bool] = lambda task, a: True) -> dict[str, dict]:
    """Per zero-shot task, the share of ``images`` whose attribute CLIP reads as ``attrs`` says
    (``accuracy``), over the (task, face) pairs ``keep`` admits (``n``)."""
    img = clip.encode_images(images)
    out = {}
    for task, (truth, prompts) in ZERO_SHOT_TASKS.items():
        keys = list(prompts)
        pred = (img @ clip.encode_text([prompts[k] for k in keys]).T).argmax(1).tolist()
        pairs = [(keys[p], truth(a)) for p, a in zip(pred, attrs) if keep(task, a)]
        out[task] = {"accuracy": float(np.mean([p == t for p, t in pairs])) if pairs else float("nan"),
                     "n": len(pairs)}
    return out
