"""Training of the toy CLIP: a real open_clip model from its own JSON config, trained
contrastively on procedural faces and their captions, saved in open_clip's local-dir layout."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import faces
from ..data.captions import training_caption
from .dataset import training_faces
from .state import checkpoint, ema_update, load_state, note_hardware

MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "patch_size": 4, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 96, "heads": 4, "layers": 3, "mlp_ratio": 2.0},
}
PREPROCESS_CFG = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic", "resize_mode": "shortest"}


def write_config(out_dir: Path) -> Path:
    """Write ``open_clip_config.json``: the architecture and preprocessing open_clip reads."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "open_clip_config.json"
    path.write_text(json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}, indent=2))
    return path


def build(out_dir: Path):
    """A fresh open_clip model from the JSON config (no weights), and its tokenizer."""
    import open_clip

    write_config(out_dir)
    model = open_clip.create_model(f"local-dir:{Path(out_dir).resolve()}", load_weights=False)
    tok = open_clip.get_tokenizer(f"local-dir:{Path(out_dir).resolve()}")
    return model, tok


def train_clip(
    out_dir: Path,
    state_path: Path,
    *,
    steps: int = 4000,
    batch_size: int = 128,
    lr: float = 5e-4,
    n_faces: int = 20000,
    seed: int = 0,
    device: str | None = None,
    resume: bool = True,
    init: Path | None = None,
    save_every: int = 250,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train (or resume) the toy CLIP to ``steps``; export EMA weights as ``open_clip_model.safetensors``.

    With ``init`` (a toy CLIP folder) and no state to resume, training starts from that model's
    weights instead of from scratch: a fine-tune, e.g. after the face generator or the captions
    changed. Its steps count from 0."""
    import copy

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model, tok = build(out_dir)
    model = model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    meta = {"step": 0, "seconds": 0.0, "seed": seed, "batch_size": batch_size, "lr": lr, "hardware": []}
    if resume and Path(state_path).exists():
        meta = load_state(Path(state_path), model, ema, opt)
    elif init is not None:
        meta["init"] = _start_from(init, model, ema)
    data, attrs = training_faces(n_faces, Path(state_path).parent), [faces.sample_attributes(i) for i in range(n_faces)]
    note_hardware(meta, device, steps)
    rng = random.Random(seed * 7 + meta["step"])
    gen = torch.Generator().manual_seed(seed * 100003 + meta["step"])
    step = meta["step"]
    t0 = time.time()
    model.train()

    while step < steps:
        x, text = _batch(data, attrs, tok, gen, rng, batch_size, n_faces, device)
        for g in opt.param_groups:
            g["lr"] = _lr(lr, step, steps)
        loss = _contrastive(model, x, text)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        step += 1
        ema_update(ema, model, step, 0.995)
        if on_step is not None:
            on_step(step, float(loss.detach()))
        if step % save_every == 0 or step == steps:
            t0 = checkpoint(state_path, model, ema, opt, meta, step, t0)
            _export(out_dir, ema, meta)
    return meta


def _start_from(init: Path, model, ema) -> dict:
    """Load a toy CLIP folder's weights into ``model`` and ``ema``; returns what they had been
    through, so the exported training.json tells the whole story."""
    from safetensors.torch import load_file

    weights = load_file(str(Path(init) / "open_clip_model.safetensors"))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    ema.load_state_dict(model.state_dict())
    before = Path(init) / "training.json"
    return {"path": str(init), **(json.loads(before.read_text()) if before.exists() else {})}


def _batch(data, attrs, tok, gen: torch.Generator, rng: random.Random, batch_size: int, n_faces: int, device):
    """Faces (half of them mirrored) and one training caption each, tokenised."""
    idx = torch.randint(0, n_faces, (batch_size,), generator=gen)
    x = data[idx]
    flip = torch.rand(batch_size, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x).to(device)
    return x, tok([training_caption(attrs[int(i)], rng) for i in idx]).to(device)


def _lr(lr: float, step: int, steps: int) -> float:
    """A 200-step warm-up, then a cosine decay to 5 % of ``lr``."""
    warm = min(1.0, (step + 1) / 200)
    cos = 0.5 * (1 + np.cos(np.pi * min(1.0, step / max(1, steps))))
    return lr * warm * (0.05 + 0.95 * cos)


def _contrastive(model, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the batch's image-text similarities."""
    img_f, txt_f, scale = model(x, text)[:3]
    logits = scale * img_f @ txt_f.T
    target = torch.arange(x.shape[0], device=x.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _export(out_dir: Path, ema, meta: dict) -> None:
    """The EMA weights in open_clip's local-dir layout, and the ``training.json`` of what ran.

    fp16 on disk halves the size (the token embedding dominates); open_clip loads it into fp32."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().half().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
          for k, v in ema.state_dict().items()}
    save_file(sd, str(Path(out_dir) / "open_clip_model.safetensors"))
    keys = ("step", "seconds", "batch_size", "lr", "hardware", "seed", "init")
    (Path(out_dir) / "training.json").write_text(json.dumps({k: meta[k] for k in keys if k in meta}, indent=2))
