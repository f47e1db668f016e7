"""Cheap previews of candidate edits on one image: the posterior mean of the edited state.

A full edit inverts the image, moves its state at the edit time and samples back to pixels. The
preview stops half-way: it decodes the model's posterior-mean prediction ``x0_hat(x_t + λ s v)``
of the edited state, one batched network pass for all the candidates after one inversion per edit
time (or, for the few hits the ranking looks at again, :func:`narrowed`, the edited state sampled
down in a few DDIM steps from the same inversion, starting from the posterior means already
computed: closer to the full edit). A strength is calibrated from the preview's change at the
default strength (kept where that change is on target already), scaled as if linear, checked once
and corrected once: the predictor is locally linear in the state (what LOCO Edit rests on), but a
latent model's decoded preview is not (see :func:`corrected`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from .. import core
from ..errors import ArgumentError, InputError
from ..images import check_mask
from ..loco import ddim
from ..models import LoadedModel
from ..progress import Progress, stage
from ..settings import EditOptions

# What a calibrated strength means: the strength at which the preview changes the image inside the
# mask (without one, inside the part the direction was found on) by this RMS, pixels in [-1, 1]:
# one size of change for every direction. Measured on 3 unseen toy faces per part (every harvested
# direction of the part re-localised on it; not the quality table's faces): at the default strength
# the change has a median RMS of 0.15 on the toy pixel model (10-90 %: 0.07-0.46, coefficient of
# variation 0.81) and 0.07 on the toy latent model (0.03-0.15, CV 0.75). 0.15 keeps the pixel
# model's median edit as it is and strengthens the latent model's, whose edits are mostly faint.
CHANGE_TARGET = 0.15
# A calibrated strength never exceeds this many times the model's default strength for the
# direction's part. The pixel model's mouth previews stay within 6 % of linear up to 3 times the
# default, its hair previews saturate past 2 times (0.86 of linear at 2, 0.72 at 3). On the latent
# model, whose edits are faint, a cap of 2 left half the directions short of the target (coefficient
# of variation of the calibrated change 0.80 against 0.94 at the default); 3 leaves 15 of 54 (0.37).
STRENGTH_CAP = 3.0
# Nor falls below the default: a calibrated strength makes faint edits show, and leaves the others at
# the strength their model's settings chose to show them. Measured with the probes (docs/quality.md):
# calibrating down as well (to half the default at least) took the same top pixel hits from 9 to 7
# unseen faces moved for "bigger eyes" and from 10 to 6 for "glasses"; on held-out faces of our own
# "bigger eyes"' top hit calibrated to 0.16 times its default left the eyes as they were.
STRENGTH_FLOOR = 1.0
# With a mask, the previews' candidates are re-localised as ``apply --mask`` does, but their
# re-projection is settled only to this tolerance (``apply`` settles it to REPROJECT_TOL, 1e-2):
# the preview only has to rank them. On 6 held-out faces of our own (smile, blond hair, blue eyes;
# toy pixel model) the scores at 0.15 kept a Spearman correlation of at least 0.959 with those at
# 1e-2 and the same top hit on all 6, at less than half the time (tests/bench/bench_rank.py
# --preview-tol: ranking with a mask at 0.20-0.22 of best-of-5's cost, against 0.47-0.50).
PREVIEW_TOL = 0.15
# ... watching the projected vectors themselves (``apply`` watches each direction's share of change
# outside the mask, :data:`locobank.core.transfer.REPROJECT_SETTLE`, which first costs one J v of every
# watched vector: here 32 candidates; not measured for the previews).
PREVIEW_SETTLE = "projection"
# Without a mask, the previews invert the image on a coarser grid than a full edit: at most this many
# DDIM steps to the edit time (a full edit takes the model's steps, 50 on the toy models). The
# inversion is most of an unmasked ranking's cost. On 6 held-out faces of our own x smile, blue eyes,
# blond hair (toy pixel model; pools of 32 directions of one other face, near-equals among them), the
# scores at 25 steps kept a median Spearman correlation of 0.98 (lowest 0.93) with those at 50 and the
# same `verify` top hit on 16 of 18, at 0.66 of the time (15 steps: 0.95, 14 of 18). With a mask the
# re-projection is made at the inverted state: 25 steps kept the top hit on 13 of 18 and saved less
# (0.83 of the time), so masked previews keep the model's steps.
PREVIEW_STEPS = 25
# The calibration's tolerance (relative): a candidate whose change at the strength it is first
# measured at is this close to the target stays there; the others are checked once at the strength
# the calibration predicts and, when that check is off by more, corrected once more from it.
CALIBRATION_TOL = 0.1
# The previews' network passes (the posterior means, a closer look's few DDIM steps and, with a mask,
# the re-localisation's Jacobian products; never the inversion) autocast to bfloat16 under "auto" for a float32 pixel-space model
# on a device that computes it natively (a CUDA card with bf16, a CPU with AVX512-BF16 or AMX); "fp32"
# keeps the model's dtype, "bf16" asks for it anywhere. Measured on the 2-core AVX512-BF16 CPU, one
# thread, pools of 32 directions of one held-out face, 4 other held-out faces x smile, blue eyes,
# blond hair, with and without a mask: toy pixel model, the scores' Spearman correlation with
# float32's median 0.997 (lowest 0.979), the top hit the same on 24 of 24, the calibrated strengths
# 2-14 % apart at most per face, a plain ranking in 0.80 of the time (with a mask 0.87); toy latent
# model (11 of those pairs, pools of 16): median 0.94 (lowest 0.86), strengths up to 40 % apart and
# no time saved, so "auto" leaves latent models as they are. The masked previews' re-projection in
# bfloat16 too (settled to PREVIEW_TOL either way; 6 held-out faces of our own x smile, blond hair,
# blue eyes with their part's mask, pools of 32 of one other face): Spearman with its float32 scores
# 0.989-0.998, the same top hit on every one, strengths within 1 %, the masked ranking in 0.85-0.90
# of the time.
PREVIEW_PRECISION = "auto"
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class StateAt:
    """One edit time's shared work: the image's state there, its unedited preview, and the
    candidates found at that time (their indices and their vectors, re-localised on a mask)."""

    t: int
    x_t: Tensor  # (1, *state_shape)
    unedited: Tensor | None  # (C, H, W) in [-1, 1]: x0_hat(x_t) decoded (None: made with the first previews)
    index: list[int]
    vectors: Tensor  # (k, *state_shape)
    regions: Tensor  # (k, H, W) bool: where each candidate's change is measured
    walk: int = 1  # DDIM steps from the edit time to the preview: 1 is the posterior mean
    # posterior means at t computed already, by (candidate row, signed strength); row -1 the unedited:
    # a walk of several steps starts from them instead of a first network pass
    means: dict = field(default_factory=dict, repr=False)
    autocast: torch.dtype | None = None  # the dtype its previews' network passes run in (None: the model's)
    grid: list[int] | None = None  # the DDIM grid x_t was inverted along


@dataclass
class Previewed:
    """A candidate previewed: at which strength (along sign * v), how big the change inside the
    mask is, whether that strength was calibrated, and the preview and unedited images."""

    strength: float
    change: float
    calibrated: bool
    preview: Tensor  # (C, H, W) in [-1, 1]
    unedited: Tensor  # (C, H, W) in [-1, 1]


def preview_dtype(model: LoadedModel, precision: str | None = None) -> torch.dtype | None:
    """The dtype ``model``'s previews autocast to under ``precision`` (one of :data:`PRECISIONS`;
    None: :data:`PREVIEW_PRECISION`), or None for the model's own. "auto" is bfloat16 only for a
    float32 model whose family allows it (``bf16_previews``: the pixel family; a latent model's
    decoded previews moved too much in it, see :data:`PREVIEW_PRECISION`) on a device that
    computes bfloat16 natively."""
    p = PREVIEW_PRECISION if precision is None else precision
    if p not in PRECISIONS:
        raise ArgumentError(f"preview precision must be one of {', '.join(PRECISIONS)}, not {p!r}",
                            params=("preview_precision",))
    if p == "fp32" or model.dtype != torch.float32:
        return None
    if p == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if model.family.bf16_previews and _native_bf16(torch.device(model.device)) else None


def _native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (faster than float32, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover - a build without oneDNN
            return False
    return False


def posterior_images(model: LoadedModel, x_t: Tensor, t: int, deltas: Tensor, *, batch: int = 16,
                     walk: int = 1, known: Tensor | None = None) -> Tensor:
    """``x0_hat(x_t + delta)`` decoded to images, for each row of ``deltas`` (k, *state_shape),
    ``batch`` states a pass: the family's posterior-mean predictor, batched. With ``walk`` > 1,
    the edited states are sampled down to images in that many DDIM steps instead (a full edit's
    sampler on a coarser grid): ``walk`` times the cost, closer to the full edit. ``known`` (k,
    *state_shape): the posterior means of the edited states, when computed already (a walk starts
    from them without a network pass)."""
    return _posterior(model, x_t, t, deltas, batch, walk, known)[0]


@torch.no_grad()
def _posterior(model: LoadedModel, x_t: Tensor, t: int, deltas: Tensor, batch: int, walk: int,
               known: Tensor | None, autocast: torch.dtype | None = None) -> tuple[Tensor, Tensor | None]:
    """:func:`posterior_images`, and with ``walk`` 1 the posterior means they decode (in ``x_t``'s
    dtype); ``autocast``: the dtype the network passes run in (None: the model's)."""
    images, means = [], []
    b = max(1, int(batch))
    with torch.autocast(x_t.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        for i in range(0, len(deltas), b):
            z = x_t + deltas[i : i + b].to(x_t.device, x_t.dtype)
            first = None if known is None else known[i : i + b]
            if walk <= 1:
                x0 = model.denoiser.pmp(z, t).to(z.dtype) if first is None else first.to(z.device, z.dtype)
                means.append(x0)
            else:
                x0 = ddim.sample(model.denoiser, z, t, int(walk), x0_first=first).to(z.dtype)
            images.append(model.family.decode(x0).float())
    return torch.cat(images), torch.cat(means) if means else None


def states_for(model: LoadedModel, image: Tensor, directions: Sequence[core.Direction], *,
               mask: Tensor | None = None, options: EditOptions | None = None, walk: int = 1,
               precision: str | None = None, progress: Progress | None = None) -> list[StateAt]:
    """The image inverted once per edit time among ``directions``, on the grid a full edit uses
    (:func:`locobank.core.edit_each`; without ``mask`` at most :data:`PREVIEW_STEPS` steps), and
    with ``mask`` the directions re-localised on it against one null basis per time, as
    ``apply --mask`` does (:func:`locobank.core.relocalize`); ``precision``: the previews'
    (:func:`preview_dtype`)."""
    opts = core.options_for(model, options)
    if mask is None:
        opts = opts.but(steps=min(opts.steps, PREVIEW_STEPS))
    x = core.as_batch(model, image)
    if x.shape[0] != 1:
        raise InputError("previews are made on one image at a time", params=("image",))
    dirs = [core.check_direction(model, d, None) for d in directions]
    times = sorted({d.t_edit for d in dirs})
    step = stage(progress, "invert", len(times))
    dtype = preview_dtype(model, precision)
    out = []
    for t in times:
        idx = [i for i, d in enumerate(dirs) if d.t_edit == t]
        grid, x_t, vectors, _, _ = core.shared_at(model, x, t, [dirs[i] for i in idx], opts, mask, tol=PREVIEW_TOL,
                                                  autocast=dtype, settle=PREVIEW_SETTLE)
        # the unedited image is previewed in the same batch as the first previews (preview_at)
        out.append(StateAt(t, x_t, None, idx, vectors, regions_for(model, [dirs[i] for i in idx], mask), walk,
                           autocast=dtype, grid=grid))
        step(1)
    return out


def regions_for(model: LoadedModel, directions: Sequence[core.Direction], mask: Tensor | None) -> Tensor:
    """Where each direction's change is measured (k, H, W): inside ``mask``; without one, inside
    the part the direction was found on (where it acts when it is not re-localised), else everywhere."""
    shape = (model.resolution, model.resolution)
    if mask is not None:
        return mask.cpu().bool()[None].expand(len(directions), *shape)
    return torch.stack([d.source.mask.cpu().bool() if d.source is not None and tuple(d.source.mask.shape) == shape
                        else torch.ones(shape, dtype=torch.bool) for d in directions])


def change_size(change: Tensor, regions: Tensor) -> Tensor:
    """RMS of each image change (k, C, H, W) inside its region (k, H, W bool, or one H x W for all)."""
    sq = change.float().pow(2).mean(1).cpu()  # (k, H, W): mean over channels
    r = regions.cpu().bool().expand_as(sq).float()
    return ((sq * r).flatten(1).sum(1) / r.flatten(1).sum(1).clamp_min(1)).sqrt()


def calibrated_strengths(defaults: Tensor, changes: Tensor, target: float = CHANGE_TARGET,
                         cap: float = STRENGTH_CAP, floor: float = STRENGTH_FLOOR, at: Tensor | None = None) -> Tensor:
    """The strengths whose change reaches ``target``, from the change each candidate made at its
    default strength (or at ``at``), as if the preview were linear in the strength, from ``floor``
    to ``cap`` times the default."""
    at = defaults if at is None else at
    return (at * target / changes.clamp_min(1e-12)).clamp(floor * defaults, cap * defaults)


def preview_at(model: LoadedModel, state: StateAt, signed: Tensor, batch: int,
               which: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(previews, their change sizes) of ``state``'s candidates (or those ``which`` picks) at the
    signed strengths ``signed``; a state without its unedited image gets it in the same batch."""
    vectors = state.vectors if which is None else state.vectors[which.to(state.vectors.device)]
    regions = state.regions if which is None else state.regions[which]
    deltas = signed.to(vectors.device, vectors.dtype).view(-1, *[1] * (vectors.dim() - 1)) * vectors
    rows = range(len(state.index)) if which is None else which.tolist()
    keys = [(r, float(s)) for r, s in zip(rows, signed.tolist())]
    fresh = state.unedited is None
    if fresh:
        deltas = torch.cat([torch.zeros_like(deltas[:1]), deltas])
        keys = [(-1, 0.0)] + keys
    known = torch.stack([state.means[k] for k in keys]) if all(k in state.means for k in keys) else None
    images, means = _posterior(model, state.x_t, state.t, deltas, batch + fresh, state.walk, known, state.autocast)
    if means is not None:
        state.means.update(zip(keys, means))
    if fresh:
        state.unedited, images = images[0], images[1:]
    return images, change_size(images - state.unedited.to(images.device), regions)


def preview_state(model: LoadedModel, state: StateAt, signs: Tensor, defaults: Tensor, *, strength: float | None,
                  target: float = CHANGE_TARGET, batch: int = 16, start: Tensor | None = None) -> list[Previewed]:
    """One edit time's candidates previewed: at ``strength`` when given (as ``apply`` takes it),
    else at their calibrated strengths (measured at ``start``, by default ``defaults``, scaled to
    ``target`` within the floor and cap of ``defaults``, checked once and corrected once where the
    check is off by over :data:`CALIBRATION_TOL`)."""
    if strength is not None:
        lam = torch.full(defaults.shape, float(strength), dtype=torch.float64)
        images, changes = preview_at(model, state, signs * lam, batch)
        return [Previewed(float(s), float(c), False, p, state.unedited) for s, c, p in zip(lam, changes, images)]
    defaults = defaults.double()
    at = defaults if start is None else start.double()
    images, first = preview_at(model, state, signs * at, batch)
    low, high = STRENGTH_FLOOR * defaults, STRENGTH_CAP * defaults
    lam = rounded(calibrated_strengths(defaults, first, target, at=at))
    lam = torch.where((first / target - 1).abs() <= CALIBRATION_TOL, at, lam)  # on target already: stays
    changes = first.clone()
    moved = (lam != at).nonzero().flatten()  # the others stay where they were measured: previewed already
    if len(moved):
        images[moved], changes[moved] = preview_at(model, state, signs[moved] * lam[moved], batch, which=moved)
    off = ((changes / target - 1).abs() > CALIBRATION_TOL) & (lam < high) & (lam > low) & (lam != at)
    if off.any():
        k = off.nonzero().flatten()
        again = corrected(at[k], first[k], lam[k], changes[k], target)
        lam[k] = rounded(again.clamp(low[k], high[k]))
        images[k], changes[k] = preview_at(model, state, signs[k] * lam[k], batch, which=k)
    return [Previewed(float(s), float(c), True, p, state.unedited) for s, c, p in zip(lam, changes, images)]


def rounded(strengths: Tensor) -> Tensor:
    """Strengths to 3 significant digits: what a user types back (``apply ID:STRENGTH``) previews
    the same edit."""
    return torch.tensor([float(f"{v:.3g}") for v in strengths.tolist()], dtype=torch.float64)


def corrected(lam0: Tensor, c0: Tensor, lam1: Tensor, c1: Tensor, target: float) -> Tensor:
    """The strength that reaches ``target`` from two measurements, on the power law through them.

    Decoded previews of latent models are not linear in the strength: on the toy latent model the
    change at twice the default is 2.9 times the change at the default (median of 27 directions,
    mouth and hair), while the toy pixel model's mouth stays within 6 % of linear up to 3 times. So
    the check's correction fits ``change ~ strength ** p`` (p from the two points, 0.5 to 3)."""
    ratio = (lam1 / lam0).clamp_min(1e-6)
    p = torch.where((ratio - 1).abs() > 1e-3, (c1.clamp_min(1e-12) / c0.clamp_min(1e-12)).log() / ratio.log(),
                    torch.ones_like(ratio))
    p = torch.nan_to_num(p, nan=1.0).clamp(0.5, 3.0)
    return lam1 * (target / c1.clamp_min(1e-12)) ** (1 / p)


def preview_pool(model: LoadedModel, image: Tensor, directions: Sequence[core.Direction],
                 signs: Sequence[int], defaults: Sequence[float], *, mask: Tensor | None = None,
                 strength: float | None = None, target: float = CHANGE_TARGET,
                 options: EditOptions | None = None, batch: int = 16, walk: int = 1,
                 precision: str | None = None, progress: Progress | None = None) -> tuple[list[StateAt], list[Previewed]]:
    """Every direction previewed on ``image`` (C, H, W in [-1, 1]) along ``sign * v``, in the order
    given: at ``strength`` if given, else at the strength that changes it by ``target`` (RMS),
    calibrated from its default (``defaults``, the model's strength for its part). With ``mask``
    (H, W) the directions are re-localised on it first and change sizes are measured inside it
    (without one, inside each direction's own part; :func:`regions_for`). ``walk``: DDIM steps
    from the edit time to each preview (1, the posterior mean, is the cheapest; more predict the
    full edit better, docs/image_search.md); ``precision``: the network passes' (:func:`preview_dtype`).
    Returns the image's states too (:func:`narrowed` previews a few candidates again from them)."""
    if not directions:
        raise InputError("no candidate directions to preview")
    if not len(directions) == len(signs) == len(defaults):
        raise InputError("give one sign and one default strength per direction")
    if not 0 < target < float("inf"):
        raise ArgumentError("target must be a positive RMS change", params=("target",))
    if strength is not None and not (strength > 0 and strength < float("inf")):
        raise ArgumentError("strength must be a positive finite number; the sign comes with each hit",
                            params=("strength",))
    if mask is not None:
        mask = check_mask(mask, (model.resolution, model.resolution)).to(model.device)
    if int(walk) < 1:
        raise ArgumentError("preview steps must be at least 1", params=("walk",))
    states = states_for(model, image, directions, mask=mask, options=options, walk=int(walk), precision=precision,
                        progress=progress)
    return states, preview_states(model, states, signs, defaults, strength=strength, target=target, batch=batch,
                                  progress=progress)


def preview_states(model: LoadedModel, states: Sequence[StateAt], signs: Sequence[int], defaults: Sequence[float],
                   *, strength: float | None = None, target: float = CHANGE_TARGET, batch: int = 16,
                   start: Sequence[float] | None = None, progress: Progress | None = None) -> list[Previewed]:
    """The candidates of ``states`` (:func:`states_for`, or :func:`narrowed`) previewed as
    :func:`preview_pool` does, in the order of their indices; ``start`` (one per candidate of
    the pool): the strengths a calibration measures first (a coarser look's calibrated ones)
    instead of the defaults."""
    step = stage(progress, "preview", sum(len(st.index) for st in states))
    found: dict[int, Previewed] = {}
    for st in states:
        s = torch.tensor([float(signs[i]) for i in st.index])
        d = torch.tensor([abs(float(defaults[i])) for i in st.index], dtype=torch.float64)
        at = None if start is None else torch.tensor([abs(float(start[i])) for i in st.index], dtype=torch.float64)
        found.update(zip(st.index, preview_state(model, st, s, d, strength=strength, target=target, batch=batch,
                                                 start=at)))
        step(len(st.index))
    return [found[i] for i in sorted(found)]


def narrowed(states: Sequence[StateAt], keep: Sequence[int], walk: int) -> list[StateAt]:
    """The same inverted (and re-localised) states kept only for the candidates ``keep`` (indices
    into the whole pool), previewed in ``walk`` DDIM steps: a second, finer look at a few
    candidates without inverting the image again."""
    kept = set(keep)
    out = []
    for st in states:
        rows = [j for j, i in enumerate(st.index) if i in kept]
        if not rows:
            continue
        r = torch.tensor(rows)  # the unedited image is sampled with their first previews (preview_at)
        row = {-1: -1, **{j: n for n, j in enumerate(rows)}}  # the kept rows' posterior means go along
        means = {(row[j], s): m for (j, s), m in st.means.items() if j in row}
        out.append(StateAt(st.t, st.x_t, None, [st.index[j] for j in rows], st.vectors[r.to(st.vectors.device)],
                           st.regions[r], walk, means, st.autocast, st.grid))
    return out
