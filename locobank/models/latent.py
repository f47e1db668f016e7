"""Latent text-to-image models (the Stable Diffusion 1.x / 2.x family): ``AutoencoderKL``,
``UNet2DConditionModel``, a CLIP text encoder and tokenizer, the scheduler swapped to DDIM.

The state is the VAE latent ``z``; the posterior-mean predictor is decoded to pixels,
``x0_hat(z_t) = vae.decode(z0_hat / scaling_factor)``, with the classifier-free-guided noise
``eps_u + w (eps_c - eps_u)`` computed inside it (T-LOCO). A prompt, a negative prompt and the
guidance are bound with :meth:`LatentFamily.condition`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError, ModelLoadError
from ..loco.denoiser import Denoiser
from ..settings import ModelSettings
from .base import LoadedModel, config_hash, fingerprint, identity
from .family import Condition

log = logging.getLogger(__name__)

SUPPORTED = ("StableDiffusionPipeline",)


class LatentFamily:
    """The model-family adapter of a latent text-to-image model (see :mod:`locobank.models.family`)."""

    name = "latent"
    clip_sample = False  # latents are not bounded to [-1, 1]

    def __init__(self, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, alphas_cumprod: Tensor,
                 prediction_type: str, device: torch.device, dtype: torch.dtype, condition: Condition | None = None):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.alphas_cumprod, self.prediction_type = alphas_cumprod, prediction_type
        self.device, self.dtype = device, dtype
        self.scaling = float(vae.config.scaling_factor)
        c = int(unet.config.in_channels)
        h = _size(unet.config.sample_size)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.state_shape = (c, h, h)
        self.image_shape = (int(vae.config.out_channels), h * factor, h * factor)
        self.cond = condition or Condition()
        self.denoiser = Denoiser(net=self._guided(self.cond), alphas_cumprod=alphas_cumprod,
                                 prediction_type=prediction_type)

    def condition(self, prompt: str = "", negative_prompt: str = "", guidance: float | None = None) -> "LatentFamily":
        """The same model with another prompt, negative prompt and guidance bound."""
        g = self.cond.guidance if guidance is None else float(guidance)
        return LatentFamily(self.unet, self.vae, self.text_encoder, self.tokenizer, self.alphas_cumprod,
                            self.prediction_type, self.device, self.dtype, Condition(prompt, negative_prompt, g))

    def embed(self, prompt: str) -> Tensor:
        """The text encoder's hidden states for ``prompt``, padded as the pipelines pad them; a
        prompt longer than the tokenizer takes is truncated, and the log says so."""
        tok = self.tokenizer
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        if len(tok(prompt).input_ids) > tok.model_max_length:
            log.warning("prompt %r is longer than the tokenizer's %d tokens; truncated", prompt, tok.model_max_length)
        with torch.no_grad():
            return self.text_encoder(ids.to(self.device))[0].to(self.dtype)

    def _guided(self, cond: Condition) -> Callable[[Tensor, Tensor], Tensor]:
        """``net(z, t)``: the classifier-free-guided noise prediction under ``cond``."""
        pos = self.embed(cond.prompt)
        neg = self.embed(cond.negative_prompt)
        w = cond.guidance
        unet, dtype = self.unet, self.dtype

        def net(z: Tensor, t: Tensor) -> Tensor:
            b = z.shape[0]
            if w == 1.0:
                return unet(z.to(dtype), t, encoder_hidden_states=pos.expand(b, -1, -1)).sample.to(z.dtype)
            both = unet(torch.cat([z, z]).to(dtype), torch.cat([t, t]),
                        encoder_hidden_states=torch.cat([neg.expand(b, -1, -1), pos.expand(b, -1, -1)])).sample
            u, c = both.to(z.dtype).chunk(2)
            return u + w * (c - u)

        return net

    def encode(self, images: Tensor) -> Tensor:
        """Clean images to clean latents: the VAE posterior's mean, scaled."""
        return self.vae.encode(images.to(self.dtype)).latent_dist.mean.to(images.dtype) * self.scaling

    def decode(self, states: Tensor) -> Tensor:
        return self.vae.decode((states / self.scaling).to(self.dtype)).sample.to(states.dtype)

    def predictor(self, t: int) -> Callable[[Tensor], Tensor]:
        den = self.denoiser

        def fn(z: Tensor) -> Tensor:
            return self.decode(den.pmp(z[None], t))[0]

        return fn

    def state_change(self, image_change: Tensor, at: Tensor) -> Tensor:
        """A pixel change carried to the latent through the encoder, about the images ``at`` it
        was made to (the encoder is far from linear: about a grey image, its difference of a
        small change bears little relation to the latent change that makes it)."""
        with torch.no_grad():
            return self.encode((at + image_change).clamp(-1, 1)) - self.encode(at)

    def state_mask(self, mask: Tensor) -> Tensor:
        k = self.image_shape[-1] // self.state_shape[-1]
        return F.max_pool2d(mask.float()[None, None], k)[0, 0].bool()


def _size(s: Any) -> int:
    return int(s[0] if isinstance(s, (list, tuple)) else s)


def pipeline_class(where: str, local: Path | None, revision: str | None) -> str | None:
    """The ``_class_name`` of a pipeline folder's ``model_index.json`` (None: not a pipeline folder)."""
    import json

    path = local / "model_index.json" if local is not None else None
    if path is None:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(where, "model_index.json", revision=revision))
        except Exception:  # noqa: BLE001 - not on the Hub or offline: the pixel loader says why
            return None
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("_class_name")
    except (OSError, ValueError):
        return None


@contextmanager
def quiet_progress(quiet: bool) -> Iterator[None]:
    """diffusers' and transformers' loading bars off while a local folder loads (a Hub download keeps them)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    was = (dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    if quiet:
        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
    try:
        yield
    finally:
        for lib, on in zip((dlog, tlog), was):
            if on:
                lib.enable_progress_bar()


def load_latent(where: str, *, local: Path | None, device: torch.device, dtype: torch.dtype,
                revision: str | None, cls_name: str) -> LoadedModel:
    """Load a Stable-Diffusion-style pipeline folder or Hub id as a latent model."""
    if cls_name not in SUPPORTED:
        raise ModelLoadError(f"{where} is a {cls_name}; locobank supports pixel UNet2DModel pipelines and "
                             f"{', '.join(SUPPORTED)} (SD 1.x and 2.x). SDXL's second text encoder and added "
                             f"conditions would be a family of their own.")
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    try:
        with quiet_progress(local is not None):
            pipe = StableDiffusionPipeline.from_pretrained(where, revision=revision, safety_checker=None,
                                                           requires_safety_checker=False)
    except Exception as e:  # diffusers raises several types
        raise ModelLoadError(f"could not load a StableDiffusionPipeline from {where!r}: {e}") from e
    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    pred = sched.config.get("prediction_type", "epsilon")
    if pred not in ("epsilon", "v_prediction"):
        raise ModelLoadError(f"unsupported prediction_type {pred!r}")
    parts = {k: getattr(pipe, k) for k in ("unet", "vae", "text_encoder")}
    for m in parts.values():
        m.to(device=device).eval().requires_grad_(False)
        if dtype != torch.float32:
            m.to(dtype=dtype)
    model_id, rev = identity(where, local, revision)
    configs = {"unet": dict(pipe.unet.config), "vae": dict(pipe.vae.config),
               "text_encoder": pipe.text_encoder.config.to_dict(), "scheduler": dict(sched.config),
               "tokenizer": {"model_max_length": pipe.tokenizer.model_max_length,
                             "vocab_size": len(pipe.tokenizer)}}
    fam = LatentFamily(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                       sched.alphas_cumprod.to(torch.float64), pred, device, dtype)
    _, h, w = fam.image_shape
    return LoadedModel(unet=pipe.unet, scheduler=sched, denoiser=fam.denoiser, model_id=model_id, revision=rev,
                       fingerprint=fingerprint(model_id, rev, config_hash(configs)), resolution=h,
                       channels=fam.image_shape[0], device=device, dtype=dtype, family=fam,
                       settings=ModelSettings.load(local), source=str(local.resolve()) if local else where)


def under(model: LoadedModel, condition: dict | None, *, edit: bool = False) -> LoadedModel:
    """``model`` under a stored condition (a job's or a direction's: ``prompt``, ``negative_prompt``,
    ``guidance``; with ``edit``, its ``edit_prompt`` and ``edit_guidance``); itself for none."""
    if not condition:
        return model
    if edit:
        return conditioned(model, condition["edit_prompt"], condition.get("negative_prompt", ""),
                           condition.get("edit_guidance"))
    return conditioned(model, condition.get("prompt", ""), condition.get("negative_prompt", ""),
                       condition.get("guidance"))


def conditioned(model: LoadedModel, prompt: str = "", negative_prompt: str = "",
                guidance: float | None = None) -> LoadedModel:
    """``model`` with a prompt bound (latent models; guidance None: the model's settings); a pixel
    model refuses a prompt."""
    if not isinstance(model.family, LatentFamily):
        if prompt or negative_prompt:
            raise InputError(f"{model.model_id} is an unconditional {model.kind} model: it takes no prompt")
        return model
    from dataclasses import replace

    fam = model.family.condition(prompt, negative_prompt, model.settings.guidance if guidance is None else guidance)
    return replace(model, family=fam, denoiser=fam.denoiser)
