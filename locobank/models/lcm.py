"""Latent consistency models (``LatentConsistencyModelPipeline``, e.g. SimianLuo/LCM_Dreamshaper_v7):
an SD-shaped pipeline whose UNet was distilled to a consistency function, with the guidance as an
input embedding (``timestep_cond``) rather than two passes.

The posterior mean is the consistency function's output at the edit time, what ``LCMScheduler.step``
calls the denoised sample: ``c_skip(t) z_t + c_out(t) x0(z_t)``, with ``x0`` from the UNet's noise
prediction under the guidance embedding. It is a :class:`Denoiser` with ``prediction_type="sample"``,
so DDIM inversion and sampling run unchanged on the same ``alphas_cumprod``, by default in 4 steps
(the few-step schedule; ``steps`` in ``locobank.json`` or ``--steps`` take more). An LCM takes no
negative prompt: its pipeline has none.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ..errors import InputError
from ..settings import ModelSettings
from .base import LoadedModel
from .family import Condition
from .latent import LatentFamily, component_configs, ddim_for, load_pipeline, loaded, ready

NETS = ("unet", "vae", "text_encoder")
# The LCM pipeline's defaults: 4 steps, guidance 8.5 (its w embedding takes guidance - 1).
DEFAULTS = {"steps": 4, "render_steps": 4, "guidance": 8.5}
SIGMA_DATA = 0.5  # LCMScheduler's boundary-condition constant


def guidance_embedding(w: float, dim: int) -> Tensor:
    """The LCM pipeline's sinusoidal embedding of a guidance ``w`` (one row of ``dim``)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    arg = torch.tensor([w * 1000.0])[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


def boundary_scalings(t: Tensor, timestep_scaling: float) -> tuple[Tensor, Tensor]:
    """``(c_skip, c_out)`` at integer timesteps ``t``, as ``LCMScheduler`` computes them."""
    s = t.to(torch.float64) * timestep_scaling
    return SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2), s / (s**2 + SIGMA_DATA**2) ** 0.5


class LCMFamily(LatentFamily):
    """The model-family adapter of a latent consistency model (see :mod:`locobank.models.family`)."""

    name = "lcm"

    def __init__(self, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, alphas_cumprod: Tensor,
                 unet_prediction: str, device: torch.device, dtype: torch.dtype, timestep_scaling: float = 10.0,
                 condition: Condition | None = None, image_size: int | None = None):
        self.unet_prediction, self.timestep_scaling = unet_prediction, float(timestep_scaling)
        super().__init__(unet, vae, text_encoder, tokenizer, alphas_cumprod, "sample", device, dtype, condition,
                         image_size)

    def guided(self, cond: Condition) -> Callable[[Tensor, Tensor], Tensor]:
        """``net(z, t)``: the consistency function's output under the prompt and guidance embedding."""
        if cond.negative_prompt:
            raise InputError("a latent consistency model takes no negative prompt: its guidance is an input "
                             "embedding of one pass, with no unconditional pass to steer away from")
        emb = self.embed(cond.prompt)
        dim = self.unet.config.time_cond_proj_dim
        w_emb = None if dim is None else guidance_embedding(cond.guidance - 1.0, dim).to(self.device, self.dtype)
        acp = self.alphas_cumprod

        def net(z: Tensor, t: Tensor) -> Tensor:
            b = z.shape[0]
            out = self.unet(z.to(self.dtype), t, encoder_hidden_states=emb.expand(b, -1, -1),
                            timestep_cond=None if w_emb is None else w_emb.expand(b, -1)).sample.to(z.dtype)
            a = acp[t.cpu()].to(device=z.device, dtype=z.dtype).view(b, 1, 1, 1)
            if self.unet_prediction == "epsilon":
                x0 = (z - (1 - a).sqrt() * out) / a.sqrt()
            else:  # v_prediction
                x0 = a.sqrt() * z - (1 - a).sqrt() * out
            c_skip, c_out = (c.to(device=z.device, dtype=z.dtype).view(b, 1, 1, 1)
                             for c in boundary_scalings(t.cpu(), self.timestep_scaling))
            return c_skip * z + c_out * x0

        return net


def load_lcm(where: str, *, local: Path | None, device: torch.device, dtype: torch.dtype,
             revision: str | None) -> LoadedModel:
    """Load a latent consistency model pipeline folder or Hub id."""
    from diffusers import LatentConsistencyModelPipeline

    pipe = load_pipeline(LatentConsistencyModelPipeline, where, local, revision, safety_checker=None,
                         requires_safety_checker=False)
    sched, pred = ddim_for(pipe.scheduler)
    ready(pipe, NETS, device, dtype)
    settings = ModelSettings.load(local, defaults=DEFAULTS)
    fam = LCMFamily(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched.alphas_cumprod.to(torch.float64),
                    pred, device, dtype, timestep_scaling=pipe.scheduler.config.get("timestep_scaling", 10.0),
                    image_size=settings.resolution)
    configs = component_configs(pipe, NETS, sched, ("tokenizer",))
    return loaded(fam, pipe.unet, sched, configs, where, local, revision, settings)
