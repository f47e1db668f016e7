"""Flow-matching transformers (SD3, FLUX.1) behind the same DDIM seam as every other family.

A flow state ``x = (1 - s) x0 + s e`` at noise level ``s`` is a variance-preserving state
``z = x / r`` with ``r = sqrt((1 - s)^2 + s^2)`` and ``abar = (1 - s)^2 / r^2``: then
``z = sqrt(abar) x0 + sqrt(1 - abar) e``. The network predicts the velocity ``v = e - x0``, so
the posterior mean is ``x0_hat = x - s v``. A family here is a :class:`Denoiser` whose integer
timesteps ``t`` carry the flow's own shifted sigma schedule ``s(t)`` (diffusers'
``FlowMatchEulerDiscreteScheduler`` at ``sigma = (t + 1) / T``, shifted as the model's config
says) and whose net returns ``x0_hat`` (``prediction_type="sample"``). A deterministic DDIM step
on that view, from ``(x0_hat, e_hat)``, lands exactly on the flow's Euler step
``x' = x + (s' - s) v``; so inversion, sampling and the Jacobian work unchanged, on the flow's
schedule. States stay on the (C, h, w) latent grid (FLUX packs them into tokens inside its net),
so directions and masks sit on the latent grid of every other latent family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import ModelLoadError
from ..loco.denoiser import Denoiser
from ..settings import DEFAULT_GUIDANCE, ModelSettings
from .base import LoadedModel, config_hash, fingerprint, identity
from .family import Condition
from .latent import LatentFamily, quiet_progress

Velocity = Callable[[Tensor, Tensor], Tensor]  # v(x, s): flow states (B, C, h, w), sigmas (B,)
EMBEDDINGS_KEPT = 8  # prompts whose embeddings a loaded model keeps (SD3: 2 x 333 x 4096 floats each)
UNSUPPORTED_SCHEDULES = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas",
                         "stochastic_sampling")


def flow_sigmas(scheduler_config: dict, seq_len: int) -> Tensor:
    """The flow's noise level ``s(t)`` at every integer timestep ``t`` (increasing, float32, the
    last one 1): diffusers' scheduler at ``(t + 1) / T``, shifted by its ``shift`` or, with dynamic
    shifting, by the ``mu`` of ``seq_len`` image tokens, as the pipelines compute it."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    sched = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    cfg = sched.config
    odd = [k for k in UNSUPPORTED_SCHEDULES if cfg.get(k)]
    if odd:
        raise ModelLoadError(f"the flow scheduler sets {', '.join(odd)}; locobank takes only the plain shifted "
                             f"Euler schedule (its steps must be one fixed table of sigmas)")
    mu = None
    if cfg.use_dynamic_shifting:
        mu = calculate_shift(seq_len, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                             cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
    n = int(cfg.num_train_timesteps)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1.0 / n, n), mu=mu)
    return sched.sigmas[:-1].flip(0).to(torch.float32)


def vp_alphas(sigmas: Tensor) -> Tensor:
    """``abar = (1 - s)^2 / ((1 - s)^2 + s^2)``: the variance-preserving view of each noise level."""
    s = sigmas.to(torch.float64)
    return (1 - s) ** 2 / ((1 - s) ** 2 + s**2)


def flow_net(velocity: Velocity, sigmas: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """``net(z, t)``: the posterior mean ``x - s v(x, s)`` of VP states ``z`` at timesteps ``t``,
    with ``x = r z`` the flow state."""
    def net(z: Tensor, t: Tensor) -> Tensor:
        s = sigmas.to(z.device)[t.long()].to(z.dtype)
        s4 = s.view(-1, 1, 1, 1)
        x = z * ((1 - s4) ** 2 + s4**2).sqrt()
        return x - s4 * velocity(x, s)

    return net


@dataclass
class FlowParts:
    """What a flow family holds: the diffusers pipeline (its transformer, VAE, text encoders and
    tokenizers), where each part runs, the image side and the sigma table."""

    pipe: Any
    device: torch.device
    dtype: torch.dtype
    text_device: torch.device
    resolution: int
    sigmas: Tensor = field(default_factory=lambda: torch.zeros(0))
    embeddings: dict = field(default_factory=dict)  # prompt embeddings by (prompt, negative prompt), shared

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)

    @property
    def state_shape(self) -> tuple[int, int, int]:
        h = self.resolution // self.vae_factor
        return (int(self.pipe.vae.config.latent_channels), h, h)


class FlowFamily(LatentFamily):
    """A flow-matching transformer on VAE latents (the base of :class:`~locobank.models.sd3.SD3Family`
    and :class:`~locobank.models.flux.FluxFamily`). It is a latent family (the predictor is decoded
    to pixels; spill passes and masks go through the VAE as there); what differs is the network,
    the schedule and the VAE's shift. Subclasses say how the velocity is computed under a condition."""

    pipeline = ""  # the diffusers pipeline class it loads
    patch = 2  # latent pixels per token side

    def __init__(self, parts: FlowParts, condition: Condition | None = None):
        self.parts = parts
        self.vae, self.device, self.dtype = parts.pipe.vae, parts.device, parts.dtype
        self.unet, self.text_encoder, self.tokenizer = parts.pipe.transformer, parts.pipe.text_encoder, parts.pipe.tokenizer
        self.scaling = float(self.vae.config.scaling_factor)
        self.shift = float(self.vae.config.get("shift_factor") or 0.0)
        self.state_shape = parts.state_shape
        self.image_shape = (int(self.vae.config.out_channels), parts.resolution, parts.resolution)
        self.cond = condition or Condition(guidance=self.default_guidance())
        self.alphas_cumprod = vp_alphas(parts.sigmas)
        self.prediction_type = "sample"
        self.denoiser = Denoiser(net=flow_net(self.velocity(self.cond), parts.sigmas),
                                 alphas_cumprod=self.alphas_cumprod, prediction_type="sample")

    def condition(self, prompt: str = "", negative_prompt: str = "", guidance: float | None = None) -> "FlowFamily":
        """The same model with another prompt, negative prompt and guidance bound."""
        g = self.cond.guidance if guidance is None else float(guidance)
        return type(self)(self.parts, Condition(prompt, negative_prompt, g))

    def default_guidance(self) -> float:
        """The guidance the model's pipeline uses by default."""
        return DEFAULT_GUIDANCE

    @classmethod
    def default_resolution(cls, pipe: Any) -> int:
        """The image side the pipeline makes by default."""
        return 1024

    @classmethod
    def check_resolution(cls, parts: FlowParts) -> None:
        """Refuse an image side the transformer cannot take: it must cover whole tokens."""
        step = parts.vae_factor * cls.patch
        if parts.resolution % step:
            raise ModelLoadError(f"resolution {parts.resolution} is not a multiple of {step} (the VAE's factor "
                                 f"{parts.vae_factor} times the transformer's {cls.patch}x{cls.patch} patches)")

    def velocity(self, cond: Condition) -> Velocity:
        """``v(x, s)`` under ``cond`` (guidance applied as the model takes it)."""
        raise NotImplementedError

    def embedded(self, key: tuple, make: Callable[[], tuple]) -> tuple:
        """The prompt embeddings for ``key``, made once per loaded model (the text encoders run
        once per prompt, on ``text_device``) and moved to the model's device and dtype."""
        cache = self.parts.embeddings
        if key not in cache:
            with torch.no_grad():
                out = make()
            while len(cache) >= EMBEDDINGS_KEPT:  # a harvest walks many prompts: keep the latest few
                cache.pop(next(iter(cache)))
            cache[key] = tuple(None if e is None else e.to(self.device, self.dtype) for e in out)
        return cache[key]

    def encode(self, images: Tensor) -> Tensor:
        """Clean images to clean latents: the VAE posterior's mean, shifted and scaled."""
        mean = self.vae.encode(images.to(self.dtype)).latent_dist.mean.to(images.dtype)
        return (mean - self.shift) * self.scaling

    def decode(self, states: Tensor) -> Tensor:
        return self.vae.decode((states / self.scaling + self.shift).to(self.dtype)).sample.to(states.dtype)


def null_components(local: Path | None) -> dict[str, None]:
    """The components a local pipeline folder leaves out (``[null, null]`` in model_index.json,
    e.g. SD3 without its T5), to pass as None to ``from_pretrained``."""
    if local is None or not (local / "model_index.json").is_file():
        return {}
    index = json.loads((local / "model_index.json").read_text())
    return {k: None for k, v in index.items() if isinstance(v, list) and not any(v)}


def place(pipe: Any, device: torch.device, dtype: torch.dtype, text_device: torch.device) -> None:
    """Every network of ``pipe`` in eval mode without gradients, the text encoders on
    ``text_device`` (fp32 there when half precision is not for the CPU), the rest on ``device``."""
    for name, m in pipe.components.items():
        if not isinstance(m, torch.nn.Module):
            continue
        m.eval().requires_grad_(False)
        text = name.startswith("text_encoder")
        where = text_device if text else device
        dt = torch.float32 if (where.type == "cpu" and dtype == torch.float16) else dtype
        m.to(device=where)
        if dt != torch.float32:
            m.to(dtype=dt)


def component_configs(pipe: Any) -> dict[str, dict]:
    """Each component's config (tokenizers by length and vocabulary size), for the fingerprint."""
    out: dict[str, dict] = {}
    for name, m in pipe.components.items():
        if m is None:
            continue
        if hasattr(m, "model_max_length"):
            out[name] = {"model_max_length": m.model_max_length, "vocab_size": len(m)}
        elif hasattr(m.config, "to_dict"):
            out[name] = m.config.to_dict()
        else:
            out[name] = dict(m.config)
    return out


def load_flow(where: str, *, local: Path | None, device: torch.device, dtype: torch.dtype, revision: str | None,
              family: type[FlowFamily]) -> LoadedModel:
    """Load a flow-matching pipeline folder or Hub id as ``family``; ``locobank.json`` may set the
    resolution, the guidance and ``offload_text``."""
    import diffusers

    try:
        with quiet_progress(local is not None):
            pipe = getattr(diffusers, family.pipeline).from_pretrained(where, revision=revision,
                                                                       **null_components(local))
    except Exception as e:  # diffusers raises several types
        raise ModelLoadError(f"could not load a {family.pipeline} from {where!r}: {e}") from e
    settings = ModelSettings.load(local)
    text_device = torch.device("cpu") if settings.offload_text else device
    place(pipe, device, dtype, text_device)
    parts = FlowParts(pipe, device, dtype, text_device, settings.resolution or family.default_resolution(pipe))
    family.check_resolution(parts)
    h = parts.state_shape[-1] // family.patch
    parts.sigmas = flow_sigmas(dict(pipe.scheduler.config), h * h)
    fam = family(parts)
    if settings.guidance == DEFAULT_GUIDANCE:  # locobank.json does not set another: the pipeline's default
        settings = replace(settings, guidance=fam.cond.guidance)
    model_id, rev = identity(where, local, revision)
    configs = {**component_configs(pipe), "resolution": {"side": parts.resolution}}
    return LoadedModel(unet=pipe.transformer, scheduler=pipe.scheduler, denoiser=fam.denoiser, model_id=model_id,
                       revision=rev, fingerprint=fingerprint(model_id, rev, config_hash(configs)),
                       resolution=parts.resolution, channels=fam.image_shape[0], device=device, dtype=dtype,
                       family=fam, settings=settings, source=str(local.resolve()) if local else where)
