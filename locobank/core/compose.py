"""Editing images: one direction, a transferred one, or a composition, at one edit time or at
several (each direction added when the sampler passes its own time)."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from ..loco import ddim
from ..models import LoadedModel
from ..settings import EditOptions
from .direction import Direction, EditResult, check_direction, scaled
from .spill import with_spill_passes
from .states import as_batch
from .time import to_timestep
from .transfer import NullBases, masks_for, relocalize

OPTION_NAMES = ("steps", "seed", "eta_tail", "null_rank", "max_shift", "spill_passes", "register")


def options_for(model: LoadedModel, options: EditOptions | None = None, **given) -> EditOptions:
    """``options`` (default: the model's settings) with the options given (None = keep)."""
    unknown = set(given) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown edit options: {', '.join(sorted(unknown))}")
    base = options if options is not None else model.settings.edit_options()
    try:
        return base.but(**given)
    except TypeError as e:
        raise InputError(str(e)) from e


def edit(model: LoadedModel, images: Tensor, directions: Iterable[tuple[Direction | Tensor, float]],
         t_edit: float | int | None = None, *, options: EditOptions | None = None,
         mask: Tensor | Sequence[Tensor] | None = None, orthogonalize: bool = False, inverted: bool = False,
         progress=None, reference: Tensor | None = None, null_bases: NullBases | None = None, **given) -> EditResult:
    """Apply one direction, a transferred one, or a composition, to images in [-1, 1].

    ``options`` (:class:`~locobank.settings.EditOptions`; default the model's settings, with any
    of its fields given as keywords on top) say how to sample and how to re-localise. With
    ``inverted`` the input is already the state at ``t_edit``. With ``mask`` (one for all
    directions, or one per direction) each direction that carries its source part is first
    registered onto its mask (:func:`~locobank.core.transfer.register`, which fits the part's
    profiles on the clean image, so not with ``inverted``; unless ``register`` is off), shifted
    further by up to ``max_shift`` pixels, then re-projected off the null space of *this* image's
    Jacobian outside the union of the masks, which keeps a transferred edit local on a new image
    (one image at a time then). The edit then runs ``spill_passes`` spill passes
    (:mod:`locobank.core.spill`), each costing one sampling (one more for the unedited reference,
    unless ``reference``, the ``EditResult.reference`` of an earlier edit of the same state with
    the same options and seed, is given). ``null_bases`` (:class:`~locobank.core.transfer.NullBases`)
    warm-starts the re-projection from the image edited before.
    """
    opts = options_for(model, options, **given)
    pairs = list(directions)
    if not pairs:
        raise InputError("no direction to apply")
    try:
        strengths = [float(s) for _, s in pairs]
    except (TypeError, ValueError) as e:
        raise InputError(f"strengths must be numbers: {e}") from e
    dirs = _at_times(model, pairs, t_edit, inverted)
    return _edit_at_times(model, as_batch(model, images, state=inverted), dirs, strengths, opts, mask=mask,
                          orthogonalize=orthogonalize, inverted=inverted, progress=progress, reference=reference,
                          null_bases=null_bases)


def _at_times(model: LoadedModel, pairs: list, t_edit: float | int | None, inverted: bool) -> list[Direction]:
    """The directions checked against the model, each at the time it will be added."""
    ts = {d.t_edit for d, _ in pairs if isinstance(d, Direction) and d.t_edit >= 0}
    carried = all(isinstance(d, Direction) and d.t_edit >= 0 for d, _ in pairs)
    if t_edit is None and len(ts) > 1 and carried:
        if inverted:
            raise InputError("directions found at different edit times need the clean images, not inverted states")
        return [check_direction(model, d, d.t_edit) for d, _ in pairs]
    if t_edit is None:
        if len(ts) != 1:
            raise InputError("give t_edit, or directions that all carry their edit timesteps")
        t = ts.pop()
    else:
        t = to_timestep(model, t_edit)
        if ts and ts != {t}:
            raise InputError(f"directions were found at timesteps {sorted(ts)} but the edit is at {t}")
    dirs = [check_direction(model, d, t) for d, _ in pairs]
    return [Direction(d.vector, t, d.fingerprint, d.name, d.source) if d.t_edit != t else d for d in dirs]


def walk(model: LoadedModel, grid: list[int], x_top: Tensor, deltas: dict[int, Tensor], *, seed: int,
         eta_tail: float, progress=None) -> Tensor:
    """Sample down from ``x_top``, the state at the highest time in ``deltas``, adding each
    time's edit as the sampler passes it (the highest one to ``x_top`` first), on ``grid``;
    return the images."""
    g = torch.Generator().manual_seed(int(seed))  # the same tail noise on every walk
    down = sorted(deltas, reverse=True)
    y = x_top + deltas[down[0]]
    for i, t in enumerate(down):
        lower = down[i + 1] if i + 1 < len(down) else None
        seg = [gg for gg in grid if (lower or 0) < gg <= t]
        y = ddim.sample(model.denoiser, y, t, eta_tail=eta_tail, generator=g, progress=progress, grid=seg, t_stop=lower)
        if lower is not None:
            y = y + deltas[lower]
    return model.family.decode(y)


def _invert_to_times(model: LoadedModel, x: Tensor, times: list[int], grid: list[int], inverted: bool,
                     progress) -> dict[int, Tensor]:
    """The state at each edit time, inverting in segments along ``grid``."""
    if inverted:
        return {t: x for t in times}
    states: dict[int, Tensor] = {}
    state, prev = model.family.encode(x), None
    for t in times:
        seg = [g for g in grid if (prev or 0) < g <= t]
        state = ddim.invert(model.denoiser, state, t, grid=seg, t_from=prev, progress=progress)
        states[t], prev = state, t
    return states


def _edit_at_times(model: LoadedModel, x: Tensor, dirs: list[Direction], strengths: list[float], opts: EditOptions,
                   *, mask, orthogonalize: bool, inverted: bool, progress=None,
                   reference: Tensor | None = None, null_bases: NullBases | None = None) -> EditResult:
    """Invert to the highest edit time, then on the way back down add each direction when the
    sampler passes its own timestep (one time: the plain LOCO edit). The DDIM grid is the usual
    one for the highest time with every direction's time added; inversion and sampling walk the
    same grid in segments, so with zero strengths this is a plain reconstruction. With
    ``inverted`` (one time only) ``x`` is already the state at that time. With a mask, the
    spill passes correct the highest time's edit for its spill outside the masks' union."""
    times = sorted({d.t_edit for d in dirs})
    grid = sorted(set(ddim.timesteps_to(times[-1], opts.steps)) | set(times))
    if mask is not None and x.shape[0] != 1:
        raise InputError("a target mask applies to one image at a time")
    states = _invert_to_times(model, x, times, grid, inverted, progress)
    vectors = [d.vector.to(model.device, torch.float32) for d in dirs]
    shifts: list[tuple[float, float]] = [(0.0, 0.0)] * len(dirs)
    scales: list[tuple[float, float]] = [(1.0, 1.0)] * len(dirs)
    if mask is not None:
        masks = masks_for(model, mask, len(dirs))
        union = torch.stack(masks).any(0)
        for t in times:
            idx = [i for i, d in enumerate(dirs) if d.t_edit == t]
            moved, moves, sizes = relocalize(model, states[t], t, [masks[i] for i in idx],
                                             torch.stack([vectors[i] for i in idx]), null_rank=opts.null_rank,
                                             max_shift=opts.max_shift, seed=opts.seed, union=union,
                                             sources=[dirs[i].source for i in idx] if opts.register else None,
                                             image=None if inverted else x[0], memory=null_bases)
            for i, v, m, k in zip(idx, moved, moves, sizes):
                vectors[i], shifts[i], scales[i] = v, m, k
    parts = scaled(vectors, strengths, orthogonalize)
    delta = {t: sum(p for p, d in zip(parts, dirs) if d.t_edit == t).reshape(vectors[0].shape).to(vectors[0].dtype)
             for t in times}
    top = times[-1]

    def walk_all(deltas: dict[int, Tensor]) -> Tensor:
        return walk(model, grid, states[top], deltas, seed=opts.seed, eta_tail=opts.eta_tail, progress=progress)

    if mask is None:
        y = walk_all(delta)
    else:  # one image: walk it as (C, H, W) like its edit
        if reference is None and opts.spill_passes:
            reference = walk_all({t: torch.zeros_like(v) for t, v in delta.items()})[0]
        delta[top], y = with_spill_passes(model, top, delta[top], union, opts.spill_passes,
                                          lambda d: walk_all({**delta, top: d})[0], reference)
        y = y[None]
    return EditResult(images=y, x_t=states[top], x_t_edited=states[top] + delta[top], t_edit=top,
                      shifts=shifts if mask is not None else [], scales=scales if mask is not None else [],
                      reference=reference if mask is not None else None)
