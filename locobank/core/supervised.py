"""Text-supervised directions (T-LOCO): the change an edit prompt asks for inside the mask, pulled
back to the state through the source prediction's Jacobian, then projected off the null space
outside the mask. The core stays family-agnostic: the two prompts come as the same model under
two conditions (:func:`locobank.models.conditioned`)."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..errors import InputError
from ..images import check_mask
from ..loco.jacobian import block_subspace_svd, project_out
from ..models import LoadedModel
from .find import Directions, linearize
from .states import as_batch
from .time import to_timestep

NO_CHANGE = 1e-4  # a change inside the mask below this share of the source prediction there is float noise


def _check_change(delta: Tensor, source_inside: Tensor) -> None:
    """Refuse an edit condition that changes nothing inside the mask: float noise (e.g. 3e-6 when
    the two prompts are equal) pulled back through J would give a random direction, not an edit."""
    change, scale = float(delta.norm()), float(source_inside.norm())
    if not change > NO_CHANGE * scale:
        raise InputError(
            f"the edit_prompt changes nothing inside the mask at this state: the change there is {change:.3g}, "
            f"{change / scale if scale else 0.0:.2g} of the source prediction (below {NO_CHANGE:g}); give an "
            f"edit_prompt (or edit_guidance) that differs from the prompt (and guidance)"
        )


def find_supervised(source: LoadedModel, edit: LoadedModel, x_te: Tensor, t: float | int, mask: Tensor, *,
                    null_rank: int | None = None, iters: int = 50, null_tol: float = 1e-2, chunk: int = 16,
                    seed: int = 0) -> Directions:
    """The direction ``v = J^T delta / |J^T delta|``, with ``delta = P_M (x0_hat_edit(z) -
    x0_hat_source(z))`` and ``J`` the source predictor's Jacobian at ``z = x_te``, projected off
    the top-``null_rank`` right singular vectors of ``J`` outside the mask (one VJP, then the null
    basis). ``source`` and ``edit`` are one model under the source and the edit condition."""
    if source.fingerprint != edit.fingerprint:
        raise InputError("the source and edit conditions must be of the same model")
    tt = to_timestep(source, t)
    z = as_batch(source, x_te, "x_te", state=True)
    if z.shape[0] != 1:
        raise InputError("find_supervised takes one state at a time")
    null_rank = source.settings.null_rank if null_rank is None else int(null_rank)
    shape = source.family.image_shape
    m = check_mask(mask, tuple(shape[-2:]), need_outside=null_rank > 0).to(source.device)
    inside = m[None].expand(*shape)
    start = time.perf_counter()
    lin = linearize(source, tt, z[0], chunk)
    with torch.no_grad():
        delta = (edit.family.predictor(tt)(z[0]) - lin.out) * inside
    _check_change(delta, lin.out * inside)
    v = lin.vjp(delta[None])[0].reshape(1, -1)
    pulled = float(v.norm())
    null_s = torch.zeros(0)
    if null_rank > 0:
        (null_res,) = block_subspace_svd(lin, [~inside], [null_rank], iters=iters, tol=null_tol, seed=seed + 1)
        v, null_s = project_out(v, null_res.Vh), null_res.S
    v = v / v.norm().clamp_min(1e-30)
    diag = {"seconds": time.perf_counter() - start, "delta_norm": float(delta.norm()), "pulled_norm": pulled,
            "null_rank": null_rank, "basis": "supervised", "jvps": lin.jvp_calls, "vjps": lin.vjp_calls,
            "mask_area": int(m.sum())}
    return Directions(vectors=v.reshape(1, *z.shape[1:]).detach(), singular_values=torch.tensor([pulled]),
                      null_singular_values=null_s.detach(), t_edit=tt, fingerprint=source.fingerprint, diagnostics=diag)
