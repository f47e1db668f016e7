"""Training of the toy DDPM: a small diffusers UNet2DModel on procedural faces."""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Callable

import torch

from .dataset import training_faces
from .state import checkpoint, ema_update, load_state, note_hardware

log = logging.getLogger(__name__)

UNET_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    attention_head_dim=32,
)


def train_ddpm(
    out_dir: Path,
    state_path: Path,
    *,
    steps: int = 20000,
    batch_size: int = 32,
    lr: float = 2e-4,
    n_faces: int = 20000,
    seed: int = 0,
    device: str | None = None,
    resume: bool = True,
    save_every: int = 500,
    export_every: int = 2000,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Train (or resume) the toy DDPM up to ``steps`` optimiser steps; export EMA weights to ``out_dir``."""
    from diffusers import DDPMScheduler, UNet2DModel

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model = UNet2DModel(**UNET_CONFIG).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    meta = {"step": 0, "seconds": 0.0, "seed": seed, "batch_size": batch_size, "lr": lr, "hardware": []}
    if resume and Path(state_path).exists():
        meta = load_state(Path(state_path), model, ema, opt)
        log.info("resumed at step %d", meta["step"])
    data = training_faces(n_faces, Path(state_path).parent)
    note_hardware(meta, device, steps)
    gen = torch.Generator().manual_seed(seed * 100003 + meta["step"])
    acp = sched.alphas_cumprod.to(device)
    t0 = time.time()
    step = meta["step"]
    model.train()

    while step < steps:
        xt, t, noise = _noisy_batch(data, gen, batch_size, acp, device)
        warm = min(1.0, (step + 1) / 500)
        for g in opt.param_groups:
            g["lr"] = lr * warm
        loss = torch.nn.functional.mse_loss(model(xt, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, model, step, 0.999)
        if on_step is not None:
            on_step(step, loss.item())
        if step % save_every == 0 or step == steps:
            t0 = checkpoint(state_path, model, ema, opt, meta, step, t0)
        if step % export_every == 0:
            _export(out_dir, ema, sched, meta)
    meta["step"] = step
    _export(out_dir, ema, sched, meta)  # the model folder always ends at the state's step, even with nothing to train
    return meta


def _noisy_batch(data: torch.Tensor, gen: torch.Generator, batch_size: int, acp: torch.Tensor, device: str):
    """A batch of faces (half of them mirrored), noised to random timesteps: (x_t, t, noise)."""
    idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
    x0 = data[idx]
    flip = torch.rand(batch_size, generator=gen) < 0.5
    x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0).to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    t = torch.randint(0, 1000, (batch_size,), generator=gen).to(device)
    a = acp[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise, t, noise


def _export(out_dir: Path, ema, sched, meta: dict) -> None:
    """Save the EMA weights as a DDPMPipeline folder with the ``training.json`` of what ran."""
    from diffusers import DDPMPipeline

    DDPMPipeline(unet=ema, scheduler=sched).save_pretrained(out_dir)
    keys = ("step", "seconds", "batch_size", "lr", "hardware", "seed")
    (Path(out_dir) / "training.json").write_text(json.dumps({k: meta[k] for k in keys}, indent=2))
