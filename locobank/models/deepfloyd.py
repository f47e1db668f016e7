"""DeepFloyd IF stage I (``IFPipeline``, e.g. DeepFloyd/IF-I-XL-v1.0): a text-to-image model in pixel
space at 64², with a T5 text encoder and a UNet that predicts its noise and its variance.

The state is the 64² image itself; the posterior mean is the usual one from the noise half of the
UNet's output (the variance half only shapes the pipeline's stochastic sampler, which locobank does
not use), with classifier-free guidance as the pipeline computes it. The super-resolution stages
(II and III) are not edited: an edited 64² result is upscaled by running them on it, conditioned on
the same prompt (see docs/families.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..loco.denoiser import Denoiser
from ..settings import ModelSettings
from .base import LoadedModel
from .family import Condition
from .latent import LatentFamily, component_configs, ddim_for, load_pipeline, loaded, ready, warn_if_truncated

NETS = ("unet", "text_encoder")
MAX_TOKENS = 77  # IFPipeline.encode_prompt's max_length
DEFAULTS = {"guidance": 7.0}  # IFPipeline's guidance_scale


class IFFamily(LatentFamily):
    """The model-family adapter of DeepFloyd IF stage I: a conditioned pixel family."""

    name = "if"
    clip_sample = True  # pixels: clamp the predicted clean image when generating
    bf16_previews = False  # not measured (locobank.rank.preview)

    def __init__(self, unet: Any, text_encoder: Any, tokenizer: Any, alphas_cumprod: Tensor, prediction_type: str,
                 device: torch.device, dtype: torch.dtype, condition: Condition | None = None):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, None, text_encoder, tokenizer
        self.alphas_cumprod, self.prediction_type = alphas_cumprod, prediction_type
        self.device, self.dtype = device, dtype
        c, size = int(unet.config.in_channels), int(unet.config.sample_size)
        self.state_shape = self.image_shape = (c, size, size)
        self.cond = condition or Condition()
        self.denoiser = Denoiser(net=self.guided(self.cond), alphas_cumprod=alphas_cumprod,
                                 prediction_type=prediction_type)

    def embed(self, prompt: str) -> Tensor:
        """T5's last hidden states for the prompt as IFPipeline prepares it (lower case, 77 tokens,
        with the attention mask)."""
        text = prompt.lower().strip()
        toks = self.tokenizer(text, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                              add_special_tokens=True, return_tensors="pt")
        warn_if_truncated(self.tokenizer, text, MAX_TOKENS)
        with torch.no_grad():
            out = self.text_encoder(toks.input_ids.to(self.device), attention_mask=toks.attention_mask.to(self.device))
        return out[0].to(self.dtype)

    def noise(self, z: Tensor, t: Tensor, embeddings: tuple[Tensor, ...]) -> Tensor:
        """The noise half of the UNet's output (the other half is its variance)."""
        out = self.unet(z.to(self.dtype), t, encoder_hidden_states=embeddings[0]).sample
        return out[:, : z.shape[1]].to(z.dtype)

    def encode(self, images: Tensor) -> Tensor:
        return images

    def decode(self, states: Tensor) -> Tensor:
        return states

    def state_change(self, image_change: Tensor, at: Tensor) -> Tensor:
        return image_change

    def state_mask(self, mask: Tensor) -> Tensor:
        return mask


def load_if(where: str, *, local: Path | None, device: torch.device, dtype: torch.dtype,
            revision: str | None) -> LoadedModel:
    """Load a DeepFloyd IF stage-I pipeline folder or Hub id (stages II and III are separate pipelines)."""
    from diffusers import IFPipeline

    pipe = load_pipeline(IFPipeline, where, local, revision, safety_checker=None, feature_extractor=None,
                         watermarker=None, requires_safety_checker=False)
    sched, pred = ddim_for(pipe.scheduler)
    ready(pipe, NETS, device, dtype)
    settings = ModelSettings.load(local, defaults=DEFAULTS)
    fam = IFFamily(pipe.unet, pipe.text_encoder, pipe.tokenizer, sched.alphas_cumprod.to(torch.float64), pred,
                   device, dtype)
    configs = component_configs(pipe, NETS, sched, ("tokenizer",))
    return loaded(fam, pipe.unet, sched, configs, where, local, revision, settings)
