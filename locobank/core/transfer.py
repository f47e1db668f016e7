"""Transfer and re-localisation: a direction found on one image made local on another, by
registering it onto the target part, optionally shifting it onto the mask, and projecting it
off the null space of the target's own Jacobian outside the mask."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import InputError
from ..images import check_mask
from ..loco import register as reg
from ..loco.align import align_to_mask, register_shift
from ..loco.jacobian import block_subspace_svd, project_out
from ..models import LoadedModel
from .find import linearize
from .states import as_batch
from .time import to_timestep

# When reproject stops: with "projection", once each re-projected direction moves by less than this
# (relative to its norm) over a block's worth of iterations of the target's null basis; with "share",
# once each direction's share of change outside the mask moves by less than this, its projection
# having moved by less than locobank.loco.watch.SHARE_GUARD (5 %). On 4 held-out toy faces (null
# rank 20, whole blocks), a basis settled to 1e-3 rad took 12-14 iterations; the projection settled
# to 1e-2, 7-10, with the same vectors (cosine >= 0.99999) and the same change outside the mask.
REPROJECT_TOL = 1e-2
# What a re-projection watches (:func:`reproject`). "share": the null basis of rank 20 has no spectral
# gap, so the projection keeps moving after the spill it leaves has settled; on 4 held-out toy faces in
# blocks of 4, 17-24 iterations against 22-29, the outside share within 0.003 (docs/performance.md).
REPROJECT_SETTLE = "share"


def masks_for(model: LoadedModel, masks: Tensor | Sequence[Tensor], n: int) -> list[Tensor]:
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


def align(model: LoadedModel, vectors: Tensor, masks: Tensor | Sequence[Tensor], *,
          max_shift: int | None = None) -> tuple[Tensor, list[tuple[int, int]]]:
    """``vectors`` (k, *state_shape) each shifted by whole cells onto its mask (one mask for all,
    or one per vector), so that most of its energy falls on the part where it sits on *this*
    image. ``max_shift`` defaults to the model's settings (0: no shift).

    Off by default because on the toy model it trades strength for locality: shifting the top
    "smile" direction by up to 4 px raised its locality on 20 unseen faces from 0.91 to 0.95
    (worst 0.66 to 0.85), but its mean effect at +4 fell (smile probe 0.49 against 0.63)
    and fewer faces stayed monotone across -8..8 (11 against 14).
    Returns the shifted vectors (each at its own norm) and the shifts (dy, dx)."""
    R = model.settings.max_shift if max_shift is None else int(max_shift)
    if R < 0:
        raise InputError("max_shift must be 0 or more")
    ms = masks_for(model, masks, len(vectors))
    out = [align_to_mask(v, model.family.state_mask(m).to(v.device), R) for v, m in zip(vectors, ms)]
    return torch.stack([v for v, _ in out]), [s for _, s in out]


def register(model: LoadedModel, vectors: Tensor, sources: Sequence[reg.PartPrint | None],
             targets: Tensor | Sequence[Tensor], *, image: Tensor | None = None,
             max_shift: int | None = None) -> tuple[Tensor, list[tuple[float, float]], list[tuple[float, float]]]:
    """``vectors`` (k, *state_shape) each carried from its source part onto its target mask (one
    for all, or one per vector): first the whole-pixel shift, within ``max_shift`` (default: the
    settings' registration range), that lays its source mask over the target mask; then, when the
    source carries its profiles and the target ``image`` (clean) is given, a sub-pixel offset per
    axis and a scale on the axes the settings' ``register_scale`` names, fitted from the part's
    profiles (:mod:`locobank.loco.register`). A None source is left where it is. Offsets are
    measured on the image grid and applied on the state's grid.

    A direction acts on the part where it was found, at that part's size. On the toy model the
    top "smile" direction (found on a wide, smiling mouth), registered with the toy model's
    horizontal scale, stayed monotone across -8..8 on 17 of 20 unseen faces against 13
    unregistered (16 with scales on both axes).
    Returns the vectors (each at its own norm), the shifts (dy, dx) and the scales (sy, sx)."""
    R = model.settings.register_range_for(model.resolution) if max_shift is None else int(max_shift)
    if R < 0:
        raise InputError("the registration range must be 0 or more")
    sources = list(sources)
    if len(sources) != len(vectors):
        raise InputError(f"give one source part (or None) per direction: {len(sources)} for {len(vectors)}")
    ms = masks_for(model, targets, len(vectors))
    shape = (model.resolution, model.resolution)
    img = None if image is None else as_batch(model, image, "image")[0]
    k = model.family.state_shape[-1] / model.resolution  # state cells per image pixel
    out, shifts, scales = [], [], []
    for i, (v, s, m) in enumerate(zip(vectors, sources, ms)):
        if s is None:
            out.append(v), shifts.append((0.0, 0.0)), scales.append((1.0, 1.0))
            continue
        sm = check_mask(s.mask, shape, name=f"source mask {i + 1}")
        dy, dx = register_shift(sm, m, R)
        if img is not None and s.cols is not None and s.rows is not None:
            (oy, ky), (ox, kx) = reg.fit(reg.PartPrint(sm, s.cols, s.rows), m, img, (dy, dx), model.resolution / 16,
                                         model.settings.register_scale)
        else:
            (oy, ky), (ox, kx) = (float(dy), 1.0), (float(dx), 1.0)
        cy, cx = reg.centre(sm)
        w = reg.warp(v, (cy * k, cx * k), (oy * k, ky), (ox * k, kx))
        n = w.norm()
        out.append(w * (v.norm() / n) if n > 0 else w)
        shifts.append((round(oy, 3), round(ox, 3)))
        scales.append((round(ky, 3), round(kx, 3)))
    return torch.stack(out), shifts, scales


class NullBases:
    """The null bases :func:`reproject` found on earlier images, by edit timestep: where the next
    image's starts (``apply --mask`` over many images). Convergence is judged as from random
    vectors; only the iterations change."""

    def __init__(self) -> None:
        self.by_time: dict[int, Tensor] = {}

    def start(self, t: int) -> Tensor | None:
        """The last null basis found at timestep ``t``, or None."""
        return self.by_time.get(int(t))

    def keep(self, t: int, basis: Tensor) -> None:
        self.by_time[int(t)] = basis.detach()


def reproject(model: LoadedModel, x_t: Tensor, t: float | int, mask: Tensor, vectors: Tensor, *,
              null_rank: int | None = None, seed: int = 0, tol: float = REPROJECT_TOL,
              memory: NullBases | None = None, settle: str | None = None) -> Tensor:
    """``vectors`` (k, *state_shape) projected off the top-``null_rank`` null basis of *this*
    image's predictor Jacobian outside ``mask``: a direction found on another image, made local
    on this one.

    The basis is iterated until what the projection is for has settled (``watch`` in
    :func:`block_subspace_svd`), not until the whole basis does: with ``settle="share"`` (the
    default, :data:`REPROJECT_SETTLE`) each projected vector's share of change outside ``mask``
    moves by less than ``tol`` over a block's worth of iterations; with ``"projection"`` the
    projections themselves, by less than ``tol`` of their norm (cheaper for many vectors: the share
    costs one ``J v`` of them). With
    ``memory`` the basis starts from the one found on the image before (and is kept for the next).
    """
    tt = to_timestep(model, t)
    x = as_batch(model, x_t, "x_t", state=True)
    if x.shape[0] != 1:
        raise InputError("a target mask applies to one image at a time")
    null_rank = model.settings.null_rank if null_rank is None else int(null_rank)
    if null_rank < 1:
        return vectors
    m = check_mask(mask, (model.resolution, model.resolution)).to(model.device)
    outside = (~m)[None].expand(*model.family.image_shape)
    lin = linearize(model, tt, x[0])
    flat = vectors.to(model.device, torch.float32).reshape(vectors.shape[0], -1)
    start = memory.start(tt) if memory is not None else None
    (null_res,) = block_subspace_svd(lin, [outside], [null_rank], seed=seed, tol=tol, watch=[flat], start=[start],
                                     settle=REPROJECT_SETTLE if settle is None else settle)
    if memory is not None:
        memory.keep(tt, null_res.Vh)
    if null_res.projected is not None:  # each vector where its own share settled: the same alone or with others
        return project_out(null_res.projected.to(flat.dtype), None).reshape(vectors.shape)
    return project_out(flat, null_res.Vh).reshape(vectors.shape)


def relocalize(model: LoadedModel, x_t: Tensor, t: float | int, masks: Tensor | Sequence[Tensor], vectors: Tensor, *,
               null_rank: int | None = None, max_shift: int | None = None, seed: int = 0,
               union: Tensor | None = None, sources: Sequence[reg.PartPrint | None] | None = None,
               image: Tensor | None = None,
               memory: NullBases | None = None, tol: float = REPROJECT_TOL,
               settle: str | None = None) -> tuple[Tensor, list[tuple[float, float]], list[tuple[float, float]]]:
    """A transferred edit made local on *this* image: ``vectors`` each registered from its source
    part onto its mask (:func:`register`, for those with a source in ``sources``; ``image`` is
    this image, clean, for the profile fit), shifted further onto the mask where ``max_shift``
    allows (:func:`align`), then projected off the null basis of this image's Jacobian at ``x_t``
    outside the union of the masks (or outside ``union``; :func:`reproject`).

    Returns the vectors, their total shifts (dy, dx) and their scales (sy, sx)."""
    ms = masks_for(model, masks, len(vectors))
    shifts, scales = [(0.0, 0.0)] * len(vectors), [(1.0, 1.0)] * len(vectors)
    if sources is not None:
        vectors, shifts, scales = register(model, vectors, sources, ms, image=image)
    aligned, more = align(model, vectors, ms, max_shift=max_shift)
    shifts = [(a + c, b + d) for (a, b), (c, d) in zip(shifts, more)]
    outside_of = torch.stack(ms).any(0) if union is None else union
    return (reproject(model, x_t, t, outside_of, aligned, null_rank=null_rank, seed=seed, memory=memory, tol=tol,
                      settle=settle),
            shifts, scales)
