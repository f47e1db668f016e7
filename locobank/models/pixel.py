"""Pixel-space unconditional models (diffusers ``UNet2DModel``), by Hub id or local folder, in
either layout diffusers writes: a pipeline folder (``model_index.json`` + ``unet/`` +
``scheduler/``) or a UNet folder with its ``scheduler_config.json`` beside it."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..loco.denoiser import Denoiser
from ..settings import ModelSettings
from .base import LoadedModel, config_hash, fingerprint, identity
from .family import PixelFamily


def _load_parts(source: str, revision: str | None):
    from diffusers import DDIMScheduler, UNet2DModel

    errors = []
    for sub in ("unet", None):
        try:
            unet = UNet2DModel.from_pretrained(source, subfolder=sub, revision=revision)
            break
        except Exception as e:  # diffusers raises several types for "not here"
            errors.append(e)
    else:
        raise ModelLoadError(f"could not load a UNet2DModel from {source!r}: {errors[-1]}") from errors[-1]
    sched = None
    for sub in ("scheduler", None):
        try:
            sched = DDIMScheduler.from_pretrained(source, subfolder=sub, revision=revision)
            break
        except Exception as e:
            errors.append(e)
    if sched is None:
        raise ModelLoadError(f"found a UNet in {source!r} but no scheduler config: {errors[-1]}") from errors[-1]
    return unet, sched


def load_pixel(where: str, *, local: Path | None, device: torch.device, dtype: torch.dtype,
               revision: str | None) -> LoadedModel:
    """Load a pixel-space unconditional model from ``where`` (a folder or Hub id)."""
    unet, sched = _load_parts(where, revision)
    if getattr(unet.config, "in_channels", 3) != getattr(unet.config, "out_channels", 3):
        raise ModelLoadError("only pixel models whose input and output channels match are supported")
    model_id, rev = identity(where, local, revision)
    unet = unet.to(device=device).eval().requires_grad_(False)
    if dtype != torch.float32:
        unet = unet.to(dtype=dtype)
    pred = sched.config.get("prediction_type", "epsilon")
    if pred not in ("epsilon", "v_prediction", "sample"):
        raise ModelLoadError(f"unsupported prediction_type {pred!r}")

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x.to(dtype), t).sample.to(x.dtype)

    den = Denoiser(net=net, alphas_cumprod=sched.alphas_cumprod.to(torch.float64), prediction_type=pred)
    res = unet.config.sample_size
    res = int(res[0] if isinstance(res, (list, tuple)) else res)
    channels = int(unet.config.in_channels)
    cfg_hash = config_hash({"unet": dict(unet.config), "scheduler": dict(sched.config)})
    return LoadedModel(unet=unet, scheduler=sched, denoiser=den, model_id=model_id, revision=rev,
                       fingerprint=fingerprint(model_id, rev, cfg_hash), resolution=res, channels=channels,
                       device=device, dtype=dtype, family=PixelFamily(den, channels, res),
                       settings=ModelSettings.load(local), source=str(local.resolve()) if local else where)
