"""Pure tensor math for LOCO Edit: PMP, Jacobian SVD, null-space projection, DDIM. No I/O."""

from .ddim import invert, sample, timesteps_to
from .denoiser import Denoiser
from .jacobian import Linearization, block_subspace_svd, jacobian_svd, max_principal_angle, project_out

__all__ = ["Denoiser", "Linearization", "block_subspace_svd", "invert", "jacobian_svd", "max_principal_angle",
           "project_out", "sample", "timesteps_to"]
