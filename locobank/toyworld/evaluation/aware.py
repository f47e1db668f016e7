"""Image-aware search measured with the probes: each face's own top hit (:mod:`locobank.rank`, its
previews on that face) at its calibrated strength, against the image-blind top hit (the text
ranking's) at its part's default strength, both applied the same way to the same faces.

Per query, on the first ``n_targets`` held-out faces that lack the attribute: how many faces each
moves the right way (the probe), the mean probe gain, the RMS change inside the part mask and the
locality (share of the change's energy inside it). A text-to-image model inverts and samples each
face under its caption without the query's words (as the README advises; ``full_caption``: under
its whole caption, as ``toy quality``'s search table does)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from ... import core
from ...models import LoadedModel, conditioned
from ..data.captions import caption_without
from ..data.faces import HELD_OUT_SEED, batch, caption, face
from ..data.probes import attribute_score, part_for, targets_for
from ...images import to_uint8


@dataclass
class Way:
    """One way of choosing the hit, on every face of a query."""

    hits: list[int] = field(default_factory=list)  # the hit each face got (id)
    strengths: list[float] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)  # probe change per face
    changes: list[float] = field(default_factory=list)  # RMS change inside the part mask
    localities: list[float] = field(default_factory=list)

    @property
    def moved(self) -> int:
        """Faces moved the right way."""
        return int(sum(g > 0 for g in self.gains))


@dataclass
class AwareRow:
    """A query's figures, image-blind against image-aware (``aware``: the ranking's first order;
    ``orders``: every order measured, by name)."""

    query: str
    part: str
    faces: list[int]
    blind: Way
    orders: dict[str, Way] = field(default_factory=dict)
    unit: dict[str, Way] = field(default_factory=dict)  # "blind_1x": the blind hit at its card's unit strength

    @property
    def aware(self) -> Way:
        return next(iter(self.orders.values()))

    def to_dict(self) -> dict:
        """Plain data, with the counts."""
        d = asdict(self)
        d["blind_moved"] = self.blind.moved
        d.update({f"{k}_moved": w.moved for k, w in {**self.orders, **self.unit}.items()})
        return d


def models_for(model: LoadedModel, seeds: Sequence[int], q: str, full_caption: bool) -> list[LoadedModel]:
    """The model conditioned per face (text-to-image models): on its caption without ``q``'s words,
    or its whole caption; a pixel model as it is."""
    if model.family.cond is None:
        return [model] * len(seeds)
    text = (lambda s: caption(face(s).attrs)) if full_caption else (lambda s: caption_without(face(s).attrs, q))
    return [conditioned(model, text(s)) for s in seeds]


def measure_way(way: Way, hit_id: int, strength: float, out: torch.Tensor, ref: torch.Tensor, x_score: float,
             q: str, seed: int, mask: torch.Tensor) -> None:
    """One face's edit measured into ``way``: the hit, its strength, the probe gain, the RMS change
    inside ``mask`` and the locality."""
    from ...rank import change_size

    change = (out - ref).cpu()
    way.hits.append(hit_id)
    way.strengths.append(round(float(strength), 4))
    way.gains.append(round(attribute_score(q, to_uint8(out), face(seed).attrs) - x_score, 4))
    way.changes.append(round(float(change_size(change[None], mask)[0]), 5))
    way.localities.append(round(core.locality(change, mask), 4))


def aware_row(catalog, clip, model: LoadedModel, q: str, seeds: Sequence[int], *, index_folder=None,
              pool: int = 32, masked: bool = False, steps: int | None = None, full_caption: bool = False,
              orders: Sequence[str] = ("score",)) -> AwareRow:
    """``q`` on the faces ``seeds``: the blind top hit and each face's image-aware top hit (one
    per ranking ``order``), each edited in full (with ``masked``, both ranked and applied
    re-localised on the face's part mask, as ``apply --query --mask``)."""
    from ...rank import candidate_pool, ordered, rank_pool

    part = part_for(q)
    cands = candidate_pool(catalog, clip, q, pool=pool, model=model.fingerprint, index_folder=index_folder)
    blind = cands.hits[0]
    row = AwareRow(q, part, list(seeds), Way(), {o: Way() for o in orders})
    x = torch.from_numpy(batch(list(seeds))).to(model.device)
    for i, (s, m) in enumerate(zip(seeds, models_for(model, seeds, q, full_caption))):
        opts = core.options_for(m, steps=steps)
        mask = torch.from_numpy(face(s).masks[part])
        ranked = rank_pool(replace(cands, model=m), clip, q, x[i], mask=mask if masked else None, options=opts)
        by_hit = {id(h.hit): h for h in ranked}
        in_text_order = [by_hit[id(h)] for h in cands.hits]
        tops = [in_text_order[ordered([h.score for h in in_text_order], o)[0]] for o in orders]
        lam = blind.sign * cands.defaults[0]
        unit = [] if blind.unit is None else [blind.sign * blind.unit]  # the blind hit at its card's 1x
        # the unedited reconstruction, the blind edits and the aware ones share the face's inversion
        # (and, masked, its re-localisation); the unedited one is the same with or without a mask
        outs = [r.images[0] for _, r in sorted(core.edit_each(
            m, x[i : i + 1], [cands.directions[0]] * (2 + len(unit)) + [t.direction for t in tops],
            [0.0, lam] + unit + [t.signed_strength for t in tops], options=opts, mask=mask if masked else None),
            key=lambda p: p[0])]
        ref = outs[0]
        score0 = attribute_score(q, to_uint8(ref), face(s).attrs)
        measure_way(row.blind, blind.id, lam, outs[1], ref, score0, q, s, mask)
        if unit:
            measure_way(row.unit.setdefault("blind_1x", Way()), blind.id, unit[0], outs[2], ref, score0, q, s, mask)
        for o, t, out in zip(orders, tops, outs[2 + len(unit):]):
            measure_way(row.orders[o], t.id, t.signed_strength, out, ref, score0, q, s, mask)
    return row


def aware_quality(catalog, clip, model: LoadedModel, queries: Sequence[str], *, n_targets: int = 10,
                  seed0: int | None = None, progress=None, **kw) -> list[AwareRow]:
    """:func:`aware_row` for each query on its first ``n_targets`` faces from ``seed0`` that lack it."""
    seed0 = HELD_OUT_SEED + 10_000 if seed0 is None else seed0
    rows = []
    for q in queries:
        rows.append(aware_row(catalog, clip, model, q, targets_for(q, n_targets, seed0), **kw))
        if progress:
            progress(1)
    return rows


def spread(rows: Sequence[AwareRow], way: str) -> float:
    """Coefficient of variation of the RMS change inside the mask over every face of ``rows``."""
    c = np.array([v for r in rows for v in getattr(r, way).changes])
    return float(c.std() / c.mean()) if len(c) and c.mean() > 0 else float("nan")
