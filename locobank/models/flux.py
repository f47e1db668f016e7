"""FLUX.1 (``FluxPipeline``): a transformer on 2x2 patches of VAE latents packed into tokens,
under CLIP's pooled embedding and T5's sequence; the guidance is an embedding the transformer
takes (FLUX.1-dev, ``guidance_embeds``) or none (schnell). One pass per step, no negative prompt.
The state stays on the (C, h, w) latent grid; packing into tokens happens inside the net, so
directions and masks sit on the latent grid. See :mod:`locobank.models.flow`."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from .family import Condition
from .flow import FlowFamily, Velocity

FLUX_DEV_GUIDANCE = 3.5  # FluxPipeline's default guidance_scale (FLUX.1-dev)
MAX_T5_TOKENS = 512  # FluxPipeline's longest max_sequence_length


def pack(x: Tensor) -> Tensor:
    """(B, C, h, w) latents to (B, h/2 * w/2, 4C) tokens, as FluxPipeline packs them."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: Tensor, h: int, w: int) -> Tensor:
    """The inverse of :func:`pack`."""
    b, _, d = tokens.shape
    return tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Each token's (0, row, column) position for the rotary embedding, on the token grid."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FluxFamily(FlowFamily):
    """The model-family adapter of a FLUX.1 pipeline (dev or schnell)."""

    name = "flux"
    pipeline = "FluxPipeline"

    @property
    def embeds_guidance(self) -> bool:
        """Whether the transformer takes the guidance as an embedding (FLUX.1-dev)."""
        return bool(self.parts.pipe.transformer.config.guidance_embeds)

    def default_guidance(self) -> float:
        return FLUX_DEV_GUIDANCE if self.embeds_guidance else 0.0

    def prompts(self, cond: Condition) -> tuple[Tensor, ...]:
        """``(T5 embeds, CLIP pooled, text ids)`` as the pipeline encodes them."""
        if cond.negative_prompt:
            raise InputError("FLUX.1 takes no negative prompt: its guidance is an embedding, not a second pass")
        pipe, dev = self.parts.pipe, self.parts.text_device
        length = min(MAX_T5_TOKENS, int(pipe.tokenizer_2.model_max_length))

        def make() -> tuple:
            return pipe.encode_prompt(cond.prompt, None, device=dev, max_sequence_length=length)

        return self.embedded((cond.prompt, ""), make)

    def velocity(self, cond: Condition) -> Velocity:
        """The transformer's velocity at ``s`` (the pipeline passes timestep ``1000 s / 1000``),
        with the guidance embedded for FLUX.1-dev."""
        text, pooled, text_ids = self.prompts(cond)
        net, dtype, (_, h, w) = self.parts.pipe.transformer, self.dtype, self.state_shape
        ids = image_ids(h, w, self.device, dtype)
        n = int(self.parts.pipe.scheduler.config.num_train_timesteps)
        g = torch.full([1], cond.guidance, device=self.device, dtype=torch.float32) if self.embeds_guidance else None

        def vel(x: Tensor, s: Tensor) -> Tensor:
            b = x.shape[0]
            out = net(hidden_states=pack(x).to(dtype), timestep=(s * n).to(dtype) / n,
                      guidance=None if g is None else g.expand(b), pooled_projections=pooled.expand(b, -1),
                      encoder_hidden_states=text.expand(b, -1, -1), txt_ids=text_ids, img_ids=ids,
                      return_dict=False)[0]
            return unpack(out, h, w).to(x.dtype)

        return vel
