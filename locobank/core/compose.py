"""Editing images: one direction, a transferred one, or a composition, at one edit time or at
several (each direction added when the sampler passes its own time)."""

from __future__ import annotations

from dataclasses import dataclass
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
    opts, dirs, strengths, x = _checked(model, images, directions, t_edit, inverted, options, given)
    if mask is None:
        return _edit_at_times(model, x, dirs, strengths, opts, orthogonalize=orthogonalize, inverted=inverted,
                              progress=progress)
    if x.shape[0] != 1:
        raise InputError("a target mask applies to one image at a time; give each image its own mask with "
                         "core.edit_masked")
    return _masked(model, x, dirs, strengths, opts, [mask], orthogonalize=orthogonalize, inverted=inverted,
                   progress=progress, references=None if reference is None else [reference],
                   null_bases=null_bases)[0]


@dataclass
class Inverted:
    """One image's states at edit times (each (1, *state_shape)), inverted along ``grid``: what an
    edit on the same grid starts from instead of inverting the image again (``apply --query
    --mask`` edits from its ranking's inversion)."""

    grid: list[int]
    states: dict[int, Tensor]

    def state(self, grid: Sequence[int], t: int) -> Tensor | None:
        """The state at ``t`` when it was inverted along ``grid``, else None."""
        return self.states.get(t) if list(self.grid) == list(grid) else None


def edit_masked(model: LoadedModel, images: Tensor, directions: Iterable[tuple[Direction | Tensor, float]],
                masks: Sequence[Tensor | Sequence[Tensor]], t_edit: float | int | None = None, *,
                options: EditOptions | None = None, orthogonalize: bool = False, inverted: bool = False,
                progress=None, null_bases: NullBases | None = None, at: Sequence[Inverted | None] | None = None,
                **given) -> list[EditResult]:
    """:func:`edit` with a target mask for each of several images: ``masks[i]`` is image ``i``'s
    (one for all directions, or one per direction). Each image's directions are re-localised on its
    own masks as :func:`edit` does for one; the inversions, edits, unedited references and spill
    passes of all the images go through the model together, one batch per sampler step (with tail
    noise, ``eta_tail`` > 0, one image at a time, so that each gets the noise it would alone).
    ``at[i]``, when given, is image ``i`` inverted already (:class:`Inverted`): used when every
    image's states lie on this edit's grid at its times, else the images are inverted as usual.
    Returns one :class:`~locobank.core.direction.EditResult` per image, as :func:`edit` gives it."""
    opts, dirs, strengths, x = _checked(model, images, directions, t_edit, inverted, options, given)
    masks = list(masks)
    if len(masks) != x.shape[0]:
        raise InputError(f"give one mask (or one per direction) for each image: {len(masks)} for {x.shape[0]} images")
    if at is not None and len(at) != x.shape[0]:
        raise InputError(f"give one inverted state (or None) for each image: {len(at)} for {x.shape[0]} images")
    at = list(at) if at is not None else [None] * x.shape[0]
    if opts.eta_tail > 0 and x.shape[0] > 1:
        return [r for i in range(x.shape[0])
                for r in _masked(model, x[i : i + 1], dirs, strengths, opts, masks[i : i + 1],
                                 orthogonalize=orthogonalize, inverted=inverted, progress=progress,
                                 null_bases=null_bases, at=at[i : i + 1])]
    return _masked(model, x, dirs, strengths, opts, masks, orthogonalize=orthogonalize, inverted=inverted,
                   progress=progress, null_bases=null_bases, at=at)


def _checked(model: LoadedModel, images: Tensor, directions, t_edit, inverted: bool, options, given: dict):
    """An edit's options, directions (each at its time), strengths and images (or states), checked."""
    opts = options_for(model, options, **given)
    pairs = list(directions)
    if not pairs:
        raise InputError("no direction to apply")
    try:
        strengths = [float(s) for _, s in pairs]
    except (TypeError, ValueError) as e:
        raise InputError(f"strengths must be numbers: {e}") from e
    return opts, _at_times(model, pairs, t_edit, inverted), strengths, as_batch(model, images, state=inverted)


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


def _states_given(at: Sequence[Inverted | None] | None, times: list[int], grid: list[int]) -> dict[int, Tensor] | None:
    """The images' states at ``times`` stacked from ``at``, when every image has them on ``grid``; else None."""
    given = {t: [None if a is None else a.state(grid, t) for a in at or ()] for t in times}
    if not at or any(s is None for states in given.values() for s in states):
        return None
    return {t: torch.cat(states) for t, states in given.items()}


def _grid(dirs: list[Direction], opts: EditOptions) -> tuple[list[int], list[int]]:
    """The edit times, and the DDIM grid: the usual one for the highest time with every
    direction's time added; inversion and sampling walk it in segments, so with zero strengths an
    edit is a plain reconstruction."""
    times = sorted({d.t_edit for d in dirs})
    return times, sorted(set(ddim.timesteps_to(times[-1], opts.steps)) | set(times))


def _deltas(vectors: list[Tensor], dirs: list[Direction], strengths: list[float], times: list[int],
            orthogonalize: bool) -> dict[int, Tensor]:
    """Each edit time's step: the sum of the directions added there, each at its strength."""
    parts = scaled(vectors, strengths, orthogonalize)
    return {t: sum(p for p, d in zip(parts, dirs) if d.t_edit == t).reshape(vectors[0].shape).to(vectors[0].dtype)
            for t in times}


def _edit_at_times(model: LoadedModel, x: Tensor, dirs: list[Direction], strengths: list[float], opts: EditOptions,
                   *, orthogonalize: bool, inverted: bool, progress=None) -> EditResult:
    """Invert to the highest edit time, then on the way back down add each direction when the
    sampler passes its own timestep (one time: the plain LOCO edit). With ``inverted`` (one time
    only) ``x`` is already the state at that time."""
    times, grid = _grid(dirs, opts)
    states = _invert_to_times(model, x, times, grid, inverted, progress)
    delta = _deltas([d.vector.to(model.device, torch.float32) for d in dirs], dirs, strengths, times, orthogonalize)
    top = times[-1]
    y = walk(model, grid, states[top], delta, seed=opts.seed, eta_tail=opts.eta_tail, progress=progress)
    return EditResult(images=y, x_t=states[top], x_t_edited=states[top] + delta[top], t_edit=top)


def _relocalized(model: LoadedModel, states: dict[int, Tensor], image: Tensor | None, dirs: list[Direction],
                 mask, opts: EditOptions, null_bases: NullBases | None) -> tuple[list, list, list, Tensor]:
    """One image's directions re-localised on its masks, each time's at its own state (``image``:
    the clean image, for registration; None when inverted). Returns the vectors, shifts, scales and
    the masks' union."""
    vectors = [d.vector.to(model.device, torch.float32) for d in dirs]
    shifts: list[tuple[float, float]] = [(0.0, 0.0)] * len(dirs)
    scales: list[tuple[float, float]] = [(1.0, 1.0)] * len(dirs)
    masks = masks_for(model, mask, len(dirs))
    union = torch.stack(masks).any(0)
    for t in sorted(states):
        idx = [i for i, d in enumerate(dirs) if d.t_edit == t]
        moved, moves, sizes = relocalize(model, states[t], t, [masks[i] for i in idx],
                                         torch.stack([vectors[i] for i in idx]), null_rank=opts.null_rank,
                                         max_shift=opts.max_shift, seed=opts.seed, union=union,
                                         sources=[dirs[i].source for i in idx] if opts.register else None,
                                         image=image, memory=null_bases)
        for i, v, m, k in zip(idx, moved, moves, sizes):
            vectors[i], shifts[i], scales[i] = v, m, k
    return vectors, shifts, scales, union


def _masked(model: LoadedModel, x: Tensor, dirs: list[Direction], strengths: list[float], opts: EditOptions,
            masks: list, *, orthogonalize: bool, inverted: bool, progress=None, references: list | None = None,
            null_bases: NullBases | None = None, at: Sequence[Inverted | None] | None = None) -> list[EditResult]:
    """Images ``x`` (B of them) each edited with its own masks ``masks[i]``: inverted together,
    each image's directions re-localised on its masks, then sampled together, with the spill passes
    correcting the highest time's edit for its spill outside each image's masks' union.
    ``references``: each image's unedited sample from an earlier edit of the same state and
    options (None: sampled here when spill passes need it); ``at``: see :func:`edit_masked`."""
    times, grid = _grid(dirs, opts)
    states = None if inverted else _states_given(at, times, grid)
    if states is None:
        states = _invert_to_times(model, x, times, grid, inverted, progress)
    found = [_relocalized(model, {t: s[i : i + 1] for t, s in states.items()}, None if inverted else x[i], dirs,
                          masks[i], opts, null_bases) for i in range(x.shape[0])]
    per_image = [_deltas(v, dirs, strengths, times, orthogonalize) for v, _, _, _ in found]
    delta = {t: torch.stack([d[t] for d in per_image]) for t in times}
    unions = torch.stack([u for _, _, _, u in found])
    top = times[-1]

    def walk_all(deltas: dict[int, Tensor]) -> Tensor:
        return walk(model, grid, states[top], deltas, seed=opts.seed, eta_tail=opts.eta_tail, progress=progress)

    reference = None if references is None else torch.stack(list(references))  # each (C, H, W)
    if reference is None and opts.spill_passes:
        reference = walk_all({t: torch.zeros_like(v) for t, v in delta.items()})
    delta[top], y = with_spill_passes(model, top, delta[top], unions, opts.spill_passes,
                                      lambda d: walk_all({**delta, top: d}), reference)
    x_t, edited = states[top], states[top] + delta[top]
    return [EditResult(images=y[i : i + 1], x_t=x_t[i : i + 1], x_t_edited=edited[i : i + 1], t_edit=top,
                       shifts=found[i][1], scales=found[i][2], reference=None if reference is None else reference[i])
            for i in range(x.shape[0])]
