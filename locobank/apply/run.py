"""Running an :class:`~locobank.apply.request.ApplyRequest`: ids or a query (the top hit, or each
image's best of N), a plain edit or a sweep, the files written and what to tell the user."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..images import save_image, to_uint8
from ..progress import Progress, stage
from .best_of import Candidate, apply_best_of, query_candidates
from .edits import apply_to_images
from .prepare import Prepared, prepare
from .ranked import one_image, ranked_candidates, ranked_note
from .request import ApplyOutcome, ApplyRequest
from .settle import sweep


def run_apply(catalog, req: ApplyRequest, progress: Progress | None = None) -> ApplyOutcome:
    """Apply what ``req`` asks to its images and write the results under ``req.out``. A query on
    image files ranks its hits on each image by their previews there (:mod:`.ranked`); ``blind``,
    or a prompt's samples, take the text ranking."""
    if req.ranks_per_image():
        return _run_ranked(catalog, req, progress)
    if req.image_masks() is not None and (req.sweep is not None or req.candidates > 1):
        return _one_by_one(catalog, req, progress)
    notes: list[str] = []
    cands: list[Candidate] | None = None
    clip = text = None
    if req.query:
        from ..clip import load_clip
        from ..search import text_direction

        clip = load_clip(req.clip, device=req.device)
        cands = query_candidates(catalog, clip, req.query, k=req.candidates, domain=req.domain,
                                 default_strength=req.strength, model_override=req.model_override, device=req.device,
                                 condition=req.condition())
        notes.append(query_note(req.query, req.candidates, cands))
        pool = [c.prep for c in cands]
        text = text_direction(clip, req.query, req.domain) if len(pool) > 1 else None
    else:
        pool = [prepare(catalog, req.specs, default_strength=req.strength, model_override=req.model_override,
                        device=req.device, condition=req.condition())]
    notes += condition_notes(req, pool[0].model)
    many = len(req.sources()) > 1
    if many:
        req.out.mkdir(parents=True, exist_ok=True)
    run = _run_sweep if req.sweep is not None else _run_edit
    written, kept, shifts = run(req, pool, cands, clip, text, progress, notes)
    if req.masks:
        notes += relocalised_notes(kept, req.register, req.spill_passes, shifts[0] if shifts and not many else None)
    return ApplyOutcome(written, notes)


def _run_ranked(catalog, req: ApplyRequest, progress: Progress | None) -> ApplyOutcome:
    """Each image edited by its own top hit (or best of its top N), at its calibrated strength."""
    from ..clip import load_clip
    from ..search import text_direction

    clip = load_clip(req.clip, device=req.device)
    pooled, per_image = ranked_candidates(catalog, clip, req, progress)
    text = text_direction(clip, req.query, req.domain) if req.candidates > 1 else None
    notes = [f"query {req.query!r}: each image's hits ranked by their previews on it"]
    notes += condition_notes(req, per_image[0][0].prep.model)
    if len(req.images) > 1:
        req.out.mkdir(parents=True, exist_ok=True)
    run = _run_sweep if req.sweep is not None else _run_edit
    written = []
    for i, cands in enumerate(per_image):
        notes.append(ranked_note(req.images[i], cands, pooled))
        files, prep, shifts = run(one_image(req, i), [c.prep for c in cands], cands, clip, text, progress, notes)
        written += files
        if req.masks:
            here = [c.prep.directions[0].name for c in cands if c.own is not None]
            notes += relocalised_notes(prep, req.register, req.spill_passes, shifts[0] if shifts else None, here)
    return ApplyOutcome(written, notes)


def _one_by_one(catalog, req: ApplyRequest, progress: Progress | None) -> ApplyOutcome:
    """Each image with its own masks, as a request of its own (sweeps, and the best of a blind
    query's candidates, with a mask pattern); the notes said once."""
    req.out.mkdir(parents=True, exist_ok=True)
    written, notes = [], []
    for i in range(len(req.images)):
        done = run_apply(catalog, one_image(req, i), progress)
        written += done.written
        notes += [n for n in done.notes if n not in notes]
    return ApplyOutcome(written, notes)


def _pick(req, pool, clip, text, progress, label: str, shifts=None, inverted=None):
    """Each image's best of the candidates (with ``shifts``, the edits too; ``inverted``: each image's
    inversions made already)."""
    update = stage(progress, label, len(req.sources()) * len(pool))
    return apply_best_of(pool, clip, text, req.sources(), options=req.edit_options(pool[0].model),
                         mask=req.mask_arg(), resize=req.resize, batch=req.batch, progress=update, shifts=shifts,
                         inverted=inverted)


def _run_edit(req, pool, cands, clip, text, progress, notes):
    many, shifts = len(req.sources()) > 1, []
    if len(pool) > 1:
        edited, picks = _pick(req, pool, clip, text, progress, f"apply {len(pool)} hits, keep the best", shifts,
                              _ranked_inversion(req, cands))
        notes.append(chosen_note(cands, picks))
        prep = kept(pool, picks)
    else:
        prep = pool[0]
        each = req.image_masks()
        edited = apply_to_images(prep, req.sources(), options=req.edit_options(prep.model),
                                 mask=req.mask_arg() if each is None else None, image_masks=each,
                                 resize=req.resize, orthogonalize=req.orthogonalize, batch=req.batch,
                                 progress=stage(progress, "apply", len(req.sources())), shifts=shifts,
                                 inverted=_ranked_inversion(req, cands))
    written = [save_image(img, req.out / f"{stem(p)}.png" if many else req.out)
               for p, img in zip(req.sources(), edited)]
    desc = ", ".join(f"{d.name}:{s:g}" for d, s in zip(prep.directions, prep.strengths))
    n = len(req.sources())
    what = f"{n} sample{'s' if many else ''} of the prompt" if req.generate else f"{n} image{'s' if many else ''}"
    if len(pool) > 1 and len(prep.directions) > 1:
        notes.append(f"applied the kept one of {desc} to each of {what} -> {req.out}")
    else:
        notes.append(f"applied {desc} to {what} -> {req.out}")
    return written, prep, shifts


def _ranked_inversion(req: ApplyRequest, cands: list[Candidate]) -> list | None:
    """The ranking's inversion of the one image edited (None for several, or none kept)."""
    return [cands[0].inverted] if len(req.sources()) == 1 and cands and cands[0].inverted else None


def _run_sweep(req, pool, cands, clip, text, progress, notes):
    from PIL import Image

    many, shifts = len(req.sources()) > 1, []
    picks = [0] * len(req.sources())
    prep = pool[0]
    if len(pool) > 1:  # each image's pick among its edits at the candidates' own strengths
        picks = _pick(req, pool, clip, text, progress, f"try {len(pool)} hits")[1]
        notes.append(chosen_note(cands, picks))
        prep = kept(pool, picks)
    update = stage(progress, "sweep", len(req.sources()))
    written = []
    for p, j in zip(req.sources(), picks):
        sign = cands[j].hit.sign if cands is not None else 1  # a query's hit sweeps with its sign
        strip = sweep(pool[j], p, [sign * v for v in req.sweep], options=req.edit_options(pool[j].model),
                      mask=req.mask_arg(), resize=req.resize, shifts=shifts)
        target = req.out / f"{stem(p)}_sweep.png" if many else req.out
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate([to_uint8(s) for s in strip], 1)).save(target)
        written.append(target)
        update(1)
    values = ", ".join(f"{v:g}" for v in req.sweep)
    notes.append(f"wrote {len(req.sources())} sweep strip{'s' if many else ''} ({values}) to {req.out}")
    return written, prep, shifts


def stem(source) -> str:
    """The output name of an image file or of a seed's sample."""
    return f"seed{source}" if isinstance(source, int) else source.stem


def condition_notes(req: ApplyRequest, model) -> list[str]:
    """What a text-to-image model was conditioned on, so the output can be reproduced."""
    fam = model.family.cond
    if fam is None:  # an unconditional model
        return []
    neg = f", negative {fam.negative_prompt!r}" if fam.negative_prompt else ""
    how = f"generated from seed{'s' if len(req.generate) > 1 else ''} {', '.join(map(str, req.generate))}" \
        if req.generate else "inverted and sampled"
    empty = " (no prompt given: the empty prompt)" if req.prompt is None else ""
    return [f"{how} under the prompt {fam.prompt!r}{empty}{neg}, guidance {fam.guidance:g}"]


def kept(pool: list[Prepared], picks: list[int]) -> Prepared:
    """The candidates some image kept, as one Prepared for the summary lines."""
    used = sorted(set(picks))
    return Prepared(pool[0].model, [pool[j].directions[0] for j in used], [pool[j].strengths[0] for j in used])


def query_note(query: str, asked: int, cands: list[Candidate]) -> str:
    """Which hit (or hits) a query found."""
    if len(cands) == 1:
        h = cands[0].hit
        only = f" (the only hit of its model; {asked} asked for)" if asked > 1 else ""
        return (f"query {query!r}: direction {h.id} (match {h.match:.3f}, score {h.score:.3f}, "
                f"sign {'+' if h.sign > 0 else '-'}){only}")
    listed = ", ".join(f"#{c.hit.id} ({'+' if c.hit.sign > 0 else '-'}, match {c.hit.match:.3f})" for c in cands)
    fewer = f" ({asked} asked for; the index holds no more of the top hit's model)" if len(cands) < asked else ""
    return f"query {query!r}: {len(cands)} candidates{fewer}: {listed}"


def chosen_note(cands: list[Candidate], picks: list[int]) -> str:
    """Which candidate each image kept, most kept first."""
    counts = sorted(((picks.count(j), j) for j in set(picks)), reverse=True)
    return "kept per image: " + ", ".join(f"#{cands[j].hit.id} ({'+' if cands[j].hit.sign > 0 else '-'}v) on "
                                          f"{n} image{'s' if n != 1 else ''}" for n, j in counts)


def relocalised_notes(prep: Prepared, register: bool, spill_passes: int | None, moves: list | None,
                      here: Sequence[str] = ()) -> list[str]:
    """How the directions were re-localised on the mask: registered (``moves``: one image's
    ((dy, dx), (sy, sx)) per direction; None for several images), re-projected, spill passes.
    ``here`` names the directions found on this image's own mask (``--own``): nothing to register."""
    out = []
    n = prep.model.settings.spill_passes if spill_passes is None else spill_passes
    passes = f", {n} spill pass{'es' if n != 1 else ''}" if n else ""
    unknown = [d.name for d in prep.directions if d.source is None and d.name not in here]
    found = [d.name for d in prep.directions if d.name in here]
    if found:
        out.append(f"made on this image's own mask (--own), so not registered again: {', '.join(found)}")
    if register and unknown:
        out.append(f"not registered (the mask it was harvested with is not recorded, nor its file there): "
                   f"{', '.join(unknown)}")
    if moves and any(m != ((0, 0), (1, 1)) for m in moves):
        moved = "; ".join(f"{d.name} by ({dy:+.2f}, {dx:+.2f}) px (down, right), scaled ({sy:.2f}, {sx:.2f}) "
                          f"(height, width)" for d, ((dy, dx), (sy, sx)) in zip(prep.directions, moves))
        out.append(f"re-localised on the mask: moved {moved}; then re-projected{passes}")
    else:
        out.append(f"re-localised on the mask: re-projected{passes}")
    return out
