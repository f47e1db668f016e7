"""The demo's queries, one loop for both halves: a query searched, its top hit applied to unseen
faces (as ``apply --mask``: re-localised on each face's own part mask), and each face's
before | after pair saved for the report. The pixel half ranks its own model's hits and draws
their contact sheet; the latent half ranks every family's hits and applies its own top hit under
each face's caption without the query's words (a caption that names what an edit changes undoes
it in the steps after the edit time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...paths import slug
from ..data.captions import caption_without
from ..data.faces import sample_attributes
from ..data.probes import has_probe, targets_for

REACH = 50  # how many unseen faces per face shown are searched for ones that lack the attribute
POOL = 32  # the text hits each face's previews rank (image-aware search, `search --image`)
Progress = Callable[[int], None]


def faces_for(query: str, n: int, seed0: int, reach: int = REACH) -> tuple[list[int], int]:
    """Seeds of ``n`` unseen faces for ``query``: the first from ``seed0`` on that do not show
    it yet, so that its edit can show, searching ``reach * n`` faces; then the first others fill
    in when too few lack it, or when the toy world has no probe for ``query``. Returns the seeds
    and how many of them lack it."""
    lacking = targets_for(query, n, seed0, within=reach * n) if has_probe(query) else []
    others = [s for s in range(seed0, seed0 + 2 * n) if s not in lacking]  # at least n of them
    return (lacking + others)[:n], len(lacking)


@dataclass(frozen=True)
class QueryRun:
    """What every query of one demo run shares: the catalog and CLIP, the run's folder (unseen
    faces in ``unseen/``, pictures to ``edits/`` and ``sheets/``), its index, hits per query, device."""

    cat: Any
    clip: Any
    out: Path
    index_dir: Path
    k: int
    device: str | None = None


@dataclass
class Shown:
    """A query's ranked hits and, when there is one, its top hit applied to unseen faces beside each
    face's own image-aware top hit: the before | blind | aware pictures, the blind hit's signed
    strength, each face's aware hit (id, strength, predicted gain), how many faces had their own
    part mask, and the caption each face was edited under (captioned faces only)."""

    ranked: list
    top: Any = None
    edits: list[str] = field(default_factory=list)
    aware: list[dict] = field(default_factory=list)
    strength: float = 0.0
    masked: int = 0
    prompts: list[str] = field(default_factory=list)


def search_and_show(run: QueryRun, q: str, seeds: list[int], *, fingerprint: str, name: str, steps: int | None,
                    cb: Progress, every_family: bool = False,
                    caption_for: Callable[[int], str] | None = None) -> Shown:
    """``q`` searched, ranking the model ``fingerprint``'s hits (with ``every_family``, every
    model's, the top hit still this model's), and its top hit applied to the unseen faces
    ``seeds``, each under ``caption_for(seed)`` when given; the pairs go to ``edits/<name>_<face>.png``."""
    from ...search import search

    ranked = search(run.cat, run.clip, q, k=run.k, model=None if every_family else fingerprint,
                    index_folder=run.index_dir)
    top = search(run.cat, run.clip, q, k=1, model=fingerprint, index_folder=run.index_dir) if every_family else ranked
    shown = Shown(ranked)
    if not top:
        cb(len(seeds))
        return shown
    shown.top = top[0]
    _apply_top(run, shown, q, seeds, fingerprint, name, steps, cb, caption_for)
    return shown


def _apply_top(run: QueryRun, shown: Shown, q: str, seeds: list[int], fingerprint: str, name: str, steps: int | None,
               cb: Progress, caption_for: Callable[[int], str] | None) -> None:
    """On each unseen face, with its own part mask (as ``apply --mask``) and under its caption where
    ``caption_for`` gives one: the blind top hit at its part's default strength, and the face's own
    image-aware top hit of the top :data:`POOL` (``apply --query``) at its calibrated strength;
    the two edits share the face's inversion and re-localisation."""
    from dataclasses import replace

    from ... import core
    from ...images import load_image, load_mask
    from ...models import under
    from ...rank import candidate_pool, rank_pool

    unseen = run.out / "unseen"
    cands = candidate_pool(run.cat, run.clip, q, pool=POOL, model=fingerprint, index_folder=run.index_dir,
                           device=run.device)  # loaded once, then bound to each caption
    assert cands.hits[0].id == shown.top.id, "the pool's first hit is the text ranking's top"
    shown.strength = cands.hits[0].sign * cands.defaults[0]
    for s in seeds:
        p = unseen / f"face_{s:07d}.png"
        condition = None
        if caption_for is not None:
            shown.prompts.append(caption_for(s))
            condition = {"prompt": shown.prompts[-1]}
        m = under(cands.model, condition)
        mask_file = unseen / f"{p.stem}_{shown.top.mask_label}.png"
        mask = load_mask(mask_file, m.resolution) if mask_file.exists() else None
        x = load_image(p, m.resolution, channels=m.channels)
        options = m.settings.edit_options(steps=steps)  # None: the model's
        top = rank_pool(replace(cands, model=m), run.clip, q, x, mask=mask, options=options)[0]
        edits = dict(core.edit_each(m, x, [cands.directions[0], top.direction], [shown.strength, top.signed_strength],
                                    options=options, mask=mask))
        cb(1)
        shown.masked += mask is not None
        shown.aware.append({"id": top.id, "strength": top.signed_strength, "gain": round(top.gain, 4)})
        shown.edits.append(_save_row(p, [edits[0].images[0], edits[1].images[0]], m.resolution, run.out,
                                     f"edits/{name}_{p.stem}.png"))


def _save_row(before: Path, after: list, resolution: int, out: Path, name: str) -> str:
    """The face before | each edit, enlarged four times (nearest), saved as ``out / name``; returns ``name``."""
    from PIL import Image

    from ...images import load_image, to_uint8

    row = np.concatenate([to_uint8(load_image(before, resolution))] + [to_uint8(a) for a in after], 1)
    Image.fromarray(row).resize((row.shape[1] * 4, row.shape[0] * 4), Image.NEAREST).save(out / name)
    return name


def pixel_query(run: QueryRun, q: str, chosen: tuple[list[int], int], fingerprint: str, steps: int | None,
                cb: Progress) -> dict:
    """The pixel half's entry for ``q``: its hits, their contact sheet, and its top hit applied to
    the unseen faces ``chosen`` (seeds, and how many of them lack ``q``)."""
    from ...views import search_sheet

    seeds, lacking = chosen
    shown = search_and_show(run, q, seeds, fingerprint=fingerprint, name=slug(q, "query"), steps=steps, cb=cb)
    entry = {"hits": [h.to_dict() for h in shown.ranked], "sheet": None, "edits": shown.edits}
    if shown.top is None:
        return entry
    entry["sheet"] = f"sheets/{search_sheet(run.cat, q, shown.ranked, run.out / 'sheets', clip_id=run.clip.clip_id).name}"
    top = shown.top
    entry["applied"] = {"id": top.id, "strength": shown.strength, "mask": top.mask_label, "masked": shown.masked,
                        "lacking": lacking, "aware": shown.aware}
    return entry


def latent_query(run: QueryRun, q: str, seeds: list[int], fingerprint: str, steps: int | None, cb: Progress) -> dict:
    """The latent half's entry for ``q``: every family's hits, and the latent model's top hit
    applied to the unseen faces ``seeds``, each under its own caption without the words for what
    ``q`` changes."""
    shown = search_and_show(run, q, seeds, fingerprint=fingerprint, name=f"latent_{slug(q, 'query')}", steps=steps,
                            cb=cb, every_family=True,
                            caption_for=lambda s: caption_without(sample_attributes(s), q))  # see docs/latent.md
    entry = {"both": [h.to_dict() for h in shown.ranked], "edits": shown.edits}
    if shown.top is None:
        return entry
    if shown.prompts:
        entry["prompts"] = shown.prompts
    top = shown.top
    entry["applied"] = {"id": top.id, "strength": shown.strength, "mask": top.mask_label,
                        "edit_prompt": (top.condition or {}).get("edit_prompt"), "aware": shown.aware}
    return entry
