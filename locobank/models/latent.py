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

class LatentFamily:
    """The model-family adapter of a latent text-to-image model (see :mod:`locobank.models.family`)."""

    name = "latent"
    clip_sample = False  # latents are not bounded to [-1, 1]
    bf16_previews = False  # decoded previews moved too much in bfloat16 (locobank.rank.preview)

    def __init__(self, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, alphas_cumprod: Tensor,
                 prediction_type: str, device: torch.device, dtype: torch.dtype, condition: Condition | None = None,
                 image_size: int | None = None):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.alphas_cumprod, self.prediction_type = alphas_cumprod, prediction_type
        self.device, self.dtype = device, dtype
        self.scaling = float(vae.config.scaling_factor)
        c = int(unet.config.in_channels)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        h = _size(unet.config.sample_size) if image_size is None else _latent_side(image_size, factor)
        self.state_shape = (c, h, h)
        self.image_shape = (int(vae.config.out_channels), h * factor, h * factor)
        self.cond = condition or Condition()
        self.denoiser = Denoiser(net=self.guided(self.cond), alphas_cumprod=alphas_cumprod,
                                 prediction_type=prediction_type)

    def condition(self, prompt: str = "", negative_prompt: str = "", guidance: float | None = None) -> "LatentFamily":
        """The same model with another prompt, negative prompt and guidance bound (the same class:
        the families built on this one inherit it)."""
        import copy

        g = self.cond.guidance if guidance is None else float(guidance)
        new = copy.copy(self)
        new.cond = Condition(prompt, negative_prompt, g)
        new.denoiser = Denoiser(net=new.guided(new.cond), alphas_cumprod=self.alphas_cumprod,
                                prediction_type=self.prediction_type)
        return new

    def embed(self, prompt: str) -> Tensor:
        """The text encoder's hidden states for ``prompt``, padded as the pipelines pad them; a
        prompt longer than the tokenizer takes is truncated, and the log says so."""
        tok = self.tokenizer
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        warn_if_truncated(tok, prompt, tok.model_max_length)
        with torch.no_grad():
            return self.text_encoder(ids.to(self.device))[0].to(self.dtype)

    def prompt_embeddings(self, prompt: str, negative: bool = False) -> tuple[Tensor, ...]:
        """What the network takes for one prompt (each tensor with batch 1); ``negative``: as the
        negative prompt of classifier-free guidance. Stable Diffusion: the text encoder's states."""
        return (self.embed(prompt),)

    def noise(self, z: Tensor, t: Tensor, embeddings: tuple[Tensor, ...]) -> Tensor:
        """One pass of the network on a batch under per-item ``embeddings``: its noise prediction."""
        return self.unet(z.to(self.dtype), t, encoder_hidden_states=embeddings[0]).sample.to(z.dtype)

    def guided(self, cond: Condition) -> Callable[[Tensor, Tensor], Tensor]:
        """``net(z, t)``: the classifier-free-guided noise prediction under ``cond``."""
        pos = self.prompt_embeddings(cond.prompt)
        neg = self.prompt_embeddings(cond.negative_prompt, negative=True)
        w = cond.guidance

        def net(z: Tensor, t: Tensor) -> Tensor:
            b = z.shape[0]
            if w == 1.0:
                return self.noise(z, t, tuple(p.expand(b, *p.shape[1:]) for p in pos))
            both = tuple(torch.cat([n.expand(b, *n.shape[1:]), p.expand(b, *p.shape[1:])]) for n, p in zip(neg, pos))
            u, c = self.noise(torch.cat([z, z]), torch.cat([t, t]), both).chunk(2)
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


def warn_if_truncated(tokenizer: Any, prompt: str, max_length: int) -> None:
    """Log that ``prompt`` is longer than the ``max_length`` tokens the family takes."""
    if len(tokenizer(prompt).input_ids) > max_length:
        log.warning("prompt %r is longer than the tokenizer's %d tokens; truncated", prompt, max_length)


def _size(s: Any) -> int:
    return int(s[0] if isinstance(s, (list, tuple)) else s)


def _latent_side(image_size: int, factor: int) -> int:
    if image_size % (factor * 8):
        raise ModelLoadError(f"resolution {image_size} must be a multiple of {factor * 8} for this model")
    return image_size // factor


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


def load_pipeline(pipeline_cls: Any, where: str, local: Path | None, revision: str | None, **kwargs: Any) -> Any:
    """A diffusers pipeline of class ``pipeline_cls`` from a folder or Hub id, as a typed error if not."""
    try:
        with quiet_progress(local is not None):
            return pipeline_cls.from_pretrained(where, revision=revision, **kwargs)
    except Exception as e:  # diffusers raises several types
        raise ModelLoadError(f"could not load a {pipeline_cls.__name__} from {where!r}: {e}") from e


def ddim_for(scheduler: Any, allowed: tuple[str, ...] = ("epsilon", "v_prediction")) -> tuple[Any, str]:
    """The DDIM scheduler on a pipeline scheduler's ``alphas_cumprod``, and its prediction type."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(scheduler.config)
    pred = sched.config.get("prediction_type", "epsilon")
    if pred not in allowed:
        raise ModelLoadError(f"unsupported prediction_type {pred!r}")
    return sched, pred


def ready(pipe: Any, names: tuple[str, ...], device: torch.device, dtype: torch.dtype) -> None:
    """The pipeline's networks ``names`` on ``device`` and in ``dtype``, frozen for inference."""
    for name in names:
        m = getattr(pipe, name)
        m.to(device=device).eval().requires_grad_(False)
        if dtype != torch.float32:
            m.to(dtype=dtype)


def component_configs(pipe: Any, names: tuple[str, ...], sched: Any, tokenizers: tuple[str, ...]) -> dict:
    """The configs that identify a pipeline: its networks', the scheduler's, and each tokenizer's
    length and vocabulary size."""
    out = {}
    for name in names:
        cfg = getattr(pipe, name).config
        out[name] = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    out["scheduler"] = dict(sched.config)
    for name in tokenizers:
        tok = getattr(pipe, name)
        out[name] = {"model_max_length": tok.model_max_length, "vocab_size": len(tok)}
    return out


def loaded(fam: Any, unet: Any, sched: Any, configs: dict, where: str, local: Path | None, revision: str | None,
           settings: ModelSettings) -> LoadedModel:
    """A text-to-image family wrapped as a :class:`LoadedModel`, its identity from ``configs`` (and
    the resolution, where the settings ask for one other than the model's own)."""
    model_id, rev = identity(where, local, revision)
    if settings.resolution is not None:
        configs = {**configs, "edit": {"resolution": settings.resolution}}
    return LoadedModel(unet=unet, scheduler=sched, denoiser=fam.denoiser, model_id=model_id, revision=rev,
                       fingerprint=fingerprint(model_id, rev, config_hash(configs)), resolution=fam.image_shape[1],
                       channels=fam.image_shape[0], device=fam.device, dtype=fam.dtype, family=fam,
                       settings=settings,
                       source=str(local.resolve()) if local else where)


def load_latent(where: str, *, local: Path | None, device: torch.device, dtype: torch.dtype,
                revision: str | None) -> LoadedModel:
    """Load a Stable Diffusion 1.x / 2.x pipeline folder or Hub id as a latent model."""
    from diffusers import StableDiffusionPipeline

    pipe = load_pipeline(StableDiffusionPipeline, where, local, revision, safety_checker=None,
                         requires_safety_checker=False)
    sched, pred = ddim_for(pipe.scheduler)
    nets = ("unet", "vae", "text_encoder")
    ready(pipe, nets, device, dtype)
    settings = ModelSettings.load(local)
    fam = LatentFamily(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, sched.alphas_cumprod.to(torch.float64),
                       pred, device, dtype, image_size=settings.resolution)
    configs = component_configs(pipe, nets, sched, ("tokenizer",))
    return loaded(fam, pipe.unet, sched, configs, where, local, revision, settings)


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
    """``model`` with a prompt bound (every family with a condition; guidance None: the model's
    settings); an unconditional model refuses a prompt."""
    if model.family.cond is None:
        if prompt or negative_prompt:
            raise InputError(f"{model.model_id} is an unconditional {model.kind} model: it takes no prompt")
        return model
    from dataclasses import replace

    fam = model.family.condition(prompt, negative_prompt, model.settings.guidance if guidance is None else guidance)
    return replace(model, family=fam, denoiser=fam.denoiser)
