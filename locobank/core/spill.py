"""Spill passes: an edit with a target mask corrected for what it still changes outside the mask,
measured through the whole sampler."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..models import LoadedModel


def spill_pass(model: LoadedModel, t: int, delta: Tensor, edited: Tensor, reference: Tensor, inside: Tensor) -> Tensor:
    """One spill pass: the edit ``delta`` at timestep ``t`` less what it changed outside ``inside``.

    ``edited`` and ``reference`` are the images sampled from ``x_t + delta`` and from ``x_t``
    alone. Their difference outside the mask is the edit's spill; it is carried to the state
    (the family's ``state_change``, about the reference images), pulled back to time ``t`` (times ``sqrt(abar_t)``, the gain
    of the state on the clean image at low noise) and subtracted from ``delta`` there, so
    sampling again changes less outside. The null-space projection removes the spill of the
    Jacobian at ``t`` alone; this one is measured through the whole sampler. Works on one edit
    or a batch, with ``inside`` (H, W) or (B, H, W)."""
    outside = (~inside.bool()).unsqueeze(-3).to(edited.device, edited.dtype)
    gain = float(model.denoiser.abar(int(t))) ** 0.5
    spill = outside * (edited - reference).to(edited.dtype)
    batched = spill.dim() == 4
    spill4 = spill if batched else spill[None]
    ref = reference.to(edited.device, edited.dtype).expand_as(spill4)  # one reference serves a batch of edits
    change = model.family.state_change(spill4, ref)
    change = change if batched else change[0]
    return delta - gain * change.to(delta.device, delta.dtype)


def with_spill_passes(model: LoadedModel, t: int, delta: Tensor, inside: Tensor, passes: int,
                      sample: Callable[[Tensor], Tensor], reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``passes`` spill passes (:func:`spill_pass`) on the edit ``delta`` at timestep ``t``.

    ``sample(delta)`` returns the images edited by ``delta``; ``reference`` (the unedited
    images, ``sample`` of a zero edit when not given) is what the spill is measured against.
    Returns the corrected edit and the images it gives."""
    out = sample(delta)
    if passes > 0 and reference is None:
        reference = sample(torch.zeros_like(delta))
    for _ in range(passes):
        delta = spill_pass(model, t, delta, out, reference, inside)
        out = sample(delta)
    return delta, out
