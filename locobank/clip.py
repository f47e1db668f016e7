"""CLIP models through open_clip: the only module that loads one for embedding and search (the toy
world's trainers import open_clip too, to build the toy CLIP).

A CLIP *spec* names a model the way users type it:
- ``toy``: the toy CLIP shipped in ``data/models/toyfaces-clip``;
- ``ARCH/TAG``: an open_clip architecture with a pretrained tag, e.g. ``ViT-B-32/laion2b_s34b_b79k``;
- ``ARCH@PATH``: an architecture with a local checkpoint file;
- ``local-dir:PATH``, ``hf-hub:ORG/REPO``, or a folder holding ``open_clip_config.json``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ModelLoadError
from .paths import TOY_CLIP

log = logging.getLogger(__name__)


@dataclass
class ClipModel:
    """An open_clip model ready to embed images in [-1, 1] and text."""

    model: torch.nn.Module
    tokenizer: object
    clip_id: str
    image_size: int
    mean: Tensor
    std: Tensor
    device: torch.device

    @torch.no_grad()
    def encode_images(self, images: Tensor, batch: int = 256) -> Tensor:
        """L2-normalised embeddings of (B, 3, H, W) images in [-1, 1]."""
        outs = []
        for i in range(0, images.shape[0], batch):
            x = images[i : i + batch].to(self.device, torch.float32)
            x = (x + 1) / 2
            if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", antialias=True,
                                  align_corners=False).clamp(0, 1)
            x = (x - self.mean) / self.std
            outs.append(F.normalize(self.model.encode_image(x).float(), dim=-1))
        return torch.cat(outs)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> Tensor:
        """L2-normalised embeddings of text prompts."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    @property
    def dim(self) -> int:
        return int(self.encode_text(["a"]).shape[-1])


def _weights_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pt")):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _resolve(spec: str) -> tuple[str, str | None, str]:
    """(open_clip model name, pretrained, stable id) for a spec."""
    if spec in ("", "toy"):
        spec = f"local-dir:{TOY_CLIP}"
    if spec.startswith("hf-hub:"):
        return spec, None, spec
    if spec.startswith("local-dir:") or Path(spec).is_dir():
        folder = Path(spec.removeprefix("local-dir:")).expanduser().resolve()
        if not (folder / "open_clip_config.json").exists():
            raise ModelLoadError(f"{folder} has no open_clip_config.json")
        if not any(any(folder.glob(p)) for p in ("*.safetensors", "*.bin", "*.pt")):  # else open_clip goes on at random
            raise ModelLoadError(f"{folder} has a CLIP config but no weights (open_clip_model.safetensors)")
        return f"local-dir:{folder}", None, f"local:{folder.name}:{_weights_hash(folder)}"
    if "@" in spec:
        arch, path = spec.split("@", 1)
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelLoadError(f"checkpoint {p} does not exist")
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        return arch, str(p), f"{arch}@{p.name}:{digest}"
    if "/" in spec:
        arch, tag = spec.split("/", 1)
        return arch, tag, spec
    return spec, None, spec


def clip_id(spec: str) -> str:
    """The stable id under which embeddings from this CLIP are stored (weights-hashed for local models)."""
    return _resolve(spec)[2]


def load_clip(spec: str = "toy", device: str | None = None) -> ClipModel:
    """Load a CLIP model by spec (see the module docstring)."""
    import open_clip

    name, pretrained, cid = _resolve(spec)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model, _, _ = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=dev)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:  # open_clip raises RuntimeError/ValueError/FileNotFoundError/HTTP errors
        raise ModelLoadError(f"could not load CLIP {spec!r}: {e}") from e
    model.eval().requires_grad_(False)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = torch.tensor(getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN, device=dev)
    std = torch.tensor(getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD, device=dev)
    return ClipModel(model=model, tokenizer=tokenizer, clip_id=cid, image_size=size, mean=mean.view(1, 3, 1, 1),
                     std=std.view(1, 3, 1, 1), device=dev)
