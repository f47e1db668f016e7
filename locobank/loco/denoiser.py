"""The one view of a diffusion model that the math needs: a noise predictor and its schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass
class Denoiser:
    """A pixel- or latent-space model reduced to ``net(x, t)`` plus ``alphas_cumprod``.

    ``prediction_type`` follows diffusers: ``epsilon``, ``v_prediction`` or ``sample``.
    """

    net: Callable[[Tensor, Tensor], Tensor]
    alphas_cumprod: Tensor
    prediction_type: str = "epsilon"

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def abar(self, t: int | None) -> Tensor:
        """Cumulative alpha at integer timestep ``t``; ``None`` is the clean image (1)."""
        if t is None:
            return torch.ones((), dtype=torch.float64)
        return self.alphas_cumprod[int(t)].to(torch.float64)

    def _out(self, x: Tensor, t: int) -> Tensor:
        tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        return self.net(x, tt)

    def eps_and_x0(self, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Predicted noise and posterior mean of the clean image at timestep ``t``."""
        a = float(self.abar(t))
        sa, sb = a**0.5, (1.0 - a) ** 0.5
        out = self._out(x, t)
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (x - sb * eps) / sa
        elif self.prediction_type == "v_prediction":
            x0 = sa * x - sb * out
            eps = sb * x + sa * out
        elif self.prediction_type == "sample":
            x0 = out
            eps = (x - sa * x0) / sb
        else:  # pragma: no cover - guarded by the loader
            raise ValueError(f"unknown prediction_type {self.prediction_type!r}")
        return eps, x0

    def pmp(self, x: Tensor, t: int) -> Tensor:
        """Posterior-mean predictor f_t(x) = E[x_0 | x_t = x]."""
        return self.eps_and_x0(x, t)[1]
