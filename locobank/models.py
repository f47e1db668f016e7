"""Loading diffusers models. This is the only module that knows diffusers classes.

A model is loaded by Hub id (``google/ddpm-celebahq-256``) or local folder, in either
layout diffusers writes: a pipeline folder (``model_index.json`` + ``unet/`` +
``scheduler/``) or a UNet folder with its ``scheduler_config.json`` beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError
from .loco.denoiser import Denoiser

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
_VOLATILE_KEYS = ("_name_or_path", "_diffusers_version", "_class_name", "_use_default_values")


@dataclass
class LoadedModel:
    """A pixel-space diffusion model ready for LOCO: the denoiser plus what identifies it."""

    unet: Any
    scheduler: Any
    denoiser: Denoiser
    model_id: str
    revision: str
    fingerprint: str
    resolution: int
    channels: int
    device: torch.device
    dtype: torch.dtype
    kind: str = "pixel"
    defaults: dict = field(default_factory=dict)
    source: str = ""  # what to pass to load_model to get this model again (Hub id or absolute folder)

    def strength_for(self, mask_label: str | None = None) -> float:
        """The default edit strength for a direction harvested with ``mask_label``: the model's
        ``strength_by_label`` entry for it, else its ``strength``, else 8 (the LOCO reference's)."""
        by_label = self.defaults.get("strength_by_label") or {}
        return float(by_label.get(mask_label, self.defaults.get("strength", 8.0)))

    def info(self) -> dict:
        """Plain description for catalogs and logs."""
        return {"model_id": self.model_id, "revision": self.revision, "fingerprint": self.fingerprint,
                "resolution": self.resolution, "channels": self.channels, "kind": self.kind}


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when present (``cuda:$LOCAL_RANK`` under torchrun), else CPU."""
    import os

    if device:
        return torch.device(device)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    rank = os.environ.get("LOCAL_RANK")
    return torch.device(f"cuda:{int(rank) % torch.cuda.device_count()}" if rank is not None else "cuda")


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """fp32 unless asked otherwise; half precision is refused on CPU, where it is slow and inexact."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        out = dtype
    elif dtype in DTYPES:
        out = DTYPES[dtype]
    else:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of fp32, fp16, bf16")
    if out == torch.float16 and device.type == "cpu":
        raise ModelLoadError("fp16 is not supported on CPU; use fp32 or bf16")
    return out


def config_hash(unet_config: dict, scheduler_config: dict) -> str:
    """sha256 of the UNet and scheduler configs, ignoring keys that name paths or versions."""
    def clean(cfg: dict) -> dict:
        return {k: v for k, v in dict(cfg).items() if k not in _VOLATILE_KEYS}

    blob = json.dumps({"unet": clean(unet_config), "scheduler": clean(scheduler_config)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def fingerprint(model_id: str, revision: str, cfg_hash: str) -> str:
    """A stable 16-hex-digit identity: the same id, revision and configs always give the same value."""
    return hashlib.sha256(f"{model_id}\n{revision}\n{cfg_hash}".encode()).hexdigest()[:16]


def _weights_digest(folder: Path) -> str:
    """Revision of a local folder: a hash of its weight files, so retrained weights get a new identity."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


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


def load_model(source: str | Path, *, device: str | None = None, dtype: str | torch.dtype | None = None,
               revision: str | None = None) -> LoadedModel:
    """Load a pixel-space unconditional diffusers model by Hub id or local folder."""
    path = Path(source).expanduser()
    local = path.exists()
    if not local and str(source).startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {str(source)!r} does not exist")
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    unet, sched = _load_parts(str(path) if local else str(source), revision)
    if getattr(unet.config, "in_channels", 3) != getattr(unet.config, "out_channels", 3):
        raise ModelLoadError("only pixel models whose input and output channels match are supported")
    if local:
        model_id = f"local:{path.resolve().name}"
        rev = _weights_digest(path)
    else:
        model_id = str(source)
        rev = revision or _hub_commit(str(source)) or "main"
    unet = unet.to(device=dev).eval().requires_grad_(False)
    if dt != torch.float32:
        unet = unet.to(dtype=dt)
    pred = sched.config.get("prediction_type", "epsilon")
    if pred not in ("epsilon", "v_prediction", "sample"):
        raise ModelLoadError(f"unsupported prediction_type {pred!r}")
    acp = sched.alphas_cumprod.to(torch.float64)

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x.to(dt), t).sample.to(x.dtype)

    den = Denoiser(net=net, alphas_cumprod=acp, prediction_type=pred)
    cfg_hash = config_hash(dict(unet.config), dict(sched.config))
    defaults = {}
    if local and (path / "locobank.json").exists():
        defaults = json.loads((path / "locobank.json").read_text())
    res = unet.config.sample_size
    res = int(res[0] if isinstance(res, (list, tuple)) else res)
    return LoadedModel(unet=unet, scheduler=sched, denoiser=den, model_id=model_id, revision=rev,
                       fingerprint=fingerprint(model_id, rev, cfg_hash), resolution=res,
                       channels=int(unet.config.in_channels), device=dev, dtype=dt, defaults=defaults,
                       source=str(path.resolve()) if local else str(source))


def _hub_commit(repo_id: str) -> str | None:
    """The commit hash of a cached Hub snapshot, when the cache knows it."""
    try:
        from huggingface_hub import try_to_load_from_cache

        p = try_to_load_from_cache(repo_id, "model_index.json") or try_to_load_from_cache(repo_id, "config.json")
        if isinstance(p, str):
            return Path(p).parent.name
    except Exception:  # the cache layout is an implementation detail; fall back to "main"
        return None
    return None
