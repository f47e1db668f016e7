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
    """A query's ranked hits and, when there is one, its top hit applied to unseen faces: the
    before | after pictures, the signed strength, how many faces had their own part mask, and the
    caption each face was edited under (captioned faces only)."""

    ranked: list
    top: Any = None
    edits: list[str] = field(default_factory=list)
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
    _apply_top(run, shown, seeds, name, steps, cb, caption_for)
    return shown


def _apply_top(run: QueryRun, shown: Shown, seeds: list[int], name: str, steps: int | None, cb: Progress,
               caption_for: Callable[[int], str] | None) -> None:
    """The top hit, loaded once, applied to each unseen face with its own part mask (as
    ``apply --mask``), under the face's caption where ``caption_for`` gives one."""
    from ...apply import DirectionSpec, Prepared, apply_to_images, prepare
    from ...models import under

    top, unseen = shown.top, run.out / "unseen"
    found = prepare(run.cat, [DirectionSpec(top.id)], device=run.device)  # loaded once, then bound to each caption
    found.strengths[0] *= top.sign
    shown.strength = found.strengths[0]
    for s in seeds:
        p = unseen / f"face_{s:07d}.png"
        condition = None
        if caption_for is not None:
            shown.prompts.append(caption_for(s))
            condition = {"prompt": shown.prompts[-1]}
        prep = Prepared(under(found.model, condition), found.directions, found.strengths)
        mask = unseen / f"{p.stem}_{top.mask_label}.png"
        options = prep.model.settings.edit_options(steps=steps)  # None: the model's
        (after,) = apply_to_images(prep, [p], options=options, mask=mask if mask.exists() else None, progress=cb)
        shown.masked += mask.exists()
        shown.edits.append(_save_pair(p, after, prep.model.resolution, run.out, f"edits/{name}_{p.stem}.png"))


def _save_pair(before: Path, after, resolution: int, out: Path, name: str) -> str:
    """The face before | after, enlarged four times (nearest), saved as ``out / name``; returns ``name``."""
    from PIL import Image

    from ...images import load_image, to_uint8

    pair = np.concatenate([to_uint8(load_image(before, resolution)), to_uint8(after)], 1)
    Image.fromarray(pair).resize((pair.shape[1] * 4, pair.shape[0] * 4), Image.NEAREST).save(out / name)
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
                        "lacking": lacking}
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
                        "edit_prompt": (top.condition or {}).get("edit_prompt")}
    return entry
