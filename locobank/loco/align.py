"""Moving a direction found on one image onto the part mask of another by a whole-pixel shift.

A direction is local to the part it was harvested on. On a new image the same part sits a few
pixels elsewhere, and the transferred edit then draws a shifted, lopsided copy of the change.
Two ways to find the shift: lay the mask the direction was harvested with over the new image's
mask (:func:`register_shift`, used when the source mask is known), or move the direction until
most of its energy lands inside the new mask (:func:`best_shift`). Either puts the edit where
the part is before the null-space projection trims what is left outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TIE = 1e-4  # a shift must add more than this share of the energy to beat a shorter one


def shift(v: Tensor, dy: int, dx: int) -> Tensor:
    """``v`` (..., H, W) moved down by ``dy`` and right by ``dx`` pixels, zero-filled."""
    H, W = v.shape[-2:]
    out = torch.zeros_like(v)
    if abs(dy) >= H or abs(dx) >= W:
        return out
    src_y, dst_y = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    src_x, dst_x = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[..., dst_y, dst_x] = v[..., src_y, src_x]
    return out


def overlap(energy: Tensor, mask: Tensor, max_shift: int) -> Tensor:
    """``(2R+1, 2R+1)`` grid: the energy (H, W) inside ``mask`` after each shift (dy, dx) in [-R, R]."""
    R = int(max_shift)
    m = F.pad(mask.to(energy.dtype)[None, None], (R, R, R, R))
    return F.conv2d(m, energy[None, None])[0, 0]  # [dy + R, dx + R] = sum e(y, x) m(y + dy, x + dx)


def best_shift(energy: Tensor, mask: Tensor, max_shift: int) -> tuple[int, int]:
    """The shift (dy, dx), each within ``max_shift``, that puts the most of ``energy`` inside ``mask``.

    Among shifts within ``TIE`` of the best share the shortest wins, so a direction is not moved
    for nothing."""
    R = int(max_shift)
    if R <= 0:
        return 0, 0
    total = float(energy.sum())
    if total <= 0:
        return 0, 0
    share = overlap(energy, mask.bool(), R) / total
    best = float(share.max())
    dy, dx = torch.meshgrid(torch.arange(-R, R + 1), torch.arange(-R, R + 1), indexing="ij")
    dist = (dy.abs() + dx.abs()).to(share.device, share.dtype)
    dist = torch.where(share >= best - TIE, dist, torch.full_like(dist, float("inf")))
    i = int(dist.flatten().argmin())
    return int(dy.flatten()[i]), int(dx.flatten()[i])


def align_to_mask(v: Tensor, mask: Tensor, max_shift: int) -> tuple[Tensor, tuple[int, int]]:
    """``v`` (C, H, W) shifted onto ``mask`` (H, W bool) and rescaled to its own norm, with the shift."""
    e = v.detach().float().pow(2).sum(0)
    dy, dx = best_shift(e, mask.to(e.device), max_shift)
    if (dy, dx) == (0, 0):
        return v, (0, 0)
    w = shift(v, dy, dx)
    n = w.norm()
    return (w * (v.norm() / n) if n > 0 else w), (dy, dx)


def register_shift(source: Tensor, target: Tensor, max_shift: int) -> tuple[int, int]:
    """The shift (dy, dx), each within ``max_shift``, that lays the ``source`` mask (H, W) over
    the ``target`` mask best: the most of its pixels inside, the shortest such shift on ties.

    ``source`` is the mask a direction was harvested with and ``target`` the same part's mask on
    a new image, so the shift carries the direction from where the part was to where it is."""
    return best_shift(source.to(torch.float32), target.to(source.device), max_shift)
