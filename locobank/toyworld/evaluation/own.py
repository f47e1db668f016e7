"""The catalog hit says *what*, the target's own Jacobian says *how*: measured against plain transfer.

For a query and a face that lacks it: the text search's top hit (plain transfer, as the quality
table applies it) against directions found on the face itself, in the query's part mask, at the
hit's edit time, warm-started from the hit registered onto that mask (:mod:`locobank.core.warm`):

- ``projected``: the hit projected onto the span of the face's own top directions, re-normalised;
- ``aligned``: the face's own direction closest to the hit (signed to agree with it);
- ``previewed``: the face's own direction (either sign) whose preview CLIP sees move most
  towards the query (:func:`locobank.rank.own.choose_own`, what ``apply --own`` applies).

Each is edited in full (inversion, edit, sampling) at the hit's default strength and measured with
the probes, as :mod:`.aware` measures its ways.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from ... import core
from ...models import LoadedModel
from ..data.faces import batch, face
from ..data.probes import attribute_score, part_for
from ...images import to_uint8
from ...rank.own import choose_own, own_basis
from .aware import AwareRow, Way, measure_way, models_for

WAYS = ("projected", "aligned", "previewed")  # applied plainly, as the blind hit is


def pick(vectors: torch.Tensor, hit: torch.Tensor) -> dict[str, torch.Tensor]:
    """The ``projected`` and ``aligned`` vectors from the own basis and the (registered) hit."""
    flat = vectors.flatten(1).to(torch.float64)
    h = hit.flatten().to(torch.float64)
    coeff = flat @ h
    proj = (coeff[:, None] * flat).sum(0)
    best = int(coeff.abs().argmax())
    aligned = torch.sign(coeff[best]) * flat[best]
    shape = vectors.shape[1:]
    return {"projected": (proj / proj.norm().clamp_min(1e-12)).reshape(shape).float(),
            "aligned": aligned.reshape(shape).float()}


def own_row(catalog, clip, model: LoadedModel, q: str, seeds: Sequence[int], *, index_folder=None,
            rank: int = 3, steps: int | None = None, pool: int = 32, ways: Sequence[str] = WAYS) -> AwareRow:
    """``q`` on the faces ``seeds``: the blind top hit against the face's own directions applied
    plainly (``ways`` of :data:`WAYS`; ``choice``: the own directions and the hit, the best
    previewed), and ``apply --query --mask --own``'s edit (``shipped``: the image-aware top hit of
    the top ``pool``, made the face's own direction or kept, applied with the mask)."""
    from ...rank import candidate_pool, rank_pool
    from ...rank.own import own_direction

    part = part_for(q)
    cands = candidate_pool(catalog, clip, q, pool=pool, model=model.fingerprint, index_folder=index_folder)
    hit, d, lam = cands.hits[0], cands.directions[0], cands.defaults[0]
    row = AwareRow(q, part, list(seeds), Way(), {w: Way() for w in tuple(ways) + ("choice", "shipped")})
    x = torch.from_numpy(batch(list(seeds))).to(model.device)
    for i, (s, m) in enumerate(zip(seeds, models_for(model, seeds, q, False))):
        opts = core.options_for(m, steps=steps)
        mask = torch.from_numpy(face(s).masks[part]).to(model.device)
        x_t = core.invert(m, x[i : i + 1], d.t_edit, opts.steps)
        vectors, moved = own_basis(m, x[i : i + 1], x_t, d, mask, rank)  # as rank.own finds them
        picked = pick(vectors, hit.sign * moved)
        picked["previewed"] = choose_own(m, clip, q, x_t, vectors, moved, d, lam, mask,
                                         with_hit=False).direction.vector  # the own directions alone
        picked["choice"] = choose_own(m, clip, q, x_t, vectors, moved, d, lam, mask, sign=hit.sign).direction.vector
        top = rank_pool(replace(cands, model=m), clip, q, x[i], mask=mask, options=opts)[0]
        lam_top = m.strength_for(top.hit.mask_label)
        shipped = own_direction(m, clip, q, x[i], mask, top.direction, lam_top, sign=top.sign,
                                options=opts).direction.vector
        names = [w for w in ways] + ["choice"]
        plain = _edits(m, x[i : i + 1], [replace(d, vector=v, source=None) for v in [d.vector] +
                                         [picked[w] for w in names]], [hit.sign * lam] + [lam] * len(names), opts, None)
        masked = _edits(m, x[i : i + 1], [replace(d, vector=shipped, source=None)], [lam_top], opts, mask)
        ref = plain[0]
        score0 = attribute_score(q, to_uint8(ref), face(s).attrs)
        measure_way(row.blind, hit.id, hit.sign * lam, plain[1], ref, score0, q, s, mask.cpu())
        for w, out in zip(names + ["shipped"], plain[2:] + masked[1:]):
            measure_way(row.orders[w], top.id if w == "shipped" else hit.id, lam, out, ref, score0, q, s, mask.cpu())
    return row


def _edits(model: LoadedModel, x: torch.Tensor, dirs: list, strengths: list, opts, mask) -> list[torch.Tensor]:
    """The unedited reconstruction, then each direction's full edit (``mask``: re-localised on it)."""
    return [r.images[0] for _, r in sorted(core.edit_each(model, x, dirs[:1] + dirs, [0.0] + strengths, options=opts,
                                                          mask=mask), key=lambda p: p[0])]
