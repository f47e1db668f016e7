"""One image made ready for many edits: inverted to its directions' edit time and, with a mask,
the directions re-localised on it, once. A sweep does this inside one call; an interactive caller
(``locobank serve``) keeps a :class:`Settled` between requests, so a second strength on the same
image costs one sampling and its spill passes (the unedited sample they compare with is kept
too), not another inversion and re-projection."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .. import core
from ..errors import InputError
from ..images import load_image
from .edits import _defaults
from .prepare import MaskArg, Prepared, load_masks


@dataclass
class Settled:
    """What every strength of one image's edit shares. ``state`` is the image at the directions'
    edit time when ``inverted`` (they share one), else the clean image (directions found at
    several times are added as the sampler passes each, so nothing can be reused)."""

    state: torch.Tensor  # (1, C, H, W)
    inverted: bool
    directions: list[core.Direction]  # registered and re-projected on the masks, when there are masks
    masks: list[torch.Tensor] | None
    moves: list[tuple[tuple[float, float], tuple[float, float]]]  # per direction: (shift, scale), with masks
    steps: int
    null_rank: int
    max_shift: int | None
    references: dict = field(default_factory=dict)  # (seed, eta_tail) -> the unedited sample, for spill passes

    def nbytes(self) -> int:
        """Memory held, for a cache's bound."""
        tensors = [self.state] + [d.vector for d in self.directions] + list(self.masks or [])
        tensors += list(self.references.values())
        return sum(t.element_size() * t.nelement() for t in tensors)


def settle(prep: Prepared, image: Path, *, mask: MaskArg = None, resize: bool = False, seed: int = 0,
           steps: int | None = None, null_rank: int | None = None, max_shift: int | None = None,
           register: bool = True) -> Settled:
    """``image`` inverted once to the edit time of ``prep``'s directions and, with ``mask``, the
    directions registered, shifted and re-projected on it once, as :func:`~locobank.apply.sweep`
    does before its strengths."""
    m = prep.model
    steps, _, nr = _defaults(m, steps, None, null_rank)
    x = load_image(image, m.resolution, resize=resize, channels=m.channels)[None]
    masks = load_masks(prep, mask, resize)
    dirs = list(prep.directions)
    if len({d.t_edit for d in dirs}) != 1:
        return Settled(x, False, dirs, masks, [], steps, nr, max_shift)
    t = dirs[0].t_edit
    state = core.invert(m, x, t, steps)
    moves: list = []
    if masks is not None:
        moved, sh, sc = core.relocalize(m, state, t, masks, torch.stack([d.vector for d in dirs]), null_rank=nr,
                                        max_shift=max_shift, seed=seed, image=x[0],
                                        sources=[d.source for d in dirs] if register else None)
        moves = list(zip(sh, sc))
        dirs = [core.Direction(v, d.t_edit, d.fingerprint, name=d.name) for v, d in zip(moved, dirs)]
        nr, max_shift = 0, 0  # re-localised already: the edits only run the spill passes
    return Settled(state, True, dirs, masks, moves, steps, nr, max_shift)


def edit_settled(settled: Settled, prep: Prepared, strengths: Sequence[float], *, seed: int = 0,
                 eta_tail: float | None = None, spill_passes: int | None = None, orthogonalize: bool = False,
                 register: bool = True) -> torch.Tensor:
    """The settled image edited with its directions at ``strengths`` (one per direction):
    (C, H, W) in [-1, 1], the image :func:`~locobank.apply.sweep` gives at those strengths."""
    if len(strengths) != len(settled.directions):
        raise InputError(f"give one strength per direction: {len(strengths)} for {len(settled.directions)}")
    _, eta, _ = _defaults(prep.model, settled.steps, eta_tail, None)
    key = (seed, eta) if settled.inverted else None  # the unedited sample is the same at every strength
    r = core.edit(prep.model, settled.state, list(zip(settled.directions, [float(s) for s in strengths])),
                  steps=settled.steps, seed=seed, eta_tail=eta, inverted=settled.inverted, mask=settled.masks,
                  null_rank=settled.null_rank, max_shift=settled.max_shift, spill_passes=spill_passes,
                  register=register, orthogonalize=orthogonalize, reference=settled.references.get(key))
    if key is not None and r.reference is not None:
        settled.references[key] = r.reference
    return r.images[0].cpu()
