"""Reaching the edit time and coming back: images to states (DDIM inversion or forward noise)
and states to images (DDIM sampling), through the model's family."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import InputError
from ..loco import ddim
from ..models import LoadedModel
from ..settings import DEFAULT_STEPS
from .time import to_timestep


def as_batch(model: LoadedModel, x: Tensor, what: str = "image", *, state: bool = False) -> Tensor:
    """``x`` as a (B, C, H, W) float batch of images (or of states, with ``state``), checked
    against the model's shapes."""
    x = torch.as_tensor(x)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise InputError(f"{what} must be C x H x W or B x C x H x W, got shape {tuple(x.shape)}")
    c, h, w = model.family.state_shape if state else model.family.image_shape
    if x.shape[1] != c:
        raise InputError(f"{what} has {x.shape[1]} channels but the model takes {c}")
    if x.shape[-2] != h or x.shape[-1] != w:
        raise InputError(f"{what} is {x.shape[-1]}x{x.shape[-2]} but the model takes {w}x{h}; resize it first")
    return x.to(device=model.device, dtype=torch.float32)


def invert(model: LoadedModel, images: Tensor, t_edit: float | int, steps: int = DEFAULT_STEPS,
           progress=None) -> Tensor:
    """Deterministic DDIM inversion of images in [-1, 1] to states at the edit time."""
    t = to_timestep(model, t_edit)
    z0 = model.family.encode(as_batch(model, images))
    return ddim.invert(model.denoiser, z0, t, steps, progress=progress)


def invert_on(model: LoadedModel, images: Tensor, grid: list[int], *, progress=None) -> Tensor:
    """DDIM inversion of images on an explicit increasing timestep ``grid`` (to its last time)."""
    z0 = model.family.encode(as_batch(model, images))
    return ddim.invert(model.denoiser, z0, grid[-1], grid=grid, progress=progress)


def noise_to(model: LoadedModel, images: Tensor, t_edit: float | int, seeds: Sequence[int]) -> Tensor:
    """Images noised to the edit time, ``sqrt(abar) z + sqrt(1 - abar) eps``, one seed per image.

    Unlike a DDIM-inverted state this is a typical state of the forward process, like a state
    on a sampling trajectory; each image's noise depends only on its own seed."""
    t = to_timestep(model, t_edit)
    z = model.family.encode(as_batch(model, images))
    if len(seeds) != z.shape[0]:
        raise InputError(f"noise_to needs one seed per image: {z.shape[0]} images, {len(seeds)} seeds")
    eps = torch.stack([torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    a = model.denoiser.abar(t).item()
    return a ** 0.5 * z + (1 - a) ** 0.5 * eps.to(device=z.device, dtype=z.dtype)


def sample(model: LoadedModel, x_t: Tensor, t_edit: float | int, steps: int = DEFAULT_STEPS, *,
           eta_tail: float = 0.0, seed: int = 0, progress=None) -> Tensor:
    """DDIM from states at the edit time back to images; ``eta_tail`` > 0 adds seeded noise below 0.2T."""
    t = to_timestep(model, t_edit)
    g = torch.Generator().manual_seed(int(seed))
    z = ddim.sample(model.denoiser, as_batch(model, x_t, "x_t", state=True), t, steps, eta_tail=eta_tail,
                    generator=g, progress=progress)
    return model.family.decode(z)


def generate(model: LoadedModel, noise: Tensor, steps: int = DEFAULT_STEPS) -> Tensor:
    """Images sampled from pure noise at T (for pixel models the predicted clean state is clipped,
    as their samplers do)."""
    T = model.denoiser.num_timesteps - 1
    z = ddim.sample(model.denoiser, as_batch(model, noise, "noise", state=True), T, steps,
                    clip_x0=model.family.clip_sample)
    return model.family.decode(z)


def generate_to(model: LoadedModel, noise: Tensor, t_edit: float | int, steps: int = DEFAULT_STEPS) -> Tensor:
    """States at the edit time on the DDIM sampling trajectory from pure noise at T (a generated
    image's state, as T-LOCO edits it): the same grid as :func:`generate`, stopped at ``t_edit``."""
    t = to_timestep(model, t_edit)
    T = model.denoiser.num_timesteps - 1
    grid = [g for g in sorted(set(ddim.timesteps_to(T, steps)) | {t}) if g > t]
    return ddim.sample(model.denoiser, as_batch(model, noise, "noise", state=True), T, grid=grid, t_stop=t,
                       clip_x0=model.family.clip_sample)


def noise_for(model: LoadedModel, seeds: Sequence[int]) -> Tensor:
    """Seeded pure noise, one state per seed (the same on every device)."""
    return torch.stack([torch.randn(model.family.state_shape, generator=torch.Generator().manual_seed(int(s)))
                        for s in seeds]).to(model.device)
