"""The faces every toy model trains on: rendered once, cached, and handed out as tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import faces


def training_images(n: int, seed: int = 0, cache_dir: Path | None = None) -> np.ndarray:
    """``n`` training faces as uint8 N x 32 x 32 x 3, cached as .npy in ``cache_dir`` since
    rendering takes a while. The file name carries the generator's digest, so a cache written
    before a change to the face generator is never read back."""
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"faces-{n}-{seed}-{faces.generator_digest()}.npy"
        if cache.exists():
            arr = np.load(cache)
            if arr.shape[0] == n:
                return arr
    arr = np.stack([faces.face(seed + i).image for i in range(n)])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, arr)
    return arr


def training_faces(n: int, cache_dir: Path | None = None) -> torch.Tensor:
    """The first ``n`` training faces as N x 3 x 32 x 32 floats in [-1, 1] (== Normalize(0.5, 0.5)),
    the form every trainer feeds its model."""
    data = torch.from_numpy(training_images(n, 0, cache_dir))
    return data.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
