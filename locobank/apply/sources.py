"""What an edit starts from: image files loaded at the model's size, or seeds whose samples of the
bound prompt are generated to the directions' edit time (text-to-image models)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .. import core
from ..errors import InputError
from ..images import load_image
from ..models import LoadedModel
from .prepare import Prepared

Source = Path | int  # an image file, or a seed to generate from (text-to-image models)


def load_batch(m: LoadedModel, paths: Sequence[Path], resize: bool) -> torch.Tensor:
    """Image files as one batch (B, C, H, W) in [-1, 1] at the model's size (``resize``: resized
    to it, else refused when another size)."""
    return torch.stack([load_image(p, m.resolution, resize=resize, channels=m.channels) for p in paths])


def _one_time(prep: Prepared) -> int:
    times = {d.t_edit for d in prep.directions}
    if len(times) != 1:
        raise InputError(f"a seed's sample is edited at one edit time; these directions were found at timesteps "
                         f"{sorted(times)}: apply them to image files instead")
    return times.pop()


def load_sources(prep: Prepared, items: Sequence[Source], resize: bool, steps: int) -> tuple[torch.Tensor, bool]:
    """Image files as a batch of images, or seeds as their samples' states at the edit time of
    ``prep``'s directions, ``steps`` DDIM steps from noise (True: already at the edit time)."""
    m = prep.model
    seeds = [i for i in items if isinstance(i, int)]
    if not seeds:
        return load_batch(m, items, resize), False
    if len(seeds) != len(items):
        raise InputError("give image files or seeds to generate from, not both")
    return core.generate_to(m, core.noise_for(m, seeds), _one_time(prep), steps), True
