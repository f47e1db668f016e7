"""One image made ready for many edits: inverted to its directions' edit time and, with a mask,
the directions re-localised on it, once. A sweep settles its image and edits it at each strength;
an interactive caller (``locobank serve``) keeps a :class:`Settled` between requests, so a second
strength on the same image costs one sampling and its spill passes (the unedited sample they
compare with is kept too), not another inversion and re-projection."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from .. import core
from ..errors import InputError
from ..settings import EditOptions
from .prepare import MaskArg, Prepared, load_masks
from .sources import Source, load_sources


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
    options: EditOptions  # what every edit of it uses (null rank and shift 0 once re-localised)
    reference: torch.Tensor | None = None  # the unedited sample the spill passes compare with, once made

    def nbytes(self) -> int:
        """Memory held, for a cache's bound."""
        tensors = [self.state] + [d.vector for d in self.directions] + list(self.masks or [])
        tensors += [] if self.reference is None else [self.reference]
        return sum(t.element_size() * t.nelement() for t in tensors)


def settle(prep: Prepared, image: Source, *, options: EditOptions | None = None, mask: MaskArg = None,
           resize: bool = False) -> Settled:
    """``image`` (a file, or a seed whose sample is generated) brought once to the edit time of
    ``prep``'s directions and, with ``mask``, the directions registered, shifted and re-projected
    on it once, so that edits at any strengths share that work. ``options`` say how (default:
    the model's settings)."""
    m = prep.model
    opts = core.options_for(m, options)
    x, at_time = load_sources(prep, [image], resize, opts.steps)
    masks = load_masks(prep, mask, resize)
    dirs = list(prep.directions)
    if len({d.t_edit for d in dirs}) != 1:
        return Settled(x, False, dirs, masks, [], opts)
    t = dirs[0].t_edit
    state = x if at_time else core.invert(m, x, t, opts.steps)
    moves: list = []
    if masks is not None:
        moved, sh, sc = core.relocalize(m, state, t, masks, torch.stack([d.vector for d in dirs]),
                                        null_rank=opts.null_rank, max_shift=opts.max_shift, seed=opts.seed,
                                        image=None if at_time else x[0],
                                        sources=[d.source for d in dirs] if opts.register else None)
        moves = list(zip(sh, sc))
        dirs = [core.Direction(v, d.t_edit, d.fingerprint, name=d.name) for v, d in zip(moved, dirs)]
        opts = replace(opts, null_rank=0, max_shift=0)  # re-localised already: the edits only run the spill passes
    return Settled(state, True, dirs, masks, moves, opts)


def edit_settled(settled: Settled, prep: Prepared, strengths: Sequence[float], *,
                 orthogonalize: bool = False) -> torch.Tensor:
    """The settled image edited with its directions at ``strengths`` (one per direction):
    (C, H, W) in [-1, 1], as a fresh edit of the image at those strengths would give it."""
    if len(strengths) != len(settled.directions):
        raise InputError(f"give one strength per direction: {len(strengths)} for {len(settled.directions)}")
    r = core.edit(prep.model, settled.state, list(zip(settled.directions, [float(s) for s in strengths])),
                  options=settled.options, inverted=settled.inverted, mask=settled.masks,
                  orthogonalize=orthogonalize, reference=settled.reference)
    if settled.inverted and r.reference is not None:  # the unedited sample is the same at every strength
        settled.reference = r.reference
    if settled.masks is not None and not settled.moves:  # several times: registered afresh, the same way, each edit
        settled.moves = list(zip(r.shifts, r.scales))
    return r.images[0].cpu()


def sweep_settled(settled: Settled, prep: Prepared, values: Sequence[float], *,
                  progress: Callable[[int, float], None] | None = None) -> list[torch.Tensor]:
    """The settled image with its first direction at each strength in ``values`` (the others at
    theirs), for a linearity strip; ``progress(i, value)`` is called before each."""
    out = []
    for i, v in enumerate(values):
        if progress:
            progress(i, float(v))
        out.append(edit_settled(settled, prep, [float(v)] + list(prep.strengths[1:])))
    return out


def sweep(prep: Prepared, image: Source, values: Sequence[float], *, options: EditOptions | None = None,
          mask: MaskArg = None, resize: bool = False, shifts: list | None = None) -> list[torch.Tensor]:
    """One image edited at each strength (the first direction scaled), for a linearity strip.

    With ``mask`` the directions are re-localised on this image once (:func:`settle`), and every
    strength uses them; the spill passes run at each strength, since the spill depends on it.
    ``shifts``, when given a list, receives the image's [(shift, scale)] per direction, as in
    :func:`~locobank.apply.apply_to_images`."""
    settled = settle(prep, image, options=options, mask=mask, resize=resize)
    out = sweep_settled(settled, prep, values)
    if shifts is not None and settled.masks is not None and settled.moves:
        shifts.append(settled.moves)
    return out
