"""What a harvest will cost, before any work, and how fast it is going while it runs.

Costs are in forward-pass equivalents (FPE, :mod:`locobank.core.cost`): one forward pass of the
model's posterior-mean predictor on one state. The estimate times that pass once, and one JVP
and one VJP per vector on the same state, so it knows what a subspace-iteration round costs on
this machine; the number of rounds is an assumption (what the toy models take cold), or the
mean of the rounds the catalog recorded for this model's earlier jobs grown in the same Krylov
blocks (:data:`locobank.loco.jacobian.KRYLOV_BLOCK`), when it has some.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch

from .. import core
from ..images import load_image
from ..loco import jacobian
from ..models import LoadedModel, under
from .inputs import Pair

ROUNDS = 12  # rounds a cold job takes on the toy models in whole Krylov blocks (bench_warm.py: 10-13)
# ... and in small blocks (a quarter of a basis's width, at most KRYLOV_BLOCK): null rank 20 in blocks of
# 4, 16-25 on the toy models (docs/performance.md)
ROUNDS_SMALL_BLOCK = 20


@dataclass
class Estimate:
    """A manifest's cost: jobs and images, the FPE of each part of a job, and the total."""

    jobs: int
    images: int
    forward_seconds: float
    jvp_fpe: float  # one J v, per vector
    vjp_fpe: float  # one J^T u, per vector
    rounds: float
    rounds_from: str  # "assumed" or "N earlier jobs"
    inversion_fpe: float  # per image
    job_fpe: float  # finding one job's directions

    @property
    def total_fpe(self) -> float:
        return self.jobs * self.job_fpe + self.images * self.inversion_fpe

    @property
    def seconds(self) -> float:
        return self.total_fpe * self.forward_seconds


def estimate(model: LoadedModel, pairs: Sequence[Pair], params, *, rounds: float | None = None,
             rounds_from: str = "assumed") -> Estimate:
    """The cost of harvesting ``pairs`` with ``params`` (:class:`HarvestParams`), from one timed
    forward pass, JVP and VJP on the first image noised to the edit time (the values of a state
    do not change the time of a pass)."""
    p = pairs[0]
    m = under(model, p.condition) if p.condition else model
    t = core.EditTime.of(model.denoiser.num_timesteps, float(params.t_for(p.label)))
    x = load_image(p.image, model.resolution, resize=True, channels=model.channels) if p.image.exists() else \
        torch.zeros(model.channels, model.resolution, model.resolution)
    x_t = core.noise_to(m, x[None].to(model.device), t, [0])[0]
    unit = core.forward_seconds(m, x_t, t)
    ranks = [params.rank] + ([params.null_rank] if params.null_rank > 0 else [])
    vectors = sum(jacobian.block_width(r) for r in ranks)  # what one round sends through the model
    limited = any(jacobian.block_width(r) < jacobian.block_width(r, block=0) for r in ranks)
    k = min(16, vectors)  # one chunk, as a round sends them
    lin = core.linearize(m, t.step, x_t)
    V = torch.randn(k, *x_t.shape, device=x_t.device)
    lin.vjp(lin.jvp(V[:1]))  # the first calls pay for setting up forward-mode AD and vmap: untimed
    t0 = time.perf_counter()
    U = lin.jvp(V)
    jvp = core.fpe((time.perf_counter() - t0) / k, unit)
    t0 = time.perf_counter()
    lin.vjp(U)
    vjp = core.fpe((time.perf_counter() - t0) / k, unit)
    n = (ROUNDS_SMALL_BLOCK if limited else ROUNDS) if rounds is None else float(rounds)
    n = min(n, max(jacobian.iteration_cap(params.iters, r) for r in ranks))  # the cap counts whole blocks
    job = 1 + n * vectors * (jvp + vjp) + params.rank * jvp  # linearisation, rounds, the final check
    inversion = params.steps  # one network pass per step (no decode: at most one FPE)
    jobs = len({(q.image, q.mask, str(q.condition)) for q in pairs})
    return Estimate(jobs, len({q.image for q in pairs}), unit, jvp, vjp, n, rounds_from, float(inversion), job)


@dataclass
class Pace:
    """How a running harvest is going: jobs done of all, directions per minute, time left."""

    total: int
    done: int = 0
    directions: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.started or time.perf_counter()

    def add(self, jobs: int, directions: int) -> None:
        """Count finished (or failed) jobs and the directions they stored."""
        self.done += jobs
        self.directions += directions

    def text(self, now: float | None = None) -> str:
        """``12/40 jobs, 35.2 directions/min, 3 min 10 s left``."""
        elapsed = max(1e-9, (now or time.perf_counter()) - self.started)
        left = (self.total - self.done) * elapsed / self.done if self.done else None
        return (f"{self.done}/{self.total} jobs, {60 * self.directions / elapsed:.1f} directions/min, "
                + (f"{duration(left)} left" if left is not None else "time left unknown"))


def duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 10 s``, ``42 s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


__all__ = ["Estimate", "Pace", "ROUNDS", "ROUNDS_SMALL_BLOCK", "duration", "estimate"]
