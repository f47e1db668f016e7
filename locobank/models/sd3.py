"""Stable Diffusion 3 (``StableDiffusion3Pipeline``): an MMDiT on 2x2 patches of 16-channel VAE
latents, under two CLIP text encoders (their pooled embeddings) and an optional T5, with
classifier-free guidance in two passes. See :mod:`locobank.models.flow` for how the flow is seen
as a DDIM denoiser."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ModelLoadError
from .family import Condition
from .flow import FlowFamily, FlowParts, Velocity

SD3_GUIDANCE = 7.0  # StableDiffusion3Pipeline's default guidance_scale
T5_TOKENS = 256  # StableDiffusion3Pipeline's default max_sequence_length (zeros of this length without a T5)


class SD3Family(FlowFamily):
    """The model-family adapter of a Stable Diffusion 3 pipeline."""

    name = "sd3"
    pipeline = "StableDiffusion3Pipeline"

    def default_guidance(self) -> float:
        return SD3_GUIDANCE

    @classmethod
    def default_resolution(cls, pipe: Any) -> int:
        return int(pipe.transformer.config.sample_size) * 2 ** (len(pipe.vae.config.block_out_channels) - 1)

    @classmethod
    def check_resolution(cls, parts: FlowParts) -> None:
        super().check_resolution(parts)
        most = parts.pipe.transformer.config.pos_embed_max_size
        tokens = parts.state_shape[-1] // cls.patch
        if most is not None and tokens > most:
            raise ModelLoadError(f"resolution {parts.resolution} needs {tokens} tokens a side; this transformer's "
                                 f"position embedding covers {most}")

    def prompts(self, cond: Condition) -> tuple[Tensor, ...]:
        """``(embeds, negative embeds, pooled, negative pooled)`` as the pipeline encodes them."""
        pipe, dev = self.parts.pipe, self.parts.text_device

        t5 = pipe.tokenizer_3
        length = T5_TOKENS if t5 is None else min(T5_TOKENS, int(t5.model_max_length))

        def make() -> tuple:
            return pipe.encode_prompt(cond.prompt, None, None, device=dev, do_classifier_free_guidance=True,
                                      negative_prompt=cond.negative_prompt, max_sequence_length=length)

        return self.embedded((cond.prompt, cond.negative_prompt), make)

    def velocity(self, cond: Condition) -> Velocity:
        """The transformer's velocity at timestep ``1000 s``; with guidance above 1 (as the pipeline
        decides), ``v_u + w (v_c - v_u)`` from one batched pass over both prompts."""
        pos, neg, pooled, neg_pooled = self.prompts(cond)
        w, net, dtype = cond.guidance, self.parts.pipe.transformer, self.dtype
        n = int(self.parts.pipe.scheduler.config.num_train_timesteps)

        def run(x: Tensor, s: Tensor, text: Tensor, pool: Tensor) -> Tensor:
            return net(hidden_states=x.to(dtype), timestep=(s * n).to(dtype), encoder_hidden_states=text,
                       pooled_projections=pool, return_dict=False)[0].to(x.dtype)

        def vel(x: Tensor, s: Tensor) -> Tensor:
            b = x.shape[0]
            if w <= 1.0:
                return run(x, s, pos.expand(b, -1, -1), pooled.expand(b, -1))
            both = run(torch.cat([x, x]), torch.cat([s, s]), torch.cat([neg.expand(b, -1, -1), pos.expand(b, -1, -1)]),
                       torch.cat([neg_pooled.expand(b, -1), pooled.expand(b, -1)]))
            u, c = both.chunk(2)
            return u + w * (c - u)

        return vel
