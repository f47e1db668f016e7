"""Loading diffusion models by Hub id or local folder, each as one model family
(:mod:`locobank.models.family`). This package is the only one that loads diffusers models (the toy
world's trainers import diffusers too, to build the toy models)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..settings import ModelSettings
from .base import LoadedModel, config_hash, fingerprint, pick_device, pick_dtype
from .deepfloyd import load_if
from .family import Condition, ModelFamily, PixelFamily
from .flow import load_flow
from .flux import FluxFamily
from .latent import LatentFamily, conditioned, load_latent, pipeline_class, under
from .lcm import load_lcm
from .pixel import load_pixel
from .sd3 import SD3Family
from .sdxl import load_sdxl

PIXEL_PIPELINES = ("DDPMPipeline", "DDIMPipeline", "PNDMPipeline")
# The text-to-image families, by the ``_class_name`` of their ``model_index.json``: one line each.
LOADERS = {
    "StableDiffusionPipeline": load_latent,  # SD 1.x / 2.x
    "StableDiffusionXLPipeline": load_sdxl,
    "LatentConsistencyModelPipeline": load_lcm,
    "IFPipeline": load_if,  # DeepFloyd IF stage I
    "StableDiffusion3Pipeline": partial(load_flow, family=SD3Family),  # flow matching
    "FluxPipeline": partial(load_flow, family=FluxFamily),
}

__all__ = ["Condition", "LatentFamily", "LoadedModel", "ModelFamily", "PixelFamily", "conditioned", "config_hash", "fingerprint", "load_model", "pick_device", "under",
           "pick_dtype"]


def load_model(source: str | Path, *, device: str | None = None, dtype: str | torch.dtype | None = None,
               revision: str | None = None) -> LoadedModel:
    """Load a diffusers model by Hub id or local folder (in ``dtype``, else its ``locobank.json``'s,
    else fp32), as the family its files say: a pipeline folder whose ``_class_name`` is in
    :data:`LOADERS` is that text-to-image family, anything else with a ``UNet2DModel`` a pixel model."""
    path = Path(source).expanduser()
    local = path if path.exists() else None
    if local is None and str(source).startswith((".", "/", "~")):
        raise ModelLoadError(f"model folder {str(source)!r} does not exist")
    dev = pick_device(device)
    dt = pick_dtype(dtype if dtype is not None else ModelSettings.load(local).dtype, dev)
    where = str(path) if local is not None else str(source)
    cls_name = pipeline_class(where, local, revision)
    if cls_name is not None and cls_name not in PIXEL_PIPELINES:
        if cls_name not in LOADERS:
            raise ModelLoadError(f"{where} is a {cls_name}; locobank supports pixel UNet2DModel pipelines and "
                                 f"{', '.join(LOADERS)}")
        return LOADERS[cls_name](where, local=local, device=dev, dtype=dt, revision=revision)
    return load_pixel(where, local=local, device=dev, dtype=dt, revision=revision)
