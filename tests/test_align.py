"""Shifting a direction onto a target mask, against a brute-force oracle."""

from __future__ import annotations

import torch

from locobank.loco.align import align_to_mask, best_shift, overlap, shift


def _in_mask(v: torch.Tensor, mask: torch.Tensor) -> float:
    return float((v.pow(2).sum(0) * mask).sum())


def test_shift_moves_down_and_right_and_zero_fills():
    v = torch.arange(16.0).reshape(1, 4, 4)
    s = shift(v, 1, 2)
    assert s[0, 1, 2] == v[0, 0, 0] and s[0, 3, 3] == v[0, 2, 1]
    assert (s[0, 0] == 0).all() and (s[0, :, :2] == 0).all()
    torch.testing.assert_close(shift(shift(v, 1, 2), -1, -2)[0, :3, :2], v[0, :3, :2])
    assert (shift(v, 4, 0) == 0).all()


def test_overlap_matches_shifting_by_hand():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 12, 12, generator=g)
    mask = torch.rand(12, 12, generator=g) > 0.6
    grid = overlap(v.pow(2).sum(0), mask, 3)
    assert grid.shape == (7, 7)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            # energy pushed off the edge is lost by the shift but counted by neither
            assert abs(float(grid[dy + 3, dx + 3]) - _in_mask(shift(v, dy, dx), mask)) < 1e-3


def test_best_shift_undoes_a_displacement_and_prefers_no_move_on_ties():
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[9:12, 4:11] = True
    v = torch.randn(3, 16, 16, generator=g) * mask
    for dy, dx in [(2, -3), (-1, 0), (0, 4), (0, 0)]:
        moved, s = align_to_mask(shift(v, dy, dx), mask, 4)
        assert s == (-dy, -dx)
        torch.testing.assert_close(moved, v / v.norm() * shift(v, dy, dx).norm())
    big = torch.ones(16, 16, dtype=torch.bool)  # every shift keeps nearly all of it: no move
    big[0] = False
    assert best_shift(v.pow(2).sum(0), big, 4) == (0, 0)
    assert best_shift(torch.zeros(16, 16), mask, 4) == (0, 0)
    assert best_shift(v.pow(2).sum(0), mask, 0) == (0, 0)
