"""Warm starts: where a job's subspace iterations begin, from what was found on other images.

LOCO directions transfer between images of one model: the edit basis of a part on one face lies
close to the same part's basis on the next. A start is those bases carried onto this image (the
edit basis registered from its source part onto this mask, as ``apply --mask`` registers a
direction), cut to their common principal directions; :func:`find_directions` fills it up with
fresh random rows and judges convergence as from a random start.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..loco.register import PartPrint, profiles
from ..models import LoadedModel
from .find import Start
from .transfer import register

# Rows kept from each start, per rank of its basis: its top principal directions. One per rank
# keeps the first block as wide as a cold one; on the toy model (rank 3, null rank 20, 2 held-out
# faces x eyes/mouth/hair from 3 catalog faces) two per rank took the same rounds (11.17 against
# 11.67 cold) and paid for the wider first block (tests/bench/bench_warm.py).
COLUMNS_PER_RANK = 1


def part_of(image: Tensor, mask: Tensor) -> PartPrint:
    """The part a basis was found on (mask and profiles), for registering it elsewhere."""
    cols, rows = profiles(image, mask.bool())
    return PartPrint(mask.bool().cpu(), cols, rows)


def principal_rows(rows: Tensor, k: int) -> Tensor:
    """The top ``k`` principal directions (right singular vectors) of unit-normalised ``rows``
    (n, D): what the rows have in common, without a model call."""
    flat = rows.reshape(rows.shape[0], -1).to(torch.float64)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
    if flat.shape[0] <= k:
        return flat.to(rows.dtype)
    _, _, Vh = torch.linalg.svd(flat, full_matrices=False)
    return Vh[:k].to(rows.dtype)


def start_from(model: LoadedModel, mask: Tensor, *, edit: Sequence[Tensor] = (),
               sources: Sequence[PartPrint | None] = (), null: Sequence[Tensor] = (), image: Tensor | None = None,
               rank: int | None = None, null_rank: int | None = None, per_rank: float = COLUMNS_PER_RANK) -> Start:
    """A :class:`Start` for a job on ``mask`` (this image's part; ``image`` clean, for the
    profile fit): ``edit`` bases found on other images (each (k, *state_shape) or (k, D)), each
    registered from its source part in ``sources`` (None: left where it is) onto ``mask``;
    ``null`` bases as they are (the outside's dominant directions are global). Each start keeps
    its top ``per_rank`` x ``rank`` (``null_rank``; the model's by default) principal directions."""
    rank = model.settings.rank if rank is None else int(rank)
    null_rank = model.settings.null_rank if null_rank is None else int(null_rank)
    shape = tuple(model.family.state_shape)
    edit_rows = None
    if len(edit):
        srcs = list(sources) or [None] * len(edit)
        stacked, src_rows = [], []
        for basis, src in zip(edit, srcs):
            b = basis.reshape(-1, *shape).to(model.device, torch.float32)
            stacked.append(b)
            src_rows += [src] * b.shape[0]
        moved, _, _ = register(model, torch.cat(stacked), src_rows, mask, image=image)
        edit_rows = principal_rows(moved, max(1, round(per_rank * rank)))
    null_rows = None
    if len(null) and null_rank > 0:
        null_rows = principal_rows(torch.cat([n.reshape(n.shape[0], -1).to(model.device, torch.float32)
                                              for n in null]), max(1, round(per_rank * null_rank)))
    return Start(edit_rows, null_rows)


__all__ = ["COLUMNS_PER_RANK", "part_of", "principal_rows", "start_from"]
