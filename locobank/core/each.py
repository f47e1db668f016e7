"""Many candidate edits of the same images, each direction alone, sharing what they have in common."""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from ..images import check_mask
from ..loco import ddim
from ..models import LoadedModel
from ..settings import EditOptions
from .compose import Inverted, options_for, walk
from .direction import Direction, EditResult, check_direction, scaled
from .spill import with_spill_passes
from .states import as_batch
from .transfer import REPROJECT_TOL, relocalize


def edit_each(model: LoadedModel, images: Tensor, directions: Sequence[Direction], strengths: Sequence[float], *,
              options: EditOptions | None = None, mask: Tensor | None = None, batch: int = 16,
              progress: Callable[[int], None] | None = None, at: Sequence[Inverted] | None = None,
              **given) -> Iterator[tuple[int, EditResult]]:
    """Each direction applied alone, at its strength, to the same ``images``: yields (index of
    the direction, its :class:`EditResult`) as one :func:`~locobank.core.edit` call each would
    give, with the work they share done once. Results come grouped by edit time, so that a
    caller keeping only the best of them holds one at a time.

    Directions found at one edit time share one inversion (without it, N directions cost 2N
    samplings of each image, with it N + 1). With ``mask`` (one image; one mask for all) they
    also share the re-projection, against one null basis iterated until every direction's
    projection has settled (so each is settled at least as far as alone, and matches a lone
    edit to the re-projection's tolerance), and the unedited reference of the spill passes;
    their edits and spill passes are then sampled ``batch`` directions at a time (one at a
    time with ``eta_tail``, so each gets the tail noise a lone edit would). ``progress`` is
    called with the number of images after each direction's edits. ``at``: the images' inversions
    made already (:class:`~locobank.core.compose.Inverted`), used where they lie on the edit's grid."""
    opts = options_for(model, options, **given)
    dirs = [check_direction(model, d, None) for d in directions]
    if not dirs:
        raise InputError("no direction to apply")
    if len(strengths) != len(dirs):
        raise InputError(f"give one strength per direction: {len(strengths)} for {len(dirs)}")
    if any(d.t_edit < 0 for d in dirs):
        raise InputError("edit_each needs directions that carry their edit timesteps")
    x = as_batch(model, images)
    if mask is not None:
        if x.shape[0] != 1:
            raise InputError("a target mask applies to one image at a time")
        mask = check_mask(mask, (model.resolution, model.resolution)).to(model.device)
    for t in sorted({d.t_edit for d in dirs}):
        idx = [i for i, d in enumerate(dirs) if d.t_edit == t]
        yield from _each_at(model, x, t, idx, dirs, strengths, opts, mask, batch, progress, at)


class SharedAt(NamedTuple):
    """What candidates found at one edit time share on one image: the grid a full edit walks, the
    image's state at ``t`` on it, and their vectors (re-localised on a mask against one null basis,
    with each one's shift and scale; None without a mask)."""

    grid: list[int]
    x_t: Tensor
    vectors: Tensor
    shifts: list | None
    scales: list | None


def shared_at(model: LoadedModel, x: Tensor, t: int, dirs: Sequence[Direction], opts: EditOptions,
              mask: Tensor | None = None, tol: float = REPROJECT_TOL, autocast: torch.dtype | None = None,
              at: Sequence[Inverted] | None = None, settle: str | None = None) -> SharedAt:
    """One inversion of ``x`` (one image with ``mask``) to timestep ``t`` and, with ``mask``, one
    re-localisation of every direction on it, as :func:`relocalize` does for ``apply --mask``
    (its re-projection settled to ``tol``, watching ``settle`` as :func:`reproject` does;
    ``autocast``: the dtype its network passes run in, None for the model's; the inversion always
    runs in the model's; ``at``: the images' inversions made already, used where one lies on this
    grid at ``t`` for the same number of images)."""
    grid = sorted(set(ddim.timesteps_to(t, opts.steps)) | {t})
    given = [s for s in (a.state(grid, t) for a in at or ()) if s is not None]
    if given and given[0].shape[0] == x.shape[0]:
        x_t = given[0]
    else:
        x_t = ddim.invert(model.denoiser, model.family.encode(x), t, grid=grid)
    vectors = torch.stack([d.vector.to(model.device, torch.float32) for d in dirs])
    if mask is None:
        return SharedAt(grid, x_t, vectors, None, None)
    with torch.autocast(x_t.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        vectors, shifts, scales = relocalize(model, x_t, t, mask, vectors, null_rank=opts.null_rank,
                                             max_shift=opts.max_shift, seed=opts.seed, union=mask, image=x[0],
                                             sources=[d.source for d in dirs] if opts.register else None, tol=tol,
                                             settle=settle)
    return SharedAt(grid, x_t, vectors.float(), shifts, scales)


def _each_at(model: LoadedModel, x: Tensor, t: int, idx: list[int], dirs: list[Direction],
             strengths: Sequence[float], opts: EditOptions, mask: Tensor | None, batch: int,
             progress, at: Sequence[Inverted] | None = None) -> Iterator[tuple[int, EditResult]]:
    """The edits of the directions ``idx``, all found at timestep ``t``."""
    grid, x_t, vectors, shifts, scales = shared_at(model, x, t, [dirs[i] for i in idx], opts, mask, at=at)
    deltas = torch.stack([p.reshape(v.shape).to(v.dtype)
                          for p, v in zip(scaled(vectors, [strengths[i] for i in idx], False), vectors)])

    def walk_one(d: Tensor) -> Tensor:
        return walk(model, grid, x_t, {t: d}, seed=opts.seed, eta_tail=opts.eta_tail)

    if mask is None:
        for i, d in zip(idx, deltas):
            r = EditResult(walk_one(d), x_t, x_t + d, t)
            if progress:
                progress(len(x))
            yield i, r
        return
    reference = walk_one(torch.zeros_like(deltas[0]))[0] if opts.spill_passes else None
    chunk = 1 if opts.eta_tail > 0 else max(1, int(batch))
    for c in range(0, len(idx), chunk):
        d, y = with_spill_passes(model, t, deltas[c : c + chunk], mask, opts.spill_passes, walk_one, reference)
        for j in range(len(d)):
            if progress:
                progress(1)
            yield idx[c + j], EditResult(y[j : j + 1], x_t, x_t + d[j : j + 1], t, [shifts[c + j]],
                                         [scales[c + j]])
