"""Transfer and composition of prepared directions on image files (or seeds' samples), a batch at
a time. A sweep of one image over strengths is :func:`locobank.apply.settle.sweep`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import core
from ..errors import InputError
from ..settings import EditOptions
from .prepare import MaskArg, Prepared, load_masks
from .sources import Source, load_sources


def apply_to_images(prep: Prepared, images: Sequence[Source], *, options: EditOptions | None = None,
                    mask: MaskArg = None, resize: bool = False, orthogonalize: bool = False, batch: int = 16,
                    progress: Callable[[int], None] | None = None, shifts: list | None = None,
                    warm_null: bool = False, image_masks: Sequence[MaskArg] | None = None,
                    inverted: Sequence[Sequence | None] | None = None) -> list[torch.Tensor]:
    """Edited images (3, H, W in [-1, 1]) in the order given, processed ``batch`` at a time.

    ``options`` say how to sample and re-localise (default: the model's settings). With ``mask``
    (a path, or one path per direction) each direction is re-localised on each image: registered
    from its source mask onto its mask (unless ``options.register`` is off), shifted further when
    ``options.max_shift`` allows, re-projected, then corrected by ``options.spill_passes`` spill
    passes (see :func:`locobank.core.edit`); ``shifts``, when given a list, receives each image's
    per-direction ((dy, dx), (sy, sx)): shift and scale. ``image_masks`` (instead of ``mask``)
    gives each image its own. With masks the images of a batch are re-localised one by one and
    inverted, edited and sampled together (:func:`locobank.core.edit_masked`); with ``warm_null``
    each image's re-projection starts from the null basis of the image before
    (:class:`locobank.core.transfer.NullBases`; off by default: it saved no time, measured, and a
    re-projection that stops when its direction's spill settles would then stop elsewhere than the
    same image's alone, so a folder's edits would differ from one image's). An int in ``images``
    is a seed: the sample of the bound prompt from that seed's noise is edited on its own sampling
    trajectory. ``inverted[i]`` (with masks): image ``i``'s inversions already made
    (:class:`locobank.core.Inverted`, e.g. by its ranking), used where they lie on the edit's grid."""
    m = prep.model
    opts = core.options_for(m, options)
    if image_masks is None and mask is not None and (isinstance(mask, (str, Path)) or len(mask)):
        image_masks = [mask] * len(images)  # the same masks on every image
    if image_masks is not None:
        return _each_masked(prep, images, opts, image_masks, resize, orthogonalize, batch, progress, shifts, warm_null,
                            inverted)
    out: list[torch.Tensor] = []
    for i in range(0, len(images), batch):
        x, at_time = load_sources(prep, images[i : i + batch], resize, opts.steps)
        res = core.edit(m, x, list(zip(prep.directions, prep.strengths)), options=opts, inverted=at_time,
                        orthogonalize=orthogonalize)
        out += list(res.images.cpu())
        if progress:
            progress(len(x))
    return out


def _each_masked(prep: Prepared, images: Sequence[Source], opts, image_masks: Sequence[MaskArg], resize: bool,
                 orthogonalize: bool, batch: int, progress, shifts: list | None, warm_null: bool,
                 inverted: Sequence[Sequence | None] | None = None) -> list[torch.Tensor]:
    """:func:`apply_to_images` with each image's own masks, ``batch`` images through the model at a time."""
    if len(image_masks) != len(images):
        raise InputError(f"give one mask (or one per direction) for each image: {len(image_masks)} for "
                         f"{len(images)} images", params=("mask",))
    null_bases = core.NullBases() if warm_null else None
    out: list[torch.Tensor] = []
    for i in range(0, len(images), batch):
        x, at_time = load_sources(prep, images[i : i + batch], resize, opts.steps)
        masks = [load_masks(prep, mk, resize) for mk in image_masks[i : i + batch]]
        res = core.edit_masked(prep.model, x, list(zip(prep.directions, prep.strengths)), masks, options=opts,
                               inverted=at_time, orthogonalize=orthogonalize, null_bases=null_bases,
                               at=_at_edit_time(prep, inverted, i, len(x)))
        out += [r.images[0].cpu() for r in res]
        if shifts is not None:
            shifts += [list(zip(r.shifts, r.scales)) for r in res]
        if progress:
            progress(len(x))
    return out


def _at_edit_time(prep: Prepared, inverted: Sequence[Sequence | None] | None, start: int, n: int) -> list | None:
    """For images ``start`` to ``start + n``: each one's given inversion at the edit time of ``prep``'s
    directions (one time only), or None when any is missing."""
    times = {d.t_edit for d in prep.directions}
    if inverted is None or len(times) != 1:
        return None
    t = times.pop()
    picked = [next((a for a in (inverted[i] or []) if t in a.states), None) for i in range(start, start + n)]
    return None if any(a is None for a in picked) else picked
