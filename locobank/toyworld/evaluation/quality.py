"""Quality bars of search and apply on the toy world, measured with pixel probes (not CLIP).

Search: for each query, the top hit's mask, precision@5 (hits harvested with the right part's
mask) and attribute success (the top hit, applied with its sign to other held-out faces, moves
the probed attribute the right way). Apply: locality of a transferred edit re-projected against
each new face's own part mask, linearity across a strength sweep, and composition of two edits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ... import core
from ...images import to_uint8
from ...models import LoadedModel, conditioned
from ...views import search_sheet
from ..data.faces import HELD_OUT_SEED, batch, caption, face
from ..data.probes import attribute_score, part_for, targets_for

SEARCH_QUERIES = ("smile", "frown", "blue eyes", "brown eyes", "bigger eyes", "blond hair", "black hair", "long hair",
                  "glasses")
SWEEP = (-8.0, -4.0, 0.0, 4.0, 8.0)


@dataclass
class SearchRow:
    """One query's figures."""

    query: str
    part: str
    top_id: int | None
    top_mask: str | None
    sign: int
    precision_at_5: float
    success: int
    tried: int
    mean_gain: float  # mean probe change with the edit (in the probe's units)
    picked_success: int | None = None  # the same with each face's pick of the k hits (`apply --candidates k`)
    picked_gain: float | None = None
    best_success: int | None = None  # the same with each face's best hit by the probe: what a pick could reach


@dataclass
class Faces:
    """Held-out faces inverted once to one edit time, with their unedited reconstructions."""

    seeds: list[int]
    t_edit: int
    x_t: torch.Tensor
    ref: torch.Tensor
    x: torch.Tensor  # the clean faces
    captioned: list[LoadedModel] | None = None  # text-to-image models: each face's model under its caption

    @classmethod
    def invert(cls, model: LoadedModel, seeds: Sequence[int], t: int, steps: int) -> "Faces":
        """The faces inverted to ``t``; a text-to-image model inverts (and samples) each face under
        its own caption, as a user would edit a real image."""
        x = torch.from_numpy(batch(list(seeds))).to(model.device)
        if model.family.cond is None:  # an unconditional model: the faces go together, under no caption
            xt = core.invert(model, x, t, steps)
            return cls(list(seeds), t, xt, core.sample(model, xt, t, steps), x)
        captioned = [conditioned(model, caption(face(s).attrs)) for s in seeds]
        xt = torch.cat([core.invert(m, x[i : i + 1], t, steps) for i, m in enumerate(captioned)])
        fs = cls(list(seeds), t, xt, xt, x, captioned)
        fs.ref = fs.sample(model, xt, steps)
        return fs

    def sample(self, model: LoadedModel, x_t: torch.Tensor, steps: int) -> torch.Tensor:
        """States at the edit time sampled to images (each face under its caption, where it has one)."""
        if self.captioned is None:
            return core.sample(model, x_t, self.t_edit, steps)
        return torch.cat([core.sample(m, x_t[i : i + 1], self.t_edit, steps) for i, m in enumerate(self.captioned)])

    def scores(self, query: str, images: torch.Tensor) -> np.ndarray:
        """The probe of ``query`` on each face's image (read with that face's own geometry)."""
        return np.array([attribute_score(query, to_uint8(im), face(s).attrs) for s, im in zip(self.seeds, images)])

    def mask(self, part: str | Sequence[str]) -> list[torch.Tensor]:
        """Each face's mask of ``part`` (of the union, for several parts)."""
        parts = [part] if isinstance(part, str) else list(part)
        return [torch.from_numpy(np.logical_or.reduce([face(s).masks[p] for p in parts])) for s in self.seeds]


def monotone(curves: np.ndarray) -> np.ndarray:
    """Per row of ``curves`` (faces x strengths, strengths rising): whether the probe never falls
    from one strength to the next and ends above where it starts."""
    return (np.diff(curves, axis=1) >= 0).all(1) & (curves[:, -1] > curves[:, 0])


def _vector(catalog, model: LoadedModel, did: int) -> torch.Tensor:
    return catalog.load_vector(did, expected_fingerprint=model.fingerprint).float().to(model.device)


def search_quality(catalog, clip, model: LoadedModel, seeds: Sequence[int] | None = None, *,
                   queries: Sequence[str] = SEARCH_QUERIES, n_targets: int = 10, seed0: int | None = None,
                   index_folder=None, strength: float | None = None, steps: int | None = None, k: int = 5,
                   sheets: Path | None = None, progress=None) -> list[SearchRow]:
    """The search table: top-hit mask, precision@k and attribute success.

    With ``sheets``, each query's k hits are also drawn as a contact sheet ``<query>.png`` there,
    so the pictures always show the hits the table measured.

    Success is counted on the faces ``seeds`` or, by default, for each query on the first
    ``n_targets`` held-out faces from ``seed0`` that do not already show the attribute (a face
    that already wears glasses cannot be moved towards "glasses"). ``picked_success`` counts it
    again with each face's own choice among the k hits, as ``apply --query --candidates k``
    makes it (:func:`locobank.apply.choose`), and ``best_success`` with the hit that the
    probe itself would choose on each face. Both compare the hits found at the top hit's edit
    time (on the toy model, all of them); ``apply`` would try the others too."""
    from ...apply import choose
    from ...search import search, text_direction

    steps = steps or model.settings.steps
    cache: dict[int, Faces] = {}
    rows = []
    for q in queries:
        part = part_for(q)
        hits = search(catalog, clip, q, k=k, model=model.fingerprint, index_folder=index_folder)
        if not hits:
            rows.append(SearchRow(q, part, None, None, 0, 0.0, 0, len(seeds) if seeds is not None else n_targets, 0.0))
            continue
        if sheets is not None:
            search_sheet(catalog, q, hits, sheets, clip_id=clip.clip_id)
        top = hits[0]
        if seeds is None:
            fs = Faces.invert(model, targets_for(q, n_targets, seed0 if seed0 is not None else HELD_OUT_SEED + 10_000),
                              top.t_edit, steps)
        else:
            if top.t_edit not in cache:
                cache[top.t_edit] = Faces.invert(model, seeds, top.t_edit, steps)
            fs = cache[top.t_edit]
        plain = fs.scores(q, fs.ref)
        outs = []
        for h in hits:
            if h.t_edit != top.t_edit:
                continue  # fs is inverted to the top hit's time; hits found at another time are left out
            lam = h.sign * float(strength if strength is not None else model.strength_for(h.mask_label))
            outs.append(fs.sample(model, fs.x_t + lam * _vector(catalog, model, h.id), steps))
        G = np.stack([fs.scores(q, o) - plain for o in outs])
        gain = G[0]
        picks = choose(outs, clip, text_direction(clip, q))
        picked = G[picks, np.arange(len(fs.seeds))]
        prec = sum(h.mask_label == part for h in hits) / k
        rows.append(SearchRow(q, part, top.id, top.mask_label, top.sign, prec, int((gain > 0).sum()), len(fs.seeds),
                              float(gain.mean()), int((picked > 0).sum()), float(picked.mean()),
                              int((G.max(0) > 0).sum())))
        if progress:
            progress(1)
    return rows


@dataclass
class ApplyReport:
    """Locality on new faces per query, the linearity sweep and the composition."""

    strength: float | None  # None: each direction at its model's default for its mask label
    spill_passes: int = 0  # spill passes after the re-projection, as `apply --mask` runs them
    registered: bool = False  # directions registered from their source masks, as `apply --mask` does
    locality: dict[str, dict] = field(default_factory=dict)
    linearity: dict = field(default_factory=dict)
    composition: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain data, for ``quality.json``."""
        return asdict(self)


def _top(catalog, clip, query: str, index_folder, model: LoadedModel):
    from ...search import search

    hits = search(catalog, clip, query, k=1, model=model.fingerprint, index_folder=index_folder)
    return hits[0] if hits else None


def _relocalized(model: LoadedModel, fs: Faces, masks: list[list[torch.Tensor]], vectors: torch.Tensor,
                 null_rank: int, sources: list | None) -> torch.Tensor:
    """Per face: ``vectors`` (k, C, H, W) made local on that face, as ``apply --mask`` does: each
    with its own part mask (``masks[j][i]``: vector j, face i), registered from its source mask
    (``sources[j]``; with ``sources`` None, not), shifted onto it only if the model sets
    ``max_shift``, then re-projected off the face's null space outside the union of the masks."""
    return torch.stack([core.relocalize(model, fs.x_t[i : i + 1], fs.t_edit, [m[i] for m in masks], vectors,
                                          null_rank=null_rank, sources=sources, image=fs.x[i])[0]
                        for i in range(len(fs.seeds))])


def _source(catalog, model: LoadedModel, did: int):
    from ...apply import source_part

    return source_part(catalog.get_direction(did), model.resolution, model.channels)


class _Bars:
    """What every apply bar shares: the model's options, the faces inverted once per edit time,
    directions re-localised on each face as ``apply --mask`` does, and the spill passes."""

    def __init__(self, catalog, model: LoadedModel, seeds: Sequence[int], *, strength, steps, null_rank, passes,
                 register, sweep):
        self.catalog, self.model, self.seeds = catalog, model, seeds
        self.strength, self.steps, self.null_rank, self.passes = strength, steps, null_rank, passes
        self.register, self.sweep = register, sweep
        self.cache: dict[int, Faces] = {}

    def sources(self, *hits) -> list | None:
        return [_source(self.catalog, self.model, h.id) for h in hits] if self.register else None

    def lam(self, hit) -> float:
        return float(self.strength if self.strength is not None else self.model.strength_for(hit.mask_label))

    def faces_at(self, t: int) -> Faces:
        if t not in self.cache:
            self.cache[t] = Faces.invert(self.model, self.seeds, t, self.steps)
        return self.cache[t]

    def sample(self, fs: Faces, delta: torch.Tensor, inside: list[torch.Tensor]) -> torch.Tensor:
        """The faces edited by ``delta``, after the spill passes outside ``inside`` (one mask per face)."""
        return core.with_spill_passes(self.model, fs.t_edit, delta, torch.stack(inside), self.passes,
                                      lambda d: fs.sample(self.model, fs.x_t + d, self.steps), fs.ref)[1]

    def measure(self, q: str, hit, fs: Faces) -> tuple[dict, torch.Tensor]:
        masks = fs.mask(part_for(q))
        vector = _vector(self.catalog, self.model, hit.id)[None]
        v = _relocalized(self.model, fs, [masks], vector, self.null_rank, self.sources(hit))[:, 0]
        out = self.sample(fs, hit.sign * self.lam(hit) * v, masks)
        deltas = [(out[i] - fs.ref[i]).cpu() for i in range(len(fs.seeds))]
        loc = [core.locality(d, masks[i]) for i, d in enumerate(deltas)]
        spill = [float(d.pow(2).sum(0)[~masks[i]].sum()) for i, d in enumerate(deltas)]
        gain = fs.scores(q, out) - fs.scores(q, fs.ref)
        return {"mean": float(np.mean(loc)), "worst": float(np.min(loc)), "median": float(np.median(loc)),
                "at_least_85": int(sum(x >= 0.85 for x in loc)), "n": len(loc),
                "moved_right_way": int((gain > 0).sum()), "per_face": [round(x, 4) for x in loc],
                "spill_energy_mean": float(np.mean(spill))}, v

    def composed(self, fs: Faces, hits: tuple, qs: Sequence[str]) -> dict:
        """Two edits, each re-localised on its own part, applied alone and together on ``fs``."""
        union = fs.mask([part_for(q) for q in qs])
        own = [fs.mask(part_for(q)) for q in qs]
        vs = torch.stack([h.sign * _vector(self.catalog, self.model, h.id) for h in hits])
        P = _relocalized(self.model, fs, own, vs, self.null_rank, self.sources(*hits))  # (faces, 2, C, H, W)
        ls = [self.lam(h) for h in hits]
        both = self.sample(fs, ls[0] * P[:, 0] + ls[1] * P[:, 1], union)
        figures, ok = {}, None
        for j, q in enumerate(qs):
            alone = self.sample(fs, ls[j] * P[:, j], union)
            plain = fs.scores(q, fs.ref)
            g_solo, g_both = fs.scores(q, alone) - plain, fs.scores(q, both) - plain
            r = g_both / np.where(np.abs(g_solo) < 1e-9, np.nan, g_solo)
            within = np.abs(r - 1) <= 0.2
            ok = within if ok is None else ok & within
            figures[q] = {"median_ratio": float(np.nanmedian(r)), "within_20pct": int(np.nansum(within)),
                          "mean_ratio": float(g_both.mean() / g_solo.mean()) if abs(g_solo.mean()) > 1e-9 else None,
                          "solo_mean_gain": float(g_solo.mean()), "both_mean_gain": float(g_both.mean()),
                          "solo_gain": g_solo.round(4).tolist(), "both_gain": g_both.round(4).tolist()}
        loc = [core.locality((both[i] - fs.ref[i]).cpu(), union[i]) for i in range(len(fs.seeds))]
        return {"per_query": figures, "both_within_20pct": int(ok.sum()), "n": len(fs.seeds),
                "locality_union_mean": float(np.mean(loc)), "locality_union_worst": float(np.min(loc)),
                "at_least_80": int(sum(x >= 0.8 for x in loc))}

    def linear(self, q: str, fs: Faces, v: torch.Tensor) -> dict:
        """The probe of ``q`` across the sweep on each face of ``fs`` (``v`` re-localised on each)."""
        inside = fs.mask(part_for(q))
        curves = np.stack([fs.scores(q, self.sample(fs, s * v, inside)) for s in self.sweep], 1)  # faces x strengths
        return {"monotone": int(monotone(curves).sum()), "n": len(fs.seeds),
                "probe_mean": curves.mean(0).round(4).tolist(), "per_face": curves.round(4).tolist()}


def apply_quality(catalog, clip, model: LoadedModel, seeds: Sequence[int], *, index_folder=None,
                  strength: float | None = None, steps: int | None = None, null_rank: int | None = None,
                  locality_queries: Sequence[str] = ("smile", "blue eyes", "blond hair"),
                  compose: tuple[str, str] = ("smile", "blond hair"), sweep: Sequence[float] = SWEEP,
                  lacking_seed0: int | None = None, spill_passes: int | None = None, register: bool = True,
                  progress=None) -> ApplyReport:
    """Apply the top hits of a few queries to the unseen faces ``seeds`` and measure the bars.

    With ``lacking_seed0``, each query's locality is also measured on as many faces from that
    seed on that lack the attribute (``"lacking"``): on a face that already has blond hair a
    "blond hair" edit changes almost nothing inside the mask, and its locality share is then
    a ratio of two small numbers (``spill_energy_mean`` gives the change outside the mask). So
    is the composition, on faces that lack both attributes (where a solo edit barely moves its
    probe, a face's within-20% ratio is one of two small numbers too), and the linearity, on
    faces that lack the first one (a face that already smiles has the least room to smile more).

    Every edit runs ``spill_passes`` spill passes outside its masks (default: the model's, as
    `apply --mask` does; :func:`locobank.core.spill_pass`), after each direction is registered
    from the mask it was harvested with onto each face's mask (unless ``register`` is false)."""
    steps = steps or model.settings.steps
    null_rank = null_rank if null_rank is not None else model.settings.null_rank
    passes = model.settings.spill_passes if spill_passes is None else int(spill_passes)
    rep = ApplyReport(strength, passes, register)
    bars = _Bars(catalog, model, seeds, strength=strength, steps=steps, null_rank=null_rank, passes=passes,
                 register=register, sweep=sweep)
    solo, lacking = _locality_bars(rep, bars, clip, index_folder, locality_queries, lacking_seed0, progress)
    _linearity_bar(rep, bars, compose[0], solo, lacking, progress)
    _composition_bar(rep, bars, compose, solo, lacking_seed0, progress)
    return rep


def _locality_bars(rep: ApplyReport, bars: _Bars, clip, index_folder, locality_queries, lacking_seed0, progress):
    """Each query's top hit on the faces (and on faces that lack it): locality, spill, probe gain."""
    solo: dict[str, tuple] = {}
    lacking: dict[str, tuple] = {}  # query -> (faces that lack it, the direction re-localised on each)
    for q in locality_queries:
        hit = _top(bars.catalog, clip, q, index_folder, bars.model)
        if hit is None:
            continue
        fs = bars.faces_at(hit.t_edit)
        figures, v = bars.measure(q, hit, fs)
        rep.locality[q] = {"id": hit.id, "sign": hit.sign, "mask": hit.mask_label, "part": part_for(q),
                           "strength": bars.lam(hit), "seeds": list(bars.seeds), **figures}
        if lacking_seed0 is not None:
            ts = targets_for(q, len(bars.seeds), lacking_seed0)
            lf = Faces.invert(bars.model, ts, hit.t_edit, bars.steps)
            figures, lv = bars.measure(q, hit, lf)
            rep.locality[q]["lacking"] = {"seeds": ts, **figures}
            lacking[q] = (lf, lv)
        solo[q] = (hit, fs, v)
        if progress:
            progress(1)
    return solo, lacking


def _linearity_bar(rep: ApplyReport, bars: _Bars, first: str, solo: dict, lacking: dict, progress) -> None:
    """The first composed query's probe across the sweep, on the faces and on those that lack it."""
    if first in solo:
        hit, fs, v = solo[first]  # re-localised on each face, as for its locality
        rep.linearity = {"query": first, "id": hit.id, "sweep": list(bars.sweep),
                         **bars.linear(first, fs, hit.sign * v)}
        if first in lacking:
            lf, lv = lacking[first]
            rep.linearity["lacking"] = {"seeds": lf.seeds, **bars.linear(first, lf, hit.sign * lv)}
        if progress:
            progress(1)


def _composition_bar(rep: ApplyReport, bars: _Bars, compose, solo: dict, lacking_seed0, progress) -> None:
    """Two queries' hits alone and together, on the faces and on faces that lack both."""
    if all(q in solo for q in compose):
        (ha, fa, _), (hb, _, _) = solo[compose[0]], solo[compose[1]]
        if ha.t_edit == hb.t_edit:
            rep.composition = {"queries": list(compose), "ids": [ha.id, hb.id],
                               "strengths": [bars.lam(ha), bars.lam(hb)], **bars.composed(fa, (ha, hb), compose)}
            if lacking_seed0 is not None:
                ts = targets_for(compose, len(bars.seeds), lacking_seed0)
                lf = Faces.invert(bars.model, ts, ha.t_edit, bars.steps)
                rep.composition["lacking"] = {"seeds": ts, **bars.composed(lf, (ha, hb), compose)}
        if progress:
            progress(1)
