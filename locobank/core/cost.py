"""Cost in forward-pass equivalents (FPE): seconds divided by the seconds of one forward pass of
the same model, timed in the same run. The unit is one posterior-mean prediction (for a latent
model: the guided UNet pass plus the decode) of one state, without gradients. A figure in FPE
carries from one machine to another where seconds do not."""

from __future__ import annotations

import statistics
import time

import torch
from torch import Tensor

from ..models import LoadedModel
from .states import as_batch
from .time import to_timestep


def forward_seconds(model: LoadedModel, x_t: Tensor, t: float | int, *, repeats: int = 3) -> float:
    """Seconds of one forward pass of the posterior-mean predictor at ``x_t`` (one state), the
    median of ``repeats`` after one untimed warm-up."""
    fn = model.family.predictor(to_timestep(model, t))
    x = as_batch(model, x_t, "x_t", state=True)[0]
    times = []
    with torch.no_grad():
        fn(x)
        for _ in range(max(1, int(repeats))):
            _sync(x)
            t0 = time.perf_counter()
            fn(x)
            _sync(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sync(x: Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def fpe(seconds: float, unit: float) -> float:
    """``seconds`` in forward-pass equivalents of ``unit`` seconds each."""
    return float(seconds) / max(float(unit), 1e-12)


__all__ = ["forward_seconds", "fpe"]
