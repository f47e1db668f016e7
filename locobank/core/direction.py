"""A direction and its strength: what an edit is made of, and how several add up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ..errors import FingerprintMismatch, InputError
from ..loco import register as reg
from ..models import LoadedModel


@dataclass
class Direction:
    """A unit edit direction and what it belongs to: the model's fingerprint, the edit timestep
    and, when known, the part it was harvested on (so a target mask can register it)."""

    vector: Tensor  # (*state_shape), unit norm
    t_edit: int
    fingerprint: str | None = None
    name: str | None = None
    source: reg.PartPrint | None = None  # the source part's mask (and profiles) at the image resolution


@dataclass
class EditResult:
    """Edited images, and the states that produced them, for inspection and reuse."""

    images: Tensor  # (B, C, H, W) in [-1, 1]
    x_t: Tensor  # inverted states before the edit
    x_t_edited: Tensor
    t_edit: int
    shifts: list[tuple[float, float]] = field(default_factory=list)  # per direction, with a target mask
    scales: list[tuple[float, float]] = field(default_factory=list)  # (y, x) per direction, with a target mask
    reference: Tensor | None = None  # with a mask and spill passes: the unedited sample (C, H, W), reusable


def check_direction(model: LoadedModel, d: Direction | Tensor, t: int | None) -> Direction:
    """``d`` as a :class:`Direction` of this model: its fingerprint and shape must match."""
    if isinstance(d, Tensor):
        d = Direction(d, t if t is not None else -1, None)
    if d.fingerprint is not None and d.fingerprint != model.fingerprint:
        raise FingerprintMismatch(f"direction{' ' + d.name if d.name else ''} was found with model fingerprint "
                                  f"{d.fingerprint}, but the loaded model is {model.fingerprint} ({model.model_id})")
    want = tuple(model.family.state_shape)
    if tuple(d.vector.shape) != want:
        raise FingerprintMismatch(f"direction has shape {tuple(d.vector.shape)} but the model works at {want}: "
                                  f"it comes from a different resolution or model family")
    return d


def scaled(vectors: Sequence[Tensor], strengths: Sequence[float], orthogonalize: bool) -> list[Tensor]:
    """``lambda_i v_i`` as flat float64 vectors, after Gram-Schmidt on the directions in order if asked."""
    vs = [v.reshape(-1).to(torch.float64) for v in vectors]
    if orthogonalize:
        basis: list[Tensor] = []
        for v in vs:
            for b in basis:
                v = v - (v @ b) * b
            n = v.norm()
            if n < 1e-8:
                raise InputError("a composed direction is a combination of the ones before it")
            basis.append(v / n)
        vs = basis
    return [float(s) * v for s, v in zip(strengths, vs)]


def compose(vectors: Sequence[Tensor], strengths: Sequence[float], *, orthogonalize: bool = False) -> Tensor:
    """``sum_i lambda_i v_i``, optionally after Gram-Schmidt on the directions in order."""
    total = sum(scaled(vectors, strengths, orthogonalize))
    return total.reshape(vectors[0].shape).to(vectors[0].dtype)


def locality(delta: Tensor, mask: Tensor) -> float:
    """Share of the pixel-change energy of ``delta`` (C x H x W) that falls inside ``mask`` (H x W bool)."""
    e = delta.detach().float().cpu().pow(2).sum(0)
    return float(e[mask.cpu().bool()].sum() / e.sum().clamp_min(1e-20))
