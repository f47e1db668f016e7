"""A direction's strength scale, measured once when it is indexed: its *unit* and its *limit*.

On its own image and the probe images (the states ``index`` renders its effect from), the direction
is previewed (:func:`.preview.posterior_images`) at a ladder of strengths, :data:`LADDER` times the
default strength of its part:

- ``unit``: the strength at which the preview changes the images inside the direction's own part
  by :data:`~.preview.CHANGE_TARGET` RMS (median over the images; interpolated on the ladder in
  log-log). A strength written ``Nx`` (``apply 12:2x``) is N units: ``1x`` is about the same size
  of change for every direction;
- ``limit``: the largest strength on the ladder up to which the edit stays *linear* (each doubling
  of the strength multiplies the change inside the part by :data:`GROWTH` ``[0]`` to ``[1]``,
  median over the images: below, the edit saturates; above, it breaks into something else) and
  *local* (the share of the change inside the part stays at least :data:`LOCAL_KEEP` of what it
  is at the smallest rung), and the change stays under :data:`MAX_CHANGE` RMS (past it the part
  is replaced rather than edited).

Linear here is the size of the change, not its pattern: on the toy pixel model the posterior mean
already leaves the straight line through the smallest rung by about half at the default strength
(median over 9 directions), where the edits do what their names say.

The unit may lie beyond the limit (a faint direction that only shows where it stops being
linear); it is recorded as found, and the card shows both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..models import LoadedModel
from .preview import CHANGE_TARGET, change_size, posterior_images

LADDER = (0.5, 1.0, 2.0, 4.0)  # doublings, times the part's default strength
GROWTH = (1.5, 3.0)
LOCAL_KEEP = 0.8
MAX_CHANGE = 0.5  # RMS, pixels in [-1, 1]: a quarter of black to white


@dataclass(frozen=True)
class StrengthRange:
    """A direction's measured unit strength and the limit of its linear, local range (both lambda)."""

    unit: float
    limit: float


def ladder_previews(model: LoadedModel, x_t: Tensor, t: int, v: Tensor, strengths: Tensor) -> Tensor:
    """Decoded posterior means (n, S+1, C, H, W) of each state in ``x_t`` (n, *state) moved by each
    strength (0 first) along ``v``."""
    lams = torch.cat([torch.zeros(1), strengths.float()]).to(x_t.device)
    deltas = lams.view(-1, *[1] * v.dim()) * v.to(x_t.device, x_t.dtype)
    return torch.stack([posterior_images(model, x_t[i : i + 1], t, deltas) for i in range(len(x_t))])


def localities(images: Tensor, region: Tensor) -> np.ndarray:
    """Per rung, the median over the images of the share of the change's energy inside ``region``."""
    e = (images[:, 1:] - images[:, :1]).pow(2).sum(2)  # (n, S, H, W)
    inside = (e * region.to(e.device).float()).flatten(2).sum(2)
    return (inside / e.flatten(2).sum(2).clamp_min(1e-20)).median(0).values.cpu().numpy()


def unit_from(strengths: np.ndarray, sizes: np.ndarray, target: float = CHANGE_TARGET) -> float:
    """The strength whose change is ``target``, interpolated in log-log between the rungs around it
    (extrapolated from the end rungs' slope when the ladder does not reach it)."""
    s, c = np.log(strengths), np.log(np.maximum(sizes, 1e-12))
    lt = np.log(target)
    i = int(np.searchsorted(np.maximum.accumulate(c), lt))
    i = min(max(i, 1), len(s) - 1)
    slope = (c[i] - c[i - 1]) / (s[i] - s[i - 1]) if c[i] != c[i - 1] else 1.0
    slope = float(np.clip(slope, 0.5, 3.0))  # as rank.preview.corrected bounds a power law
    return float(np.exp(s[i - 1] + (lt - c[i - 1]) / slope))


def limit_from(strengths: Sequence[float], sizes: np.ndarray, locs: np.ndarray) -> float:
    """The largest rung reached while every doubling grows the change within :data:`GROWTH`, the
    locality stays at least :data:`LOCAL_KEEP` of the first rung's and the change under :data:`MAX_CHANGE`."""
    limit = float(strengths[0])
    for i in range(1, len(strengths)):
        growth = sizes[i] / max(float(sizes[i - 1]), 1e-12)
        if not (GROWTH[0] <= growth <= GROWTH[1] and locs[i] >= LOCAL_KEEP * locs[0] and sizes[i] <= MAX_CHANGE):
            break
        limit = float(strengths[i])
    return limit


def strength_range(model: LoadedModel, x_t: Tensor, t: int, v: Tensor, region: Tensor, default: float,
                   target: float = CHANGE_TARGET) -> StrengthRange:
    """The :class:`StrengthRange` of the unit direction ``v`` on the states ``x_t`` (n, *state) at
    timestep ``t``, its change measured inside ``region`` (H, W bool), from the ``default`` strength."""
    strengths = np.array(LADDER) * float(default)
    images = ladder_previews(model, x_t, t, v, torch.from_numpy(strengths))
    sizes = np.median(np.stack([change_size(im[1:] - im[:1], region).numpy() for im in images]), axis=0)
    limit = limit_from(strengths.tolist(), sizes, localities(images, region))
    return StrengthRange(unit=round(unit_from(strengths, sizes, target), 4), limit=round(limit, 4))
