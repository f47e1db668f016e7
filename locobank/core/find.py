"""Finding directions: unsupervised LOCO on one state at the edit time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ..errors import InputError
from ..images import check_mask
from ..loco import jacobian
from ..loco.jacobian import Linearization, block_subspace_svd, project_out
from ..models import LoadedModel
from .states import as_batch
from .time import to_timestep


@dataclass
class Start:
    """Where :func:`find_directions` starts its two subspace iterations: rows (any number) that
    should lie close to the edit basis and to the null basis, each (k, *state_shape) or (k, D);
    None starts that basis from random vectors. See :mod:`locobank.core.warm`."""

    edit: Tensor | None = None
    null: Tensor | None = None

    @property
    def columns(self) -> tuple[int, int]:
        """How many start rows each basis has."""
        return tuple(0 if v is None else int(v.shape[0]) for v in (self.edit, self.null))


@dataclass
class Directions:
    """What :func:`find_directions` returns: unit directions, singular values and diagnostics."""

    vectors: Tensor  # (r, *state_shape)
    singular_values: Tensor  # (r,)
    null_singular_values: Tensor  # (k,)
    t_edit: int
    fingerprint: str | None
    diagnostics: dict = field(default_factory=dict)
    basis: Start | None = None  # the converged edit basis (before projection) and null basis, flat rows

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __getitem__(self, i: int):
        from .compose import Direction

        return Direction(self.vectors[i], self.t_edit, self.fingerprint)


def linearize(model: LoadedModel, tt: int, x: Tensor, chunk: int = 16) -> Linearization:
    """The model's posterior-mean predictor at timestep ``tt``, linearised at the state ``x``; its
    fingerprint lets the ``J v`` mode be timed once per model (:data:`~locobank.loco.linearization.JVP_MODE`)."""
    return Linearization(model.family.predictor(tt), x, chunk=chunk, key=model.fingerprint)


def find_directions(model: LoadedModel, x_te: Tensor, t: float | int, mask: Tensor, rank: int = 5,
                    null_rank: int | None = None, *, iters: int = 50, tol: float = 1e-3, null_tol: float = 1e-2,
                    chunk: int = 16, seed: int = 0, constrained: bool = False,
                    start: Start | None = None) -> Directions:
    """Unsupervised LOCO directions for one state at the edit time.

    The top-``rank`` right singular vectors of the posterior-mean predictor's Jacobian (state to
    image) restricted to ``mask`` are projected off the top-``null_rank`` (default: the model's
    settings) right singular vectors of the Jacobian outside it. Both bases come from one shared
    linearisation and batched JVP/VJP calls. With ``constrained``, the edit basis is instead the
    top singular vectors of ``J_M (I - N^T N)``: the strongest in-mask directions among those
    already orthogonal to the null basis. The null basis only has to span the outside's dominant
    directions, so it stops at the looser ``null_tol``.

    ``start`` warm-starts either basis (:class:`Start`, e.g. from
    :func:`locobank.core.warm.start_from`): convergence is judged as from random vectors, so
    the answer is the same to the tolerance and only the number of iterations changes.
    """
    if not constrained:
        return find_many(model, x_te, t, [mask], rank, null_rank, iters=iters, tol=tol, null_tol=null_tol,
                         chunk=chunk, seed=seed, starts=[start])[0]
    tt, x, null_rank, (m,) = _checked(model, x_te, t, [mask], rank, null_rank)
    inside, outside = _sides(model, m)
    begun = time.perf_counter()
    lin = linearize(model, tt, x, chunk)
    start = start or Start()
    null_res = None
    if null_rank > 0:
        (null_res,) = block_subspace_svd(lin, [outside], [null_rank], iters=iters, tol=null_tol, seed=seed + 1,
                                         start=[start.null])
    (edit_res,) = block_subspace_svd(lin, [inside], [rank], iters=iters, tol=tol, seed=seed,
                                     constraints=[null_res.Vh] if null_res is not None else None, start=[start.edit])
    found = _assemble(model, lin, tt, x, m, edit_res, null_res, start, time.perf_counter() - begun)
    found.diagnostics["basis"] = "constrained" if null_rank > 0 else "projected"
    return found


def find_many(model: LoadedModel, x_te: Tensor, t: float | int, masks: Sequence[Tensor], rank: int = 5,
              null_rank: int | None = None, *, iters: int = 50, tol: float = 1e-3, null_tol: float = 1e-2,
              chunk: int = 16, seed: int = 0, starts: Sequence[Start | None] | None = None) -> list[Directions]:
    """:func:`find_directions` (projected basis) for several masks on one state: one
    linearisation, and every mask's edit and null blocks pushed through the model in the same
    batched JVP/VJP calls (``chunk`` vectors at a time), each block leaving the batch when it
    converges. Each result's ``seconds`` is its share of the whole (the total over the masks)."""
    tt, x, null_rank, ms = _checked(model, x_te, t, masks, rank, null_rank)
    starts = [s or Start() for s in (starts or [None] * len(ms))]
    if len(starts) != len(ms):
        raise InputError(f"give one start (or None) per mask: {len(starts)} for {len(ms)} masks")
    begun = time.perf_counter()
    lin = linearize(model, tt, x, chunk)
    sides = [_sides(model, m) for m in ms]
    res = block_subspace_svd(lin, [side for pair in sides for side in pair], [rank, null_rank] * len(ms), iters=iters,
                             tol=[tol, max(tol, null_tol)] * len(ms), seed=seed,
                             start=[b for s in starts for b in (s.edit, s.null)])
    share = (time.perf_counter() - begun) / len(ms)
    out = [_assemble(model, lin, tt, x, m, res[2 * i], res[2 * i + 1], s, share)
           for i, (m, s) in enumerate(zip(ms, starts))]
    for d in out:
        d.diagnostics.update(basis="projected", masks_together=len(ms))
    return out


def _checked(model: LoadedModel, x_te: Tensor, t, masks: Sequence[Tensor], rank: int, null_rank: int | None):
    """The timestep, the one state, the null rank and the masks on the model's device, checked."""
    tt = to_timestep(model, t)
    x = as_batch(model, x_te, "x_te", state=True)
    if x.shape[0] != 1:
        raise InputError("find_directions takes one state at a time")
    null_rank = model.settings.null_rank if null_rank is None else int(null_rank)
    if rank < 1:
        raise InputError("rank must be at least 1")
    if null_rank < 0:
        raise InputError("null_rank must be 0 or more")
    hw = tuple(model.family.image_shape[-2:])
    return tt, x[0], null_rank, [check_mask(m, hw, need_outside=null_rank > 0).to(model.device) for m in masks]


def _sides(model: LoadedModel, m: Tensor) -> tuple[Tensor, Tensor]:
    inside = m[None].expand(*model.family.image_shape)
    return inside, ~inside


def _assemble(model: LoadedModel, lin: Linearization, tt: int, x: Tensor, m: Tensor, edit_res, null_res,
              start: Start, seconds: float) -> Directions:
    """One mask's directions: its edit basis projected off its null basis, with its diagnostics."""
    rank = edit_res.Vh.shape[0]
    V = edit_res.Vh if null_res is None else project_out(edit_res.Vh, null_res.Vh)
    vectors = V.reshape(rank, *x.shape)
    JV = lin.jvp(vectors)
    energy = JV.flatten(1).pow(2).sum(1).clamp_min(1e-30)
    outside_share = (JV * _sides(model, m)[1]).flatten(1).pow(2).sum(1) / energy
    diag = _diagnostics(edit_res, null_res, lin, outside_share, seconds)
    null_rank = 0 if null_res is None else null_res.Vh.shape[0]
    diag.update(mask_area=int(m.sum()), rank=rank, null_rank=null_rank, warm=list(start.columns),
                krylov_widths=jacobian.basis_widths(rank, null_rank))
    null_s = null_res.S if null_res is not None else torch.zeros(0)
    found = Start(edit_res.Vh.detach(), null_res.Vh.detach() if null_res is not None else None)
    return Directions(vectors=vectors.detach(), singular_values=edit_res.S.detach(),
                      null_singular_values=null_s.detach(), t_edit=tt, fingerprint=model.fingerprint, diagnostics=diag,
                      basis=found)


def _diagnostics(edit_res, null_res, lin: Linearization, outside_share: Tensor, seconds: float) -> dict:
    """How the two subspace iterations went, and each direction's share of change outside the mask."""
    return {
        "seconds": seconds,
        "iterations": edit_res.iterations,
        "null_iterations": null_res.iterations if null_res is not None else 0,
        "converged": bool(edit_res.converged and (null_res is None or null_res.converged)),
        "angle": edit_res.angle,
        "null_angle": null_res.angle if null_res is not None else 0.0,
        "outside_residual": [float(v) for v in outside_share],
        "jvps": lin.jvp_calls,
        "vjps": lin.vjp_calls,
        "krylov_block": jacobian.KRYLOV_BLOCK,  # vectors per basis per iteration, at most (0: whole blocks)
    }
