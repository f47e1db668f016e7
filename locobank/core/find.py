"""Finding directions: unsupervised LOCO on one state at the edit time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import InputError
from ..images import check_mask
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
    """
    tt = to_timestep(model, t)
    x = as_batch(model, x_te, "x_te", state=True)
    if x.shape[0] != 1:
        raise InputError("find_directions takes one state at a time")
    x = x[0]
    null_rank = model.settings.null_rank if null_rank is None else int(null_rank)
    if rank < 1:
        raise InputError("rank must be at least 1")
    if null_rank < 0:
        raise InputError("null_rank must be 0 or more")
    image_shape = model.family.image_shape
    m = check_mask(mask, tuple(image_shape[-2:]), need_outside=null_rank > 0).to(model.device)
    inside = m[None].expand(*image_shape)
    outside = ~inside
    begun = time.perf_counter()
    lin = Linearization(model.family.predictor(tt), x, chunk=chunk)
    start = start or Start()
    if constrained and null_rank > 0:
        (null_res,) = block_subspace_svd(lin, [outside], [null_rank], iters=iters, tol=null_tol, seed=seed + 1,
                                         start=[start.null])
        (edit_res,) = block_subspace_svd(lin, [inside], [rank], iters=iters, tol=tol, seed=seed,
                                         constraints=[null_res.Vh], start=[start.edit])
    else:
        edit_res, null_res = block_subspace_svd(lin, [inside, outside], [rank, null_rank], iters=iters,
                                                tol=[tol, max(tol, null_tol)], seed=seed,
                                                start=[start.edit, start.null])
    V = edit_res.Vh
    if null_res is not None:
        V = project_out(V, null_res.Vh)
    vectors = V.reshape(rank, *x.shape)
    JV = lin.jvp(vectors)
    energy = JV.flatten(1).pow(2).sum(1).clamp_min(1e-30)
    outside_share = (JV * outside).flatten(1).pow(2).sum(1) / energy
    diag = _diagnostics(edit_res, null_res, lin, outside_share, time.perf_counter() - begun)
    diag.update(mask_area=int(m.sum()), rank=rank, null_rank=null_rank, warm=list(start.columns),
                basis="constrained" if constrained and null_rank > 0 else "projected")
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
    }
