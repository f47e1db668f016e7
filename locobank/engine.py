"""LOCO Edit on a loaded model: reach the edit time, find directions, and edit images.

This is the validating layer over :mod:`locobank.loco`: it checks shapes, masks and model
fingerprints and turns them into :class:`~locobank.errors.InputError` before torch sees them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from .errors import FingerprintMismatch, InputError
from .images import check_mask
from .loco import ddim
from .loco import register as reg
from .loco.align import align_to_mask, register_shift
from .loco.jacobian import Linearization, block_subspace_svd, project_out
from .models import LoadedModel

DEFAULT_T_EDIT = 0.6
DEFAULT_STEPS = 50
# Spill passes with a target mask (see spill_pass). Two, by measurement on the toy model: on 20
# unseen faces the top "blond hair" direction's locality went 0.80 -> 0.91 -> 0.93 -> 0.94 with
# 0, 1, 2, 3 passes and "smile" 0.91 -> 0.97 -> 0.98 -> 0.99, their probe gains within 7 %.
DEFAULT_SPILL_PASSES = 2
# How far a re-projected direction may still move between iterations of the target's null
# basis when reproject stops (relative to its norm). On 4 held-out toy faces (null rank 20), a
# basis settled to 1e-3 rad took 12-14 iterations; the projection settled to 1e-3 took 9-12,
# and to 1e-2 took 7-10, with the same vectors (cosine >= 0.99999) and the same change outside
# the mask (to 4 digits).
REPROJECT_TOL = 1e-2


@dataclass
class Direction:
    """A unit edit direction and what it belongs to: the model's fingerprint, the edit timestep
    and, when known, the part it was harvested on (so a target mask can register it)."""

    vector: Tensor  # (C, H, W), unit norm
    t: int
    fingerprint: str | None = None
    name: str | None = None
    source: reg.PartPrint | None = None  # the source part's mask (and profiles) at the model's resolution


@dataclass
class Directions:
    """What :func:`find_directions` returns: unit directions, singular values and diagnostics."""

    vectors: Tensor  # (r, C, H, W)
    singular_values: Tensor  # (r,)
    null_singular_values: Tensor  # (k,)
    t: int
    fingerprint: str | None
    diagnostics: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __getitem__(self, i: int) -> Direction:
        return Direction(self.vectors[i], self.t, self.fingerprint)


@dataclass
class EditResult:
    """Edited images, and the states that produced them, for inspection and reuse."""

    images: Tensor  # (B, C, H, W) in [-1, 1]
    x_t: Tensor  # inverted states before the edit
    x_t_edited: Tensor
    t: int
    shifts: list[tuple[float, float]] = field(default_factory=list)  # per direction, with a target mask
    scales: list[tuple[float, float]] = field(default_factory=list)  # (y, x) per direction, with a target mask


def to_timestep(model: LoadedModel, t_edit: float | int) -> int:
    """A fraction of T (0.6) or an integer timestep (600) as an integer timestep."""
    T = model.denoiser.num_timesteps
    if isinstance(t_edit, float) or (isinstance(t_edit, (int,)) and 0 < t_edit < 1):
        if not 0.0 < float(t_edit) < 1.0:
            raise InputError(f"t_edit as a fraction must lie in (0, 1), got {t_edit}")
        return max(1, min(T - 1, int(round(float(t_edit) * T))))
    t = int(t_edit)
    if not 1 <= t < T:
        raise InputError(f"t_edit must be a timestep in [1, {T - 1}] or a fraction in (0, 1), got {t_edit}")
    return t


def _as_batch(model: LoadedModel, images: Tensor, what: str = "image") -> Tensor:
    x = torch.as_tensor(images)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise InputError(f"{what} must be C x H x W or B x C x H x W, got shape {tuple(x.shape)}")
    if x.shape[1] != model.channels:
        raise InputError(f"{what} has {x.shape[1]} channels but the model takes {model.channels}")
    if x.shape[-1] != model.resolution or x.shape[-2] != model.resolution:
        raise InputError(f"{what} is {x.shape[-1]}x{x.shape[-2]} but the model takes "
                         f"{model.resolution}x{model.resolution}; resize it first")
    return x.to(device=model.device, dtype=torch.float32)


def invert(model: LoadedModel, images: Tensor, t_edit: float | int = DEFAULT_T_EDIT, steps: int = DEFAULT_STEPS,
           progress=None) -> Tensor:
    """Deterministic DDIM inversion of images in [-1, 1] to the edit time."""
    t = to_timestep(model, t_edit)
    return ddim.invert(model.denoiser, _as_batch(model, images), t, steps, progress=progress)


def noise_to(model: LoadedModel, images: Tensor, t_edit: float | int, seeds: Sequence[int]) -> Tensor:
    """Images noised to the edit time, ``sqrt(abar) x + sqrt(1 - abar) eps``, one seed per image.

    Unlike a DDIM-inverted state this is a typical state of the forward process, like a state
    on a sampling trajectory; each image's noise depends only on its own seed."""
    t = to_timestep(model, t_edit)
    x = _as_batch(model, images)
    if len(seeds) != x.shape[0]:
        raise InputError(f"noise_to needs one seed per image: {x.shape[0]} images, {len(seeds)} seeds")
    eps = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    a = model.denoiser.abar(t).item()
    return a ** 0.5 * x + (1 - a) ** 0.5 * eps.to(device=x.device, dtype=x.dtype)


def sample(model: LoadedModel, x_t: Tensor, t_edit: float | int = DEFAULT_T_EDIT, steps: int = DEFAULT_STEPS, *,
           eta_tail: float = 0.0, seed: int = 0, progress=None) -> Tensor:
    """DDIM from the edit time back to images; ``eta_tail`` > 0 adds seeded noise below 0.2T."""
    t = to_timestep(model, t_edit)
    g = torch.Generator().manual_seed(int(seed))
    return ddim.sample(model.denoiser, _as_batch(model, x_t, "x_t"), t, steps, eta_tail=eta_tail, generator=g,
                       progress=progress)


def pmp_fn(model: LoadedModel, t: int):
    """The posterior-mean predictor at timestep ``t`` as a function of one (C, H, W) state."""
    den = model.denoiser

    def fn(z: Tensor) -> Tensor:
        return den.pmp(z[None], t)[0]

    return fn


def find_directions(model: LoadedModel, x_te: Tensor, t: float | int, mask: Tensor, rank: int = 5,
                    null_rank: int = 5, *, iters: int = 50, tol: float = 1e-3, null_tol: float = 1e-2,
                    chunk: int = 16, seed: int = 0, constrained: bool = False) -> Directions:
    """Unsupervised LOCO directions for one image at the edit time.

    The top-``rank`` right singular vectors of the PMP Jacobian restricted to ``mask`` are
    projected off the top-``null_rank`` right singular vectors of the Jacobian outside it.
    Both bases come from one shared linearisation and batched JVP/VJP calls. With
    ``constrained``, the edit basis is instead the top singular vectors of ``J_M (I - N^T N)``:
    the strongest in-mask directions among those already orthogonal to the null basis. The null
    basis only has to span the outside's dominant directions, so it stops at the looser
    ``null_tol``.
    """
    tt = to_timestep(model, t)
    x = _as_batch(model, x_te, "x_te")
    if x.shape[0] != 1:
        raise InputError("find_directions takes one image at a time")
    x = x[0]
    if rank < 1:
        raise InputError("rank must be at least 1")
    if null_rank < 0:
        raise InputError("null_rank must be 0 or more")
    m = check_mask(mask, tuple(x.shape[-2:]), need_outside=null_rank > 0).to(model.device)
    inside = m[None].expand_as(x)
    outside = ~inside
    start = time.perf_counter()
    lin = Linearization(pmp_fn(model, tt), x, chunk=chunk)
    if constrained and null_rank > 0:
        (null_res,) = block_subspace_svd(lin, [outside], [null_rank], iters=iters, tol=null_tol, seed=seed + 1)
        (edit_res,) = block_subspace_svd(lin, [inside], [rank], iters=iters, tol=tol, seed=seed,
                                         constraints=[null_res.Vh])
    else:
        edit_res, null_res = block_subspace_svd(lin, [inside, outside], [rank, null_rank], iters=iters,
                                                tol=[tol, max(tol, null_tol)], seed=seed)
    V = edit_res.Vh
    if null_res is not None:
        V = project_out(V, null_res.Vh)
    vectors = V.reshape(rank, *x.shape)
    JV = lin.jvp(vectors)
    energy = JV.flatten(1).pow(2).sum(1).clamp_min(1e-30)
    outside_share = (JV * outside).flatten(1).pow(2).sum(1) / energy
    seconds = time.perf_counter() - start
    diag = {
        "seconds": seconds,
        "iterations": edit_res.iterations,
        "null_iterations": null_res.iterations if null_res is not None else 0,
        "converged": bool(edit_res.converged and (null_res is None or null_res.converged)),
        "angle": edit_res.angle,
        "null_angle": null_res.angle if null_res is not None else 0.0,
        "outside_residual": [float(v) for v in outside_share],
        "jvps": lin.jvp_calls,
        "vjps": lin.vjp_calls,
        "mask_area": int(m.sum()),
        "rank": rank,
        "null_rank": null_rank,
        "basis": "constrained" if constrained and null_rank > 0 else "projected",
    }
    null_s = null_res.S if null_res is not None else torch.zeros(0)
    return Directions(vectors=vectors.detach(), singular_values=edit_res.S.detach(), null_singular_values=null_s.detach(),
                      t=tt, fingerprint=model.fingerprint, diagnostics=diag)


def _check_direction(model: LoadedModel, d: Direction | Tensor, t: int | None) -> Direction:
    if isinstance(d, Tensor):
        d = Direction(d, t if t is not None else -1, None)
    if d.fingerprint is not None and d.fingerprint != model.fingerprint:
        raise FingerprintMismatch(f"direction{' ' + d.name if d.name else ''} was found with model fingerprint "
                                  f"{d.fingerprint}, but the loaded model is {model.fingerprint} ({model.model_id})")
    want = (model.channels, model.resolution, model.resolution)
    if tuple(d.vector.shape) != want:
        raise FingerprintMismatch(f"direction has shape {tuple(d.vector.shape)} but the model works at {want}: "
                                  f"it comes from a different resolution")
    return d


def _scaled(vectors: Sequence[Tensor], strengths: Sequence[float], orthogonalize: bool) -> list[Tensor]:
    """``lambda_i v_i`` as flat float64 vectors, after Gram-Schmidt on the directions in order if asked."""
    vs = [v.reshape(-1).to(torch.float64) for v in vectors]
    if orthogonalize:
        basis: list[Tensor] = []
        for v in vs:
            for b in basis:
                v = v - (v @ b) * b
            n = v.norm()
            if n < 1e-8:
                raise InputError("a composed direction is a combination of the ones before it")
            basis.append(v / n)
        vs = basis
    return [float(s) * v for s, v in zip(strengths, vs)]


def compose(vectors: Sequence[Tensor], strengths: Sequence[float], *, orthogonalize: bool = False) -> Tensor:
    """``sum_i lambda_i v_i``, optionally after Gram-Schmidt on the directions in order."""
    total = sum(_scaled(vectors, strengths, orthogonalize))
    return total.reshape(vectors[0].shape).to(vectors[0].dtype)


def locality(delta: Tensor, mask: Tensor) -> float:
    """Share of the pixel-change energy of ``delta`` (C x H x W) that falls inside ``mask`` (H x W bool)."""
    e = delta.detach().float().cpu().pow(2).sum(0)
    return float(e[mask.cpu().bool()].sum() / e.sum().clamp_min(1e-20))


def max_shift_for(model: LoadedModel) -> int:
    """How far (pixels of the model's grid) :func:`align` may move a direction by default:
    ``max_shift`` in the model's defaults, else 0 (no shift).

    Off by default because on the toy model it trades strength for locality: shifting the top
    "smile" direction by up to 4 px raised its locality on 20 unseen faces from 0.91 to 0.95
    (worst 0.66 to 0.85), but its mean effect at +4 fell (smile probe 0.49 against 0.63)
    and fewer faces stayed monotone across -8..8 (11 against 14)."""
    return int(model.defaults.get("max_shift", 0))


def align(model: LoadedModel, vectors: Tensor, masks: Tensor | Sequence[Tensor], *,
          max_shift: int | None = None) -> tuple[Tensor, list[tuple[int, int]]]:
    """``vectors`` (k, C, H, W) each shifted by whole pixels onto its mask (one mask for all, or
    one per vector), so that most of its energy falls on the part where it sits on *this* image.

    Returns the shifted vectors (each at its own norm) and the shifts (dy, dx)."""
    R = max_shift_for(model) if max_shift is None else int(max_shift)
    if R < 0:
        raise InputError("max_shift must be 0 or more")
    ms = _masks(model, masks, len(vectors))
    out = [align_to_mask(v, m.to(v.device), R) for v, m in zip(vectors, ms)]
    return torch.stack([v for v, _ in out]), [s for _, s in out]


def register_scale_for(model: LoadedModel) -> str:
    """On which axes :func:`register` fits a part's size: ``register_scale`` in the model's
    defaults ("xy", "x", "y" or "none"), else "xy"."""
    axes = str(model.defaults.get("register_scale", "xy"))
    if axes not in reg.SCALE_AXES:
        raise InputError(f"register_scale in the model's locobank.json must be one of {reg.SCALE_AXES}, got {axes!r}")
    return axes


def register_range_for(model: LoadedModel) -> int:
    """How far (pixels of the model's grid) :func:`register` may move a direction: ``register_range``
    in the model's defaults, else a quarter of the resolution."""
    return int(model.defaults.get("register_range", max(1, model.resolution // 4)))


def register(model: LoadedModel, vectors: Tensor, sources: Sequence[reg.PartPrint | None],
             targets: Tensor | Sequence[Tensor], *, image: Tensor | None = None,
             max_shift: int | None = None) -> tuple[Tensor, list[tuple[float, float]], list[tuple[float, float]]]:
    """``vectors`` (k, C, H, W) each carried from its source part onto its target mask (one for
    all, or one per vector): first the whole-pixel shift, within ``max_shift`` (default
    :func:`register_range_for`), that lays its source mask over the target mask; then, when the
    source carries its profiles and the target ``image`` (C, H, W, clean) is given, a sub-pixel
    offset per axis and a scale on the axes of :func:`register_scale_for`, fitted from the part's
    profiles (:mod:`locobank.loco.register`). A None source is left where it is.

    A direction acts on the part where it was found, at that part's size. On the toy model the
    top "smile" direction (found on a wide, smiling mouth), registered with the toy model's
    horizontal scale, stayed monotone across -8..8 on 17 of 20 unseen faces against 13
    unregistered (16 with scales on both axes).
    Returns the vectors (each at its own norm), the shifts (dy, dx) and the scales (sy, sx)."""
    R = register_range_for(model) if max_shift is None else int(max_shift)
    if R < 0:
        raise InputError("the registration range must be 0 or more")
    sources = list(sources)
    if len(sources) != len(vectors):
        raise InputError(f"give one source part (or None) per direction: {len(sources)} for {len(vectors)}")
    ms = _masks(model, targets, len(vectors))
    shape = (model.resolution, model.resolution)
    img = None if image is None else _as_batch(model, image, "image")[0]
    out, shifts, scales = [], [], []
    for i, (v, s, m) in enumerate(zip(vectors, sources, ms)):
        if s is None:
            out.append(v), shifts.append((0.0, 0.0)), scales.append((1.0, 1.0))
            continue
        sm = check_mask(s.mask, shape, name=f"source mask {i + 1}")
        dy, dx = register_shift(sm, m, R)
        if img is not None and s.cols is not None and s.rows is not None:
            (oy, ky), (ox, kx) = reg.fit(reg.PartPrint(sm, s.cols, s.rows), m, img, (dy, dx), model.resolution / 16,
                                         register_scale_for(model))
        else:
            (oy, ky), (ox, kx) = (float(dy), 1.0), (float(dx), 1.0)
        w = reg.warp(v, reg.centre(sm), (oy, ky), (ox, kx))
        n = w.norm()
        out.append(w * (v.norm() / n) if n > 0 else w)
        shifts.append((round(oy, 3), round(ox, 3)))
        scales.append((round(ky, 3), round(kx, 3)))
    return torch.stack(out), shifts, scales


def spill_passes_for(model: LoadedModel) -> int:
    """How many spill passes an edit with a target mask runs by default: ``spill_passes`` in the
    model's defaults, else :data:`DEFAULT_SPILL_PASSES`."""
    return int(model.defaults.get("spill_passes", DEFAULT_SPILL_PASSES))


def spill_pass(model: LoadedModel, t: int, delta: Tensor, edited: Tensor, reference: Tensor, inside: Tensor) -> Tensor:
    """One spill pass: the edit ``delta`` at timestep ``t`` less what it changed outside ``inside``.

    ``edited`` and ``reference`` are the images sampled from ``x_t + delta`` and from ``x_t``
    alone. Their difference outside the mask is the edit's spill; it is pulled back to time ``t``
    (times ``sqrt(abar_t)``, the gain of the state on the clean image at low noise) and
    subtracted from ``delta`` there, so sampling again changes less outside. The null-space
    projection removes the spill of the Jacobian at ``t`` alone; this one is measured through the
    whole sampler. Works on one (C, H, W) edit or a batch, with ``inside`` (H, W) or (B, H, W)."""
    outside = (~inside.bool()).unsqueeze(-3).to(delta.device, delta.dtype)
    gain = float(model.denoiser.abar(int(t))) ** 0.5
    return delta - gain * outside * (edited - reference).to(delta.device, delta.dtype)


def with_spill_passes(model: LoadedModel, t: int, delta: Tensor, inside: Tensor, passes: int,
                      sample: Callable[[Tensor], Tensor], reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``passes`` spill passes (:func:`spill_pass`) on the edit ``delta`` at timestep ``t``.

    ``sample(delta)`` returns the images edited by ``delta``; ``reference`` (the unedited
    images, ``sample`` of a zero edit when not given) is what the spill is measured against.
    Returns the corrected edit and the images it gives."""
    out = sample(delta)
    if passes > 0 and reference is None:
        reference = sample(torch.zeros_like(delta))
    for _ in range(passes):
        delta = spill_pass(model, t, delta, out, reference, inside)
        out = sample(delta)
    return delta, out


def _masks(model: LoadedModel, masks: Tensor | Sequence[Tensor], n: int) -> list[Tensor]:
    """One checked (H, W) mask per direction from one mask or a list of ``n``."""
    shape = (model.resolution, model.resolution)
    if isinstance(masks, Tensor) and masks.dim() == 2:
        return [check_mask(masks, shape)] * n
    ms = list(masks)
    if len(ms) == 1:
        return [check_mask(ms[0], shape)] * n
    if len(ms) != n:
        raise InputError(f"give one target mask, or one per direction: {len(ms)} masks for {n} directions")
    return [check_mask(m, shape, name=f"mask {i + 1}") for i, m in enumerate(ms)]


def reproject(model: LoadedModel, x_t: Tensor, t: float | int, mask: Tensor, vectors: Tensor, *,
              null_rank: int = 5, seed: int = 0, tol: float = REPROJECT_TOL) -> Tensor:
    """``vectors`` (k, C, H, W) projected off the top-``null_rank`` null basis of *this* image's
    PMP Jacobian outside ``mask``: a direction found on another image, made local on this one.

    The basis is iterated until the vectors' projections move by less than ``tol`` of their
    norm from one iteration to the next (``watch`` in :func:`block_subspace_svd`), not until
    the whole basis settles: the projection is the answer, and it settles first."""
    tt = to_timestep(model, t)
    x = _as_batch(model, x_t, "x_t")
    if x.shape[0] != 1:
        raise InputError("a target mask applies to one image at a time")
    if null_rank < 1:
        return vectors
    m = check_mask(mask, (model.resolution, model.resolution)).to(model.device)
    outside = (~m)[None].expand(model.channels, -1, -1)
    lin = Linearization(pmp_fn(model, tt), x[0])
    flat = vectors.to(model.device, torch.float32).reshape(vectors.shape[0], -1)
    (null_res,) = block_subspace_svd(lin, [outside], [null_rank], seed=seed, tol=tol, watch=[flat])
    return project_out(flat, null_res.Vh).reshape(vectors.shape)


def relocalize(model: LoadedModel, x_t: Tensor, t: float | int, masks: Tensor | Sequence[Tensor], vectors: Tensor, *,
               null_rank: int = 5, max_shift: int | None = None, seed: int = 0, union: Tensor | None = None,
               sources: Sequence[reg.PartPrint | None] | None = None,
               image: Tensor | None = None) -> tuple[Tensor, list[tuple[float, float]], list[tuple[float, float]]]:
    """A transferred edit made local on *this* image: ``vectors`` (k, C, H, W) each registered
    from its source part onto its mask (:func:`register`, for those with a source in
    ``sources``; ``image`` is this image, clean, for the profile fit), shifted further onto the
    mask where ``max_shift`` allows (:func:`align`), then projected off the null basis of this
    image's Jacobian at ``x_t`` outside the union of the masks (or outside ``union``;
    :func:`reproject`).

    Returns the vectors, their total shifts (dy, dx) and their scales (sy, sx)."""
    ms = _masks(model, masks, len(vectors))
    shifts, scales = [(0.0, 0.0)] * len(vectors), [(1.0, 1.0)] * len(vectors)
    if sources is not None:
        vectors, shifts, scales = register(model, vectors, sources, ms, image=image)
    aligned, more = align(model, vectors, ms, max_shift=max_shift)
    shifts = [(a + c, b + d) for (a, b), (c, d) in zip(shifts, more)]
    outside_of = torch.stack(ms).any(0) if union is None else union
    return reproject(model, x_t, t, outside_of, aligned, null_rank=null_rank, seed=seed), shifts, scales


def edit(model: LoadedModel, images: Tensor, directions: Iterable[tuple[Direction | Tensor, float]],
         t_edit: float | int | None = None, *, steps: int = DEFAULT_STEPS, seed: int = 0, eta_tail: float = 0.0,
         mask: Tensor | Sequence[Tensor] | None = None, null_rank: int = 5, orthogonalize: bool = False,
         inverted: bool = False, max_shift: int | None = None, spill_passes: int | None = None, register: bool = True,
         progress=None) -> EditResult:
    """Apply one direction, a transferred one, or a composition, to images in [-1, 1].

    With ``inverted`` the input is already the state at ``t_edit``. With ``mask`` (one for all
    directions, or one per direction) each direction that carries its source part is first
    registered onto its mask (:func:`register`, which fits the part's profiles on the clean
    image, so not with ``inverted``; unless ``register`` is false), shifted further by
    up to ``max_shift`` pixels (:func:`align`; default :func:`max_shift_for`, which is 0 unless the
    model sets it), then re-projected off the null space of *this* image's Jacobian outside the
    union of the masks, which keeps a transferred edit local on a new image (one image at a
    time then). The edit then runs ``spill_passes`` spill passes (:func:`spill_pass`; default
    :func:`spill_passes_for`): each samples the edit, subtracts its change outside the masks from
    the direction at the (highest) edit time, and samples again, so each pass costs one sampling
    (one more for the unedited reference).
    """
    pairs = list(directions)
    if not pairs:
        raise InputError("no direction to apply")
    try:
        strengths = [float(s) for _, s in pairs]
    except (TypeError, ValueError) as e:
        raise InputError(f"strengths must be numbers: {e}") from e
    ts = {d.t for d, _ in pairs if isinstance(d, Direction) and d.t >= 0}
    carried = all(isinstance(d, Direction) and d.t >= 0 for d, _ in pairs)
    if t_edit is None and len(ts) > 1 and carried:
        if inverted:
            raise InputError("directions found at different edit times need the clean images, not inverted states")
        dirs = [_check_direction(model, d, d.t) for d, _ in pairs]
    else:
        if t_edit is None:
            if len(ts) != 1:
                raise InputError("give t_edit, or directions that all carry their edit timesteps")
            t = ts.pop()
        else:
            t = to_timestep(model, t_edit)
            if ts and ts != {t}:
                raise InputError(f"directions were found at timesteps {sorted(ts)} but the edit is at {t}")
        dirs = [_check_direction(model, d, t) for d, _ in pairs]
        dirs = [Direction(d.vector, t, d.fingerprint, d.name, d.source) if d.t != t else d for d in dirs]
    passes = spill_passes_for(model) if spill_passes is None else int(spill_passes)
    if passes < 0:
        raise InputError("spill_passes must be 0 or more")
    return _edit_at_times(model, _as_batch(model, images), dirs, strengths, steps=steps, seed=seed, eta_tail=eta_tail,
                          mask=mask, null_rank=null_rank, orthogonalize=orthogonalize, inverted=inverted,
                          max_shift=max_shift, spill_passes=passes, register=register, progress=progress)


def _walk(model: LoadedModel, grid: list[int], x_top: Tensor, deltas: dict[int, Tensor], *, seed: int,
          eta_tail: float, progress=None) -> Tensor:
    """Sample down from ``x_top``, the state at the highest time in ``deltas``, adding each
    time's edit as the sampler passes it (the highest one to ``x_top`` first), on ``grid``."""
    g = torch.Generator().manual_seed(int(seed))  # the same tail noise on every walk
    down = sorted(deltas, reverse=True)
    y = x_top + deltas[down[0]]
    for i, t in enumerate(down):
        lower = down[i + 1] if i + 1 < len(down) else None
        seg = [gg for gg in grid if (lower or 0) < gg <= t]
        y = ddim.sample(model.denoiser, y, t, eta_tail=eta_tail, generator=g, progress=progress, grid=seg, t_stop=lower)
        if lower is not None:
            y = y + deltas[lower]
    return y


def _edit_at_times(model: LoadedModel, x: Tensor, dirs: list[Direction], strengths: list[float], *, steps: int,
                   seed: int, eta_tail: float, mask: Tensor | Sequence[Tensor] | None, null_rank: int,
                   orthogonalize: bool, inverted: bool, max_shift: int | None = None, spill_passes: int = 0,
                   register: bool = True, progress=None) -> EditResult:
    """Invert to the highest edit time, then on the way back down add each direction when the
    sampler passes its own timestep (one time: the plain LOCO edit). The DDIM grid is the usual
    one for the highest time with every direction's time added; inversion and sampling walk the
    same grid in segments, so with zero strengths this is a plain reconstruction. With
    ``inverted`` (one time only) ``x`` is already the state at that time. With a mask, the
    ``spill_passes`` correct the highest time's edit for its spill outside the masks' union."""
    den = model.denoiser
    times = sorted({d.t for d in dirs})
    grid = sorted(set(ddim.timesteps_to(times[-1], steps)) | set(times))
    if mask is not None and x.shape[0] != 1:
        raise InputError("a target mask applies to one image at a time")
    states: dict[int, Tensor] = {}
    state, prev = x, None
    for t in times:
        if inverted:
            states[t] = x
            continue
        seg = [g for g in grid if (prev or 0) < g <= t]
        state = ddim.invert(den, state, t, grid=seg, t_from=prev, progress=progress)
        states[t], prev = state, t
    vectors = [d.vector.to(model.device, torch.float32) for d in dirs]
    shifts: list[tuple[float, float]] = [(0.0, 0.0)] * len(dirs)
    scales: list[tuple[float, float]] = [(1.0, 1.0)] * len(dirs)
    if mask is not None:
        masks = _masks(model, mask, len(dirs))
        union = torch.stack(masks).any(0)
        for t in times:
            idx = [i for i, d in enumerate(dirs) if d.t == t]
            moved, moves, sizes = relocalize(model, states[t], t, [masks[i] for i in idx],
                                             torch.stack([vectors[i] for i in idx]), null_rank=null_rank,
                                             max_shift=max_shift, seed=seed, union=union,
                                             sources=[dirs[i].source for i in idx] if register else None,
                                             image=None if inverted else x[0])
            for i, v, m, k in zip(idx, moved, moves, sizes):
                vectors[i], shifts[i], scales[i] = v, m, k
    parts = _scaled(vectors, strengths, orthogonalize)
    delta = {t: sum(p for p, d in zip(parts, dirs) if d.t == t).reshape(vectors[0].shape).to(vectors[0].dtype)
             for t in times}
    top = times[-1]

    def walk(deltas: dict[int, Tensor]) -> Tensor:
        return _walk(model, grid, states[top], deltas, seed=seed, eta_tail=eta_tail, progress=progress)

    if mask is not None:  # one image: walk it as (C, H, W) like its edit
        reference = walk({t: torch.zeros_like(v) for t, v in delta.items()})[0] if spill_passes else None
        delta[top], y = with_spill_passes(model, top, delta[top], union, spill_passes,
                                          lambda d: walk({**delta, top: d})[0], reference)
        y = y[None]
    else:
        y = walk(delta)
    return EditResult(images=y, x_t=states[top], x_t_edited=states[top] + delta[top], t=top,
                      shifts=shifts if mask is not None else [], scales=scales if mask is not None else [])


def edit_each(model: LoadedModel, images: Tensor, directions: Sequence[Direction], strengths: Sequence[float], *,
              steps: int = DEFAULT_STEPS, seed: int = 0, eta_tail: float = 0.0,
              mask: Tensor | None = None, null_rank: int = 5, max_shift: int | None = None,
              spill_passes: int | None = None, register: bool = True, batch: int = 16,
              progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, EditResult]]:
    """Each direction applied alone, at its strength, to the same ``images``: yields (index of
    the direction, its :class:`EditResult`) as one :func:`edit` call each would give, with the
    work they share done once. Results come grouped by edit time, so that a caller keeping only
    the best of them holds one at a time.

    Directions found at one edit time share one inversion (without it, N directions cost 2N
    samplings of each image, with it N + 1). With ``mask`` (one image; one mask for all) they
    also share the re-projection, against one null basis iterated until every direction's
    projection has settled (so each is settled at least as far as alone, and matches a lone
    edit to the re-projection's tolerance), and the unedited reference of the spill passes;
    their edits and spill passes are then sampled ``batch`` directions at a time (one at a
    time with ``eta_tail``, so each gets the tail noise a lone edit would). ``progress`` is
    called with the number of images after each direction's edits."""
    dirs = [_check_direction(model, d, None) for d in directions]
    if not dirs:
        raise InputError("no direction to apply")
    if len(strengths) != len(dirs):
        raise InputError(f"give one strength per direction: {len(strengths)} for {len(dirs)}")
    if any(d.t < 0 for d in dirs):
        raise InputError("edit_each needs directions that carry their edit timesteps")
    passes = spill_passes_for(model) if spill_passes is None else int(spill_passes)
    if passes < 0:
        raise InputError("spill_passes must be 0 or more")
    x = _as_batch(model, images)
    if mask is not None:
        if x.shape[0] != 1:
            raise InputError("a target mask applies to one image at a time")
        mask = check_mask(mask, (model.resolution, model.resolution)).to(model.device)
    for t in sorted({d.t for d in dirs}):
        idx = [i for i, d in enumerate(dirs) if d.t == t]
        grid = sorted(set(ddim.timesteps_to(t, steps)) | {t})
        x_t = ddim.invert(model.denoiser, x, t, grid=grid)
        vectors = torch.stack([dirs[i].vector.to(model.device, torch.float32) for i in idx])
        if mask is not None:
            vectors, shifts, scales = relocalize(model, x_t, t, mask, vectors, null_rank=null_rank,
                                                 max_shift=max_shift, seed=seed, union=mask, image=x[0],
                                                 sources=[dirs[i].source for i in idx] if register else None)
        deltas = torch.stack([p.reshape(v.shape).to(v.dtype)
                              for p, v in zip(_scaled(vectors, [strengths[i] for i in idx], False), vectors)])

        def walk(d: Tensor) -> Tensor:
            return _walk(model, grid, x_t, {t: d}, seed=seed, eta_tail=eta_tail)

        if mask is None:
            for i, d in zip(idx, deltas):
                r = EditResult(walk(d), x_t, x_t + d, t)
                if progress:
                    progress(len(x))
                yield i, r
            continue
        reference = walk(torch.zeros_like(deltas[0]))[0] if passes else None
        chunk = 1 if eta_tail > 0 else max(1, int(batch))
        for c in range(0, len(idx), chunk):
            d, y = with_spill_passes(model, t, deltas[c : c + chunk], mask, passes, walk, reference)
            for j in range(len(d)):
                if progress:
                    progress(1)
                yield idx[c + j], EditResult(y[j : j + 1], x_t, x_t + d[j : j + 1], t, [shifts[c + j]],
                                             [scales[c + j]])
