"""Transfer and composition of prepared directions on image files (or seeds' samples), a batch at
a time. A sweep of one image over strengths is :func:`locobank.apply.settle.sweep`."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .. import core
from ..settings import EditOptions
from .prepare import MaskArg, Prepared, load_masks
from .sources import Source, load_sources


def apply_to_images(prep: Prepared, images: Sequence[Source], *, options: EditOptions | None = None,
                    mask: MaskArg = None, resize: bool = False, orthogonalize: bool = False, batch: int = 16,
                    progress: Callable[[int], None] | None = None, shifts: list | None = None,
                    warm_null: bool = True) -> list[torch.Tensor]:
    """Edited images (3, H, W in [-1, 1]) in the order given, processed ``batch`` at a time.

    ``options`` say how to sample and re-localise (default: the model's settings). With ``mask``
    (a path, or one path per direction) each direction is re-localised on each image: registered
    from its source mask onto its mask (unless ``options.register`` is off), shifted further when
    ``options.max_shift`` allows, re-projected, then corrected by ``options.spill_passes`` spill
    passes (see :func:`locobank.core.edit`); ``shifts``, when given a list, receives each image's
    per-direction ((dy, dx), (sy, sx)): shift and scale. An int in ``images`` is a seed: the
    sample of the bound prompt from that seed's noise is edited on its own sampling trajectory.
    With ``warm_null`` each image's re-projection starts from the null basis of the image before
    (:class:`locobank.core.transfer.NullBases`)."""
    m = prep.model
    opts = core.options_for(m, options)
    masks = load_masks(prep, mask, resize)
    if masks is not None:
        batch = 1  # the re-projection is per image
    out: list[torch.Tensor] = []
    null_bases = core.NullBases() if masks is not None and warm_null else None
    for i in range(0, len(images), batch):
        x, at_time = load_sources(prep, images[i : i + batch], resize, opts.steps)
        res = core.edit(m, x, list(zip(prep.directions, prep.strengths)), options=opts, inverted=at_time,
                        mask=masks, orthogonalize=orthogonalize, null_bases=null_bases)
        out += list(res.images.cpu())
        if shifts is not None and masks is not None:
            shifts.append(list(zip(res.shifts, res.scales)))
        if progress:
            progress(len(x))
    return out
