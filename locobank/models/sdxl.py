"""Stable Diffusion XL (``StableDiffusionXLPipeline``): the latent family of SD 1.x / 2.x with two
text encoders, whose penultimate hidden states are concatenated, the second's pooled and projected
embedding, and the size and crop conditions (``add_time_ids``), all bound in the condition.

The state is the VAE latent (1024² images, 128² latents by default; ``resolution`` in
``locobank.json`` asks for another size); the posterior mean is decoded to pixels, with
classifier-free guidance computed inside it as the pipeline does. The size conditions are the
pipeline's defaults: original size = target size = the image size, crop at (0, 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..settings import ModelSettings
from .base import LoadedModel
from .family import Condition
from .latent import LatentFamily, component_configs, ddim_for, load_pipeline, loaded, ready, warn_if_truncated

NETS = ("unet", "vae", "text_encoder", "text_encoder_2")
DEFAULTS = {"guidance": 5.0}  # StableDiffusionXLPipeline's guidance_scale


class SDXLFamily(LatentFamily):
    """The model-family adapter of an SDXL pipeline (see :mod:`locobank.models.family`)."""

    name = "sdxl"

    def __init__(self, unet: Any, vae: Any, encoders: tuple[Any, Any], tokenizers: tuple[Any, Any],
                 alphas_cumprod: Tensor, prediction_type: str, device: torch.device, dtype: torch.dtype,
                 zero_negative: bool = True, condition: Condition | None = None, image_size: int | None = None):
        self.text_encoder_2, self.tokenizer_2 = encoders[1], tokenizers[1]
        self.zero_negative = zero_negative  # the pipeline's force_zeros_for_empty_prompt
        super().__init__(unet, vae, encoders[0], tokenizers[0], alphas_cumprod, prediction_type, device, dtype,
                         condition, image_size)

    def _states(self, encoder: Any, tokenizer: Any, prompt: str) -> tuple[Tensor, Tensor]:
        """(penultimate hidden states, first output) of one text encoder, as the SDXL pipeline takes them."""
        ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        warn_if_truncated(tokenizer, prompt, tokenizer.model_max_length)
        with torch.no_grad():
            out = encoder(ids.to(self.device), output_hidden_states=True)
        return out.hidden_states[-2], out[0]

    def prompt_embeddings(self, prompt: str, negative: bool = False) -> tuple[Tensor, ...]:
        """(both encoders' states, the pooled embedding, the size and crop ids) for one prompt; an
        empty negative prompt is zeros where the pipeline's ``force_zeros_for_empty_prompt`` says so."""
        h1, _ = self._states(self.text_encoder, self.tokenizer, prompt)
        h2, pooled = self._states(self.text_encoder_2, self.tokenizer_2, prompt)
        states = torch.cat([h1, h2], dim=-1)
        if negative and not prompt and self.zero_negative:
            states, pooled = torch.zeros_like(states), torch.zeros_like(pooled)
        _, h, w = self.image_shape
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=self.dtype, device=self.device)
        return states.to(self.dtype), pooled.to(self.dtype), time_ids

    def noise(self, z: Tensor, t: Tensor, embeddings: tuple[Tensor, ...]) -> Tensor:
        states, pooled, time_ids = embeddings
        out = self.unet(z.to(self.dtype), t, encoder_hidden_states=states,
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids})
        return out.sample.to(z.dtype)


def load_sdxl(where: str, *, local: Path | None, device: torch.device, dtype: torch.dtype,
              revision: str | None) -> LoadedModel:
    """Load an SDXL base pipeline folder or Hub id (e.g. stabilityai/stable-diffusion-xl-base-1.0)."""
    from diffusers import StableDiffusionXLPipeline

    pipe = load_pipeline(StableDiffusionXLPipeline, where, local, revision, add_watermarker=False)
    sched, pred = ddim_for(pipe.scheduler)
    ready(pipe, NETS, device, dtype)
    settings = ModelSettings.load(local, defaults=DEFAULTS)
    fam = SDXLFamily(pipe.unet, pipe.vae, (pipe.text_encoder, pipe.text_encoder_2), (pipe.tokenizer, pipe.tokenizer_2),
                     sched.alphas_cumprod.to(torch.float64), pred, device, dtype,
                     zero_negative=bool(pipe.config.get("force_zeros_for_empty_prompt", True)),
                     image_size=settings.resolution)
    configs = component_configs(pipe, NETS, sched, ("tokenizer", "tokenizer_2"))
    return loaded(fam, pipe.unet, sched, configs, where, local, revision, settings)
