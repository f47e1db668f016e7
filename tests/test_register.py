"""Registering a direction from its source part onto a target part: profiles, the per-axis fit
and the warp, against hand-built parts whose offset and size are known."""

from __future__ import annotations

import numpy as np
import torch

from locobank.loco.align import register_shift, shift
from locobank.loco.register import PartPrint, centre, fit, fit_axis, profiles, warp


def _bump(n: int, c: float, width: float) -> torch.Tensor:
    u = torch.arange(n, dtype=torch.float64)
    return torch.exp(-0.5 * ((u - c) / width) ** 2)


def test_fit_axis_recovers_a_known_offset_and_scale():
    """A profile moved by 1.25 px and shrunk to 0.8 of its width is found exactly (both lie
    on the search grid); the same profile gives (0, 1)."""
    src = _bump(32, 15.0, 2.0) + 0.5 * _bump(32, 19.0, 1.0)  # not symmetric, so the scale is seen
    tgt = _bump(32, 16.25, 1.6) + 0.5 * _bump(32, 16.25 + 4.0 * 0.8, 0.8)
    assert fit_axis(src, tgt, 15.0, 15.0, 2.0) == (1.25, 0.8)
    assert fit_axis(src, src, 15.0, 15.0, 2.0) == (0.0, 1.0)
    assert fit_axis(torch.zeros(32), tgt, 15.0, 15.0, 2.0) == (0.0, 1.0)  # no part to see: no fit


def _fit_by_loop(s, t, c_source, c_target, max_offset, scales):
    """The fit as its docstring says it, one (offset, scale) at a time: the best normalised
    correlation (to 6 digits), ties to the candidate nearest (0, 1), then to the first."""
    s, t = s.double().numpy(), t.double().numpy()
    u, tc = np.arange(len(t), dtype=np.float64), t - t.mean()
    best, key = None, None
    for d in np.arange(-max_offset, max_offset + 1e-9, 0.25 * len(t) / 32):
        for k in scales:
            w = np.interp(c_source + (u - c_target - d) / k, u, s, left=0.0, right=0.0)
            wc = w - w.mean()
            score = float(wc @ tc / (np.linalg.norm(wc) * np.linalg.norm(tc))) if np.linalg.norm(wc) > 1e-12 else -1.0
            here = (round(score, 6), -abs(d) / max_offset - abs(k - 1))
            if key is None or here > key:
                best, key = (float(d), float(k)), here
    return best


def test_fit_axis_is_the_grid_search_it_describes():
    """The whole grid at once gives what a loop over it gives, ties included (flat stretches of
    a profile tie many candidates), on 300 random profile pairs of 32 and 64 entries."""
    from locobank.loco.register import SCALES

    rng = np.random.default_rng(0)
    for i in range(300):
        n = 32 if i % 2 else 64
        src = torch.tensor(rng.random(n) * (rng.random(n) > 0.6))
        tgt = torch.roll(src, int(rng.integers(-3, 4))) * rng.uniform(0.5, 2) + torch.tensor(rng.normal(size=n)) * (i % 3) * 0.05
        c_s, c_t, reach = rng.uniform(5, n - 5), rng.uniform(5, n - 5), n / 16 * (1 + i % 2)
        scales = SCALES if i % 4 else (1.0,)
        assert fit_axis(src, tgt, c_s, c_t, reach, scales) == _fit_by_loop(src, tgt, c_s, c_t, reach, scales)


def test_warp_is_identity_at_rest_and_a_shift_by_whole_pixels():
    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))
    v[..., :3, :] = v[..., -3:, :] = v[..., :, :3] = v[..., :, -3:] = 0  # away from the border
    c = (7.5, 7.5)
    torch.testing.assert_close(warp(v, c, (0.0, 1.0), (0.0, 1.0)), v)
    torch.testing.assert_close(warp(v, c, (2.0, 1.0), (-1.0, 1.0)), shift(v, 2, -1))
    shrunk = warp(v, c, (0.0, 1.0), (0.0, 0.5))  # half as wide about the centre
    assert float(shrunk[..., :, :4].abs().sum()) == 0 and float(shrunk[..., :, 12:].abs().sum()) == 0


def test_profiles_see_the_part_against_its_surroundings_inside_the_mask():
    img = torch.full((3, 16, 16), 0.4)
    img[:, 9, 5:10] = -0.8  # a dark bar ("lips") on flat skin
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[7:12, 3:13] = True
    cols, rows = profiles(img, mask)
    assert cols.shape == (16,) and rows.shape == (16,)
    assert set(torch.nonzero(cols).flatten().tolist()) == set(range(5, 10))
    assert torch.nonzero(rows).flatten().tolist() == [9]
    img[:, 2, 2] = -1.0  # outside the mask: not seen
    torch.testing.assert_close(profiles(img, mask)[0], cols)


def test_register_then_fit_finds_a_moved_and_narrower_part():
    """A source bar 10 px wide, a target bar 8 px wide one row lower and 2 px to the right in a
    box mask moved the same way: the mask shift is (1, 2), and the fit finds the scale 0.8."""
    def part(y: int, x0: float, width: float, box_y: int, box_x: int) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.arange(32, dtype=torch.float32)
        bar = ((u >= x0) & (u < x0 + width)).float()
        img = torch.full((3, 32, 32), 0.3)
        img[:, y] -= 1.1 * bar
        m = torch.zeros(32, 32, dtype=torch.bool)
        m[box_y - 2 : box_y + 3, box_x - 6 : box_x + 6] = True
        return img, m

    simg, smask = part(20, 10.0, 10.0, 20, 15)  # pixels 10-19, centre 14.5
    timg, tmask = part(21, 13.0, 8.0, 21, 17)  # pixels 13-20, centre 16.5: 2 px right, 0.8x
    assert register_shift(smask, tmask, 4) == (1, 2)
    cols, rows = profiles(simg, smask)
    (dy, sy), (dx, sx) = fit(PartPrint(smask, cols, rows), tmask, timg, (1, 2), 2.0)
    assert (dy, dx) == (1.0, 2.0) and abs(sx - 0.8) <= 0.05, (dy, sy, dx, sx)
    assert centre(smask) == (20.0, 14.5)


def test_a_packed_mask_round_trips_and_a_broken_one_is_refused():
    import pytest

    from locobank.errors import InputError
    from locobank.images import pack_mask, unpack_mask

    m = torch.from_numpy(np.random.default_rng(0).random((5, 7)) > 0.5)
    packed = pack_mask(m)
    assert packed["shape"] == [5, 7] and torch.equal(unpack_mask(packed), m)
    for bad in ({"shape": [5, 7]}, {"shape": [50, 70], "bits": packed["bits"]}, {"shape": [5, 7], "bits": "%%"}):
        with pytest.raises(InputError, match="stored mask"):
            unpack_mask(bad)
