"""Resumable training state stored as safetensors (weights, EMA and Adam moments), never pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_state(path: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict) -> None:
    """Write the whole training state atomically (temp file, then rename)."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in ema.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            tensors[f"opt.exp_avg.{n}"] = st["exp_avg"].detach().cpu().contiguous()
            tensors[f"opt.exp_avg_sq.{n}"] = st["exp_avg_sq"].detach().cpu().contiguous()
            meta.setdefault("opt_step", float(st["step"]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    os.replace(tmp, path)


def load_state(path: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_state` wrote and return its metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["meta"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    device = next(model.parameters()).device
    for n, p in model.named_parameters():
        if f"opt.exp_avg.{n}" in tensors:
            opt.state[p] = {
                "step": torch.tensor(float(meta.get("opt_step", meta["step"]))),
                "exp_avg": tensors[f"opt.exp_avg.{n}"].to(device),
                "exp_avg_sq": tensors[f"opt.exp_avg_sq.{n}"].to(device),
            }
    return meta


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """EMA with the usual warm-up, so early checkpoints are not dominated by the random init."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(d).add_(pm.detach(), alpha=1 - d)


def read_step(path: Path) -> int:
    """The step a training-state file was saved at (0 when there is none)."""
    from safetensors import safe_open

    if not Path(path).exists():
        return 0
    with safe_open(str(path), framework="pt") as fh:
        return int(json.loads(fh.metadata()["meta"])["step"])


def note_hardware(meta: dict, device: str, target_steps: int) -> None:
    """Record the hardware in ``meta`` when it will train (only hardware that actually trained)."""
    import torch as _torch

    hw = _torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu x{_torch.get_num_threads()} threads"
    if hw not in meta["hardware"] and meta["step"] < target_steps:
        meta["hardware"].append(hw)


def checkpoint(path: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict,
               step: int, since: float) -> float:
    """Save the state at ``step``, adding the seconds since ``since``; returns the new ``since``."""
    import time

    meta["step"] = step
    meta["seconds"] = meta.get("seconds", 0.0) + (time.time() - since)
    meta.pop("opt_step", None)
    save_state(Path(path), model, ema, opt, meta)
    return time.time()


def start_or_resume(model: torch.nn.Module, state_path: Path, device: str, steps: int, lr: float,
                    meta: dict) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    """The EMA copy, the optimiser and the metadata of a training run: fresh from ``meta``, or as
    the checkpoint at ``state_path`` left them; the device is noted for the steps to come."""
    import copy

    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    if Path(state_path).exists():
        meta = load_state(Path(state_path), model, ema, opt)
    note_hardware(meta, device, steps)
    return ema, opt, meta
