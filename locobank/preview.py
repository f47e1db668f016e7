"""Directions on one image, no catalog: find them inside a mask and draw a preview grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import core
from .images import load_image, load_mask, to_uint8
from .models import LoadedModel


@dataclass
class Preview:
    """The directions found on one image and the preview grid (one row per direction)."""

    found: core.Directions
    strengths: list[float]
    grid: np.ndarray  # uint8 rows x columns of images

    def info(self) -> dict:
        """Singular values and diagnostics as plain data."""
        return {"singular_values": self.found.singular_values.tolist(), "t_edit": self.found.t_edit,
                "strengths": self.strengths, "fingerprint": self.found.fingerprint,
                "diagnostics": self.found.diagnostics}


def mask_label(mask_path: Path) -> str | None:
    """The part a mask file names by the harvest convention ``<stem>_<label>.png``."""
    stem = Path(mask_path).stem
    return stem.rsplit("_", 1)[1] if "_" in stem else None


def preview_directions(model: LoadedModel, image: Path, mask_path: Path, *, rank: int = 3,
                       null_rank: int | None = None, basis: str | None = None, t_edit: float | None = None,
                       steps: int | None = None, strengths: Sequence[float] | None = None, resize: bool = False,
                       progress: Callable[[int], None] | None = None) -> Preview:
    """Find the top ``rank`` directions of ``image`` inside the mask and sample each at
    ``strengths`` (default: minus, zero and plus the model's strength for the mask's part).
    Options not given come from the model's settings."""
    st = model.settings
    t_edit = st.t_edit_for(mask_label(mask_path)) if t_edit is None else t_edit
    steps = steps or st.steps
    s = st.strength_for(mask_label(mask_path))
    values = list(strengths) if strengths else [-s, 0.0, s]
    x = load_image(image, model.resolution, resize=resize, channels=model.channels)
    m = load_mask(mask_path, model.resolution, resize=resize)
    xt = core.invert(model, x, t_edit, steps)
    found = core.find_directions(model, xt, t_edit, m, rank=rank, null_rank=null_rank,
                                 constrained=(basis or st.basis) == "constrained")
    rows = []
    for i in range(rank):
        xs = torch.cat([xt + v * found.vectors[i] for v in values])
        rows.append(np.concatenate([to_uint8(im) for im in core.sample(model, xs, found.t_edit, steps)], 1))
        if progress:
            progress(1)
    return Preview(found, values, np.concatenate(rows, 0))


def save_grid(grid: np.ndarray, out: Path, resolution: int) -> Path:
    """Write a preview grid, enlarged to about 128 px a cell with nearest-neighbour pixels."""
    from PIL import Image

    scale = max(1, 128 // resolution)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(out)
    return Path(out)
