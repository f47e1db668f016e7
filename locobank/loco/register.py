"""Registering a direction from the part it was found on to the same part on another image.

A LOCO direction is drawn on the pixels of its source image's part: a smile direction found on a
wide mouth raises corners where that mouth's corners were. On a new image the part sits
elsewhere and has another size. After the whole-pixel shift that lays the source mask over the
target mask (:func:`locobank.loco.align.register_shift`), each axis is fitted from the part's
*profiles*: the column and row sums, inside the mask, of how far each pixel's colour is from the
mask's median colour (the lips against the skin, the irises against the eye whites). The offset
and scale that best match the source's profile to the target's (normalised correlation over a
small grid) give a sub-pixel, axis-aligned warp of the direction. A scale is fitted only on the
axes asked for: a part's profile along an axis on which the edited attribute itself changes it
(a smile's curve, vertically) says less about the part's size there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SCALES = np.round(np.arange(0.6, 1.4001, 0.05), 4)  # part sizes from 0.6x to 1.4x the source's
OFFSET_STEP = 0.25  # pixels of a 32-pixel grid; scaled with the resolution


@dataclass
class PartPrint:
    """What a direction keeps of its source part: the mask and its two profiles."""

    mask: Tensor  # (H, W) bool
    cols: Tensor | None = None  # (W,) float
    rows: Tensor | None = None  # (H,) float


def profiles(image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Column and row profiles of the part under ``mask`` (H, W) in ``image`` (C, H, W): sums of
    each pixel's colour distance from the median colour inside the mask."""
    m = mask.to(image.device).bool()
    med = image[:, m].median(dim=1).values
    feat = (image - med[:, None, None]).norm(dim=0) * m
    return feat.sum(0).float().cpu(), feat.sum(1).float().cpu()


def centre(mask: Tensor) -> tuple[float, float]:
    """The mask's centroid (y, x) in pixels."""
    m = mask.float().cpu()
    ys, xs = torch.arange(m.shape[0], dtype=torch.float32), torch.arange(m.shape[1], dtype=torch.float32)
    total = m.sum().clamp_min(1e-9)
    return float((m.sum(1) * ys).sum() / total), float((m.sum(0) * xs).sum() / total)


def fit_axis(source: Tensor, target: Tensor, c_source: float, c_target: float,
             max_offset: float, scales=SCALES) -> tuple[float, float]:
    """The (offset, scale) that best maps the ``source`` profile onto ``target``: the source
    value at ``c_source + (u - c_target - offset) / scale`` is compared with the target at ``u``.

    Offsets run over +-``max_offset`` in steps of :data:`OFFSET_STEP` (of a 32-pixel grid), scales
    over ``scales`` (:data:`SCALES`; ``(1.0,)`` fits the offset alone). The best normalised
    correlation wins, the candidate nearest to (0, 1) on ties. A flat profile (no part to see)
    gives (0, 1)."""
    s, t = source.double().numpy(), target.double().numpy()
    n = len(t)
    tc = t - t.mean()
    if np.linalg.norm(tc) < 1e-9 or np.ptp(s) < 1e-9:
        return 0.0, 1.0
    step = OFFSET_STEP * n / 32
    offsets = np.arange(-max_offset, max_offset + 1e-9, step)
    ks = np.asarray(scales, dtype=np.float64)
    u = np.arange(n, dtype=np.float64)
    d, k = np.repeat(offsets, len(ks)), np.tile(ks, len(offsets))  # every (offset, scale), offset-major
    w = np.interp(c_source + (u[None] - c_target - d[:, None]) / k[:, None], u, s, left=0.0, right=0.0)
    wc = w - w.mean(1, keepdims=True)
    nw = np.linalg.norm(wc, axis=1)
    flat = nw <= 1e-12
    score = np.where(flat, -1.0, (wc @ tc) / np.where(flat, 1.0, nw * np.linalg.norm(tc)))
    rounded = np.round(score, 6)
    near = -np.abs(d) / max(max_offset, 1e-9) - np.abs(k - 1)  # ties go to the candidate nearest (0, 1)
    best = np.flatnonzero(rounded == rounded.max())
    i = int(best[np.argmax(near[best])])  # the first of equal keys, as a loop in that order would keep
    return float(d[i]), float(k[i])


def warp(v: Tensor, c: tuple[float, float], y: tuple[float, float], x: tuple[float, float]) -> Tensor:
    """``v`` (C, H, W) resampled (bilinear, zero outside): scaled about ``c`` (y, x), then moved
    by the offsets; ``y`` and ``x`` are (offset, scale) per axis."""
    H, W = v.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    sy = c[0] + (yy - c[0] - y[0]) / y[1]
    sx = c[1] + (xx - c[1] - x[0]) / x[1]
    grid = torch.stack([(sx + 0.5) / W * 2 - 1, (sy + 0.5) / H * 2 - 1], -1)[None].to(v.device, torch.float32)
    return F.grid_sample(v[None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].to(v.dtype)


SCALE_AXES = ("xy", "x", "y", "none")


def fit(source: PartPrint, target_mask: Tensor, target_image: Tensor, shift: tuple[int, int],
        max_offset: float, scale_axes: str = "xy") -> tuple[tuple[float, float], tuple[float, float]]:
    """Per axis (offset, scale) on top of the whole-pixel ``shift`` (dy, dx), from the source's
    profiles and the target image's: ((dy, sy), (dx, sx)). Offsets are fitted on both axes,
    scales only on those in ``scale_axes`` (one of :data:`SCALE_AXES`)."""
    if scale_axes not in SCALE_AXES:
        raise ValueError(f"scale_axes must be one of {SCALE_AXES}, got {scale_axes!r}")
    cols, rows = profiles(target_image, target_mask)
    cy, cx = centre(source.mask)
    y = fit_axis(source.rows, rows, cy, cy + shift[0], max_offset, SCALES if "y" in scale_axes else (1.0,))
    x = fit_axis(source.cols, cols, cx, cx + shift[1], max_offset, SCALES if "x" in scale_axes else (1.0,))
    return (shift[0] + y[0], y[1]), (shift[1] + x[0], x[1])
