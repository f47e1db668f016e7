"""Deterministic DDIM inversion and sampling between the clean image and an edit time."""

from __future__ import annotations

import torch
from torch import Tensor

from .denoiser import Denoiser


def timesteps_to(t_end: int, steps: int) -> list[int]:
    """Increasing integer timesteps ending at ``t_end``, at most ``steps`` of them."""
    if t_end < 1:
        raise ValueError("t_end must be at least 1")
    steps = max(1, min(int(steps), int(t_end)))
    grid = torch.linspace(t_end / steps, t_end, steps).round().long().tolist()
    out: list[int] = []
    for t in grid:
        if not out or t > out[-1]:
            out.append(int(t))
    return out


@torch.no_grad()
def invert(den: Denoiser, x0: Tensor, t_end: int, steps: int = 50, progress=None, *,
           grid: list[int] | None = None, t_from: int | None = None) -> Tensor:
    """DDIM inversion (eta = 0) of clean images ``x0`` (B,C,H,W in [-1,1]) to timestep ``t_end``.

    ``grid`` (increasing, ending at ``t_end``) replaces the default timesteps; with ``t_from``
    the input is the state at that timestep rather than the clean image, so an inversion can
    be run in segments."""
    ts = list(grid) if grid is not None else timesteps_to(t_end, steps)
    x = x0
    prev = t_from
    for t in ts:
        eps, _ = den.eps_and_x0(x, t)
        a_prev, a = den.abar(prev), den.abar(t)
        x0_hat = (x - (1 - a_prev).sqrt().item() * eps) / a_prev.sqrt().item()
        x = a.sqrt().item() * x0_hat + (1 - a).sqrt().item() * eps
        prev = t
        if progress is not None:
            progress(1)
    return x


@torch.no_grad()
def sample(
    den: Denoiser,
    x_t: Tensor,
    t_start: int,
    steps: int = 50,
    *,
    eta_tail: float = 0.0,
    tail_below: float = 0.2,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
    progress=None,
    grid: list[int] | None = None,
    t_stop: int | None = None,
    x0_first: Tensor | None = None,
) -> Tensor:
    """DDIM sampling from ``x_t`` at ``t_start`` to the clean image (or to ``t_stop``).

    ``grid`` (increasing, ending at ``t_start``, all above ``t_stop``) replaces the default
    timesteps, so sampling can be run in segments that mirror a segmented inversion.

    Steps whose target time lies below ``tail_below * T`` use ``eta = eta_tail``; the LOCO
    reference uses eta = 1 there. Noise comes from ``generator`` so results are seeded.
    ``clip_x0`` clamps the predicted clean image to [-1, 1] (and re-derives the noise), as
    samplers do when generating from pure noise; edits leave it off so inversion stays exact.
    ``x0_first``: the posterior mean at ``x_t`` when it is known already; the first step uses it
    (and the noise it implies) instead of a network pass.
    """
    ts = list(grid) if grid is not None else timesteps_to(t_start, steps)
    tail_t = tail_below * den.num_timesteps
    x = x_t
    for i in range(len(ts) - 1, -1, -1):
        t = ts[i]
        prev = ts[i - 1] if i > 0 else t_stop
        a, a_prev = den.abar(t), den.abar(prev)
        if x0_first is not None and i == len(ts) - 1:
            x0_hat = x0_first.to(x.device, x.dtype)
            eps = (x - a.sqrt().item() * x0_hat) / (1 - a).sqrt().item()
        else:
            eps, x0_hat = den.eps_and_x0(x, t)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
            eps = (x - a.sqrt().item() * x0_hat) / (1 - a).sqrt().item()
        eta = eta_tail if (prev if prev is not None else 0) < tail_t else 0.0
        sigma = 0.0
        if eta > 0 and prev is not None:
            sigma = eta * float(((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).sqrt())
        direction = (float(1 - a_prev) - sigma**2) ** 0.5 * eps
        x = a_prev.sqrt().item() * x0_hat + direction
        if sigma > 0:
            noise = torch.randn(x.shape, generator=generator, device="cpu", dtype=torch.float32)
            x = x + sigma * noise.to(device=x.device, dtype=x.dtype)
        if progress is not None:
            progress(1)
    return x
