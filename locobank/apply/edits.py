"""Transfer, composition and sweeps of prepared directions on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import core
from ..errors import InputError
from ..images import load_image
from ..models import LoadedModel
from .prepare import MaskArg, Prepared, load_masks

def _defaults(m: LoadedModel, steps: int | None, eta_tail: float | None,
              null_rank: int | None) -> tuple[int, float, int]:
    """Sampling steps, tail noise and null rank: those given, else the model's defaults."""
    o = m.settings.edit_options(steps=steps or None, eta_tail=eta_tail, null_rank=null_rank)
    return o.steps, o.eta_tail, o.null_rank


def _load_batch(m: LoadedModel, paths: Sequence[Path], resize: bool) -> torch.Tensor:
    return torch.stack([load_image(p, m.resolution, resize=resize, channels=m.channels) for p in paths])


Source = Path | int  # an image file, or a seed to generate from (text-to-image models)


def _one_time(prep: Prepared) -> int:
    times = {d.t_edit for d in prep.directions}
    if len(times) != 1:
        raise InputError(f"--generate edits a sample at one edit time; these directions were found at timesteps "
                         f"{sorted(times)}: apply them to an image file instead")
    return times.pop()


def _load_sources(m: LoadedModel, prep: Prepared, items: Sequence[Source], resize: bool,
                  steps: int) -> tuple[torch.Tensor, bool]:
    """Image files as a batch of images, or seeds as their samples' states at the edit time
    (True: already at the edit time)."""
    seeds = [i for i in items if isinstance(i, int)]
    if not seeds:
        return _load_batch(m, items, resize), False
    if len(seeds) != len(items):
        raise InputError("give image files or seeds to generate from, not both")
    return core.generate_to(m, core.noise_for(m, seeds), _one_time(prep), steps), True


def apply_to_images(prep: Prepared, images: Sequence[Source], *, mask: MaskArg = None, resize: bool = False,
                    orthogonalize: bool = False, seed: int = 0, steps: int | None = None, eta_tail: float | None = None,
                    null_rank: int | None = None, max_shift: int | None = None, spill_passes: int | None = None,
                    register: bool = True, batch: int = 16, progress: Callable[[int], None] | None = None,
                    shifts: list | None = None) -> list[torch.Tensor]:
    """Edited images (3, H, W in [-1, 1]) in the order given, processed ``batch`` at a time.

    With ``mask`` (a path, or one path per direction) each direction is re-localised on each
    image: registered from its source mask onto its mask (unless ``register`` is false),
    shifted further when ``max_shift`` allows, re-projected, then corrected by
    ``spill_passes`` spill passes (see :func:`locobank.core.edit`); ``shifts``, when given a
    list, receives each image's per-direction ((dy, dx), (sy, sx)): shift and scale. An int
    in ``images`` is a seed: the sample of the bound prompt from that seed's noise is edited
    on its own sampling trajectory."""
    m = prep.model
    steps, eta, nr = _defaults(m, steps, eta_tail, null_rank)
    masks = load_masks(prep, mask, resize)
    if masks is not None:
        batch = 1  # the re-projection is per image
    out: list[torch.Tensor] = []
    for i in range(0, len(images), batch):
        x, at_time = _load_sources(m, prep, images[i : i + batch], resize, steps)
        res = core.edit(m, x, list(zip(prep.directions, prep.strengths)), steps=steps, seed=seed, eta_tail=eta,
                          inverted=at_time, mask=masks, null_rank=nr, orthogonalize=orthogonalize, max_shift=max_shift,
                          spill_passes=spill_passes, register=register)
        out += list(res.images.cpu())
        if shifts is not None and masks is not None:
            shifts.append(list(zip(res.shifts, res.scales)))
        if progress:
            progress(len(x))
    return out


def sweep(prep: Prepared, image: Source, values: Sequence[float], *, mask: MaskArg = None, resize: bool = False,
          seed: int = 0, steps: int | None = None, eta_tail: float | None = None, null_rank: int | None = None,
          max_shift: int | None = None, spill_passes: int | None = None, register: bool = True,
          shifts: list | None = None) -> list[torch.Tensor]:
    """One image edited at each strength (the first direction scaled), for a linearity strip.

    With ``mask`` the directions are re-localised on this image once (:func:`locobank.core.relocalize`),
    and every strength uses them; the spill passes run at each strength, since the spill
    depends on it. ``shifts``, when given a list, receives the image's [(shift, scale)] per
    direction, as in :func:`apply_to_images`."""
    m = prep.model
    steps, eta, nr = _defaults(m, steps, eta_tail, null_rank)
    x, at_time = _load_sources(m, prep, [image], resize, steps)
    masks = load_masks(prep, mask, resize)
    one_time = len({d.t_edit for d in prep.directions}) == 1
    dirs = list(prep.directions)
    if one_time:
        src = x if at_time else core.invert(m, x, dirs[0].t_edit, steps)  # invert once
        if masks is not None:
            moved, sh, sc = core.relocalize(m, src, dirs[0].t_edit, masks, torch.stack([d.vector for d in dirs]),
                                              null_rank=nr, max_shift=max_shift, seed=seed,
                                              image=None if at_time else x[0],
                                              sources=[d.source for d in dirs] if register else None)
            if shifts is not None:
                shifts.append(list(zip(sh, sc)))
            dirs = [core.Direction(v, d.t_edit, d.fingerprint, name=d.name) for v, d in zip(moved, dirs)]  # registered
            nr, max_shift = 0, 0  # re-localised already: the edits below only run the spill passes
    else:
        src = x
    outs = []
    for val in values:
        r = core.edit(m, src, [(dirs[0], float(val))] + list(zip(dirs[1:], prep.strengths[1:])), steps=steps,
                        seed=seed, eta_tail=eta, inverted=one_time, mask=masks, null_rank=nr, max_shift=max_shift,
                        spill_passes=spill_passes, register=register)
        if shifts is not None and masks is not None and not one_time and not outs:
            shifts.append(list(zip(r.shifts, r.scales)))  # registered afresh at each strength, the same way
        outs.append(r.images[0].cpu())
    return outs


