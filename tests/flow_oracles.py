"""Dense oracles shared by the flow families' tests: LOCO's directions against the dense SVD and
``J^T delta`` of a posterior-mean predictor written from the pipeline's own parts."""

from __future__ import annotations

import torch

from locobank import core
from locobank.loco import ddim
from locobank.loco.jacobian import max_principal_angle


def mask16() -> torch.Tensor:
    """A mouth-like box on the 16 x 16 image."""
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:10, 3:12] = True
    return m


def dense(fn, z: torch.Tensor) -> torch.Tensor:
    """The dense Jacobian of ``fn`` at ``z``, flattened, in float64."""
    J = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(z.shape)).reshape(-1), z.reshape(-1),
                                           vectorize=True)
    return J.double()


def state(model, seed: int = 0) -> torch.Tensor:
    """A seeded random state of the model's shape."""
    return torch.randn(model.family.state_shape, generator=torch.Generator().manual_seed(seed))


def assert_directions_match_dense_svd(model, oracle, t: int, rank: int = 3) -> None:
    """find_directions' top-``rank`` subspace within 1e-2 rad of the dense SVD's, and its
    singular values within 0.1 %."""
    z = state(model)
    inside = mask16()[None].expand(3, 16, 16).reshape(-1)
    _, S, Vh = torch.linalg.svd(dense(oracle, z)[inside])
    found = core.find_directions(model, z, t, mask16(), rank=rank, null_rank=0, iters=100, tol=1e-6)
    angle = max_principal_angle(found.vectors.reshape(rank, -1).double(), Vh[:rank])
    assert angle < 1e-2, angle
    torch.testing.assert_close(found.singular_values.double(), S[:rank], rtol=1e-3, atol=1e-6)


def assert_supervised_is_j_transpose_delta(src, edit, oracle_src, oracle_edit, t: int) -> None:
    """find_supervised (no null projection) equals the normalised dense ``J^T P_M delta``."""
    z = state(src, 2)
    inside = mask16()[None].expand(3, 16, 16)
    with torch.no_grad():
        delta = (oracle_edit(z) - oracle_src(z)) * inside
    want = dense(oracle_src, z).T @ delta.reshape(-1).double()
    want = want / want.norm()
    found = core.find_supervised(src, edit, z, t, mask16(), null_rank=0)
    assert torch.dot(found.vectors.reshape(-1).double(), want) > 1 - 1e-5


def round_trip_errors(model, t: int, steps=(20, 80)) -> list[float]:
    """Relative latent error of inversion to ``t`` then sampling back, at each step count."""
    z0 = model.family.encode(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    errs = []
    for n in steps:
        back = ddim.sample(model.denoiser, ddim.invert(model.denoiser, z0, t, n), t, n)
        errs.append(float((back - z0).norm() / z0.norm()))
    return errs
