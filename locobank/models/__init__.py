"""Loading diffusion models by Hub id or local folder, each as one model family
(:mod:`locobank.models.family`). This package is the only one that loads diffusers models (the toy
world's trainers import diffusers too, to build the toy models)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..settings import ModelSettings
from .base import LoadedModel, config_hash, fingerprint, pick_device, pick_dtype
from .family import Condition, ModelFamily, PixelFamily
from .latent import LatentFamily, conditioned, load_latent, pipeline_class, under
from .flow import FlowFamily, load_flow
from .flux import FluxFamily
from .pixel import load_pixel
from .sd3 import SD3Family

PIXEL_PIPELINES = ("DDPMPipeline", "DDIMPipeline", "PNDMPipeline")
FLOW_FAMILIES: dict[str, type[FlowFamily]] = {f.pipeline: f for f in (SD3Family, FluxFamily)}

__all__ = ["Condition", "LatentFamily", "LoadedModel", "ModelFamily", "PixelFamily", "conditioned", "config_hash", "fingerprint", "load_model", "pick_device", "under",
           "pick_dtype"]


def load_model(source: str | Path, *, device: str | None = None, dtype: str | torch.dtype | None = None,
               revision: str | None = None) -> LoadedModel:
    """Load a diffusers model by Hub id or local folder (in ``dtype``, else its ``locobank.json``'s,
    else fp32), as the family its files say: a
    ``StableDiffusionPipeline`` folder is a latent text-to-image model, a ``StableDiffusion3Pipeline``
    or ``FluxPipeline`` a flow-matching one, anything else with a ``UNet2DModel`` a pixel model."""
    path = Path(source).expanduser()
    local = path if path.exists() else None
    if local is None and str(source).startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {str(source)!r} does not exist")
    dev = pick_device(device)
    dt = pick_dtype(dtype if dtype is not None else ModelSettings.load(local).dtype, dev)
    where = str(path) if local is not None else str(source)
    cls_name = pipeline_class(where, local, revision)
    if cls_name in FLOW_FAMILIES:
        return load_flow(where, local=local, device=dev, dtype=dt, revision=revision, family=FLOW_FAMILIES[cls_name])
    if cls_name is not None and cls_name not in PIXEL_PIPELINES:
        return load_latent(where, local=local, device=dev, dtype=dt, revision=revision, cls_name=cls_name)
    return load_pixel(where, local=local, device=dev, dtype=dt, revision=revision)
