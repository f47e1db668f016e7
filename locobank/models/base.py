"""What every loaded model is, whatever its family: its identity (id, revision, fingerprint),
device, dtype, settings and :class:`~locobank.models.family.ModelFamily` adapter."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError
from ..loco.denoiser import Denoiser
from ..settings import ModelSettings
from .family import ModelFamily

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
_VOLATILE_KEYS = ("_name_or_path", "_diffusers_version", "_class_name", "_use_default_values")


@dataclass
class LoadedModel:
    """A diffusion model ready for LOCO: its family adapter plus what identifies it.

    ``resolution`` and ``channels`` are the images'; the family knows the states'."""

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
    family: ModelFamily | None = None  # None: the pixel family over ``denoiser``
    settings: ModelSettings = field(default_factory=ModelSettings)
    source: str = ""  # what to pass to load_model to get this model again (Hub id or absolute folder)

    def __post_init__(self) -> None:
        if self.family is None:
            from .family import PixelFamily

            self.family = PixelFamily(self.denoiser, self.channels, self.resolution)

    @property
    def kind(self) -> str:
        """The model family's name ("pixel", ...)."""
        return self.family.name

    def strength_for(self, mask_label: str | None = None) -> float:
        """The default edit strength for a direction harvested on ``mask_label`` (see settings)."""
        return self.settings.strength_for(mask_label)

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


def config_hash(configs: dict[str, dict]) -> str:
    """sha256 of a model's component configs (by component name), ignoring keys that name paths
    or versions. For a pixel model the components are ``unet`` and ``scheduler``."""
    def clean(cfg: dict) -> dict:
        return {k: v for k, v in dict(cfg).items() if k not in _VOLATILE_KEYS}

    blob = json.dumps({name: clean(cfg) for name, cfg in configs.items()}, sort_keys=True, default=str)
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


def identity(where: str, local: Path | None, revision: str | None) -> tuple[str, str]:
    """``(model_id, revision)``: ``local:NAME`` and a digest of the weights for a folder, the Hub
    id and its commit (or the revision asked for, else "main") for a Hub model."""
    if local is not None:
        return f"local:{local.resolve().name}", _weights_digest(local)
    return where, revision or _hub_commit(where) or "main"


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
