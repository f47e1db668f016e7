"""``apply --query`` on image files, image-aware: each image's hits ranked by their previews on that
image (:mod:`locobank.rank`), each at the strength calibrated there, and the top one applied (or,
with ``candidates`` N, the top N edited in full and the one CLIP sees furthest towards the text
kept)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import ArgumentError
from ..progress import Progress
from .best_of import Candidate
from .prepare import Prepared
from .request import ApplyRequest


def ranked_candidates(catalog, clip, req: ApplyRequest,
                      progress: Progress | None = None) -> tuple[int, list[list[Candidate]]]:
    """For each of ``req``'s images, its top ``req.candidates`` hits for ``req.query`` as ranked by
    their previews on it, each prepared at its strength along its sign: the calibrated one, or
    ``req.strength`` as given (a negative one reverses the hit). The pool is the top ``req.pool``
    text hits of one model, loaded once for all images. Returns (the pool's size, the candidates)."""
    from ..rank import candidate_pool, masks_per_image, rank_pool

    if req.pool < req.candidates:
        raise ArgumentError(f"candidates ({req.candidates}) are taken from the ranked pool: make pool at least as "
                            f"large (it is {req.pool})", params=("candidates", "pool"))
    pool = candidate_pool(catalog, clip, req.query, pool=req.pool, domain=req.domain, condition=req.condition(),
                          model_override=req.model_override, device=req.device)
    options = req.edit_options(pool.model)
    size = None if req.strength is None else abs(req.strength)
    flip = -1.0 if req.strength is not None and req.strength < 0 else 1.0
    out = []
    masks = [req.masks_for(p)[0] for p in req.images] if req.per_image_masks() else req.masks
    for image, mask in zip(req.images, masks_per_image(masks, len(req.images))):
        inverted: list = []  # the ranking's inversions: a masked edit on the same grid starts from them
        ranked = rank_pool(pool, clip, req.query, image, mask=mask, domain=req.domain, strength=size,
                           resize=req.resize, options=options, batch=req.batch, preview_steps=req.preview_steps,
                           refine=req.refine, precision=req.preview_precision, progress=progress, inverted=inverted)
        top = ranked[: req.candidates]
        if req.own:
            out.append([own_candidate(pool.model, clip, req, image, mask, h, options, size, flip) for h in top])
        else:
            out.append([Candidate(h.hit, Prepared(pool.model, [h.direction], [flip * h.signed_strength]), h,
                                  inverted=inverted) for h in top])
    return len(pool.hits), out


def own_candidate(model, clip, req: ApplyRequest, image, mask, h, options, size: float | None,
                  flip: float) -> Candidate:
    """The ranked hit ``h`` made the image's own direction in its mask (:mod:`locobank.rank.own`: its
    own directions there and the hit itself, the best previewed), at the hit's part's default strength
    (``size`` when given), in place of the hit's vector."""
    from ..rank import as_image, as_mask
    from ..rank.own import own_direction

    strength = size if size is not None else model.strength_for(h.hit.mask_label)
    own = own_direction(model, clip, req.query, as_image(model, image, req.resize), as_mask(model, mask, req.resize),
                        h.direction, strength, sign=h.sign, options=options, domain=req.domain)
    return Candidate(h.hit, Prepared(model, [own.direction], [flip * own.strength]), h, own)


def one_image(req: ApplyRequest, index: int) -> ApplyRequest:
    """``req`` narrowed to its ``index``-th image, written where the whole request would write it."""
    image = req.images[index]
    if len(req.images) == 1:
        return req
    name = f"{image.stem}_sweep.png" if req.sweep is not None else f"{image.stem}.png"
    return replace(req, images=[image], out=Path(req.out) / name, masks=req.masks_for(image))


def _own_what(c: Candidate) -> str:
    """Which of ``--own``'s candidates was applied."""
    if c.own.is_hit:
        return f"#{c.hit.id} itself ({'+' if c.hit.sign > 0 else '-'}v; it previewed better than the image's own directions)"
    return f"the image's own direction in the mask, pointed to by #{c.hit.id} (|cos| with it {c.own.alignment:.2f})"


def ranked_note(image: Path, cands: list[Candidate], pooled: int) -> str:
    """What the ranking chose for one image: the top hit (or the top N), its strength and
    predicted gain."""
    shown = ", ".join(f"#{c.hit.id} ({'+' if c.hit.sign > 0 else '-'}v) at {c.prep.strengths[0]:+.3g}"
                      f"{'' if c.ranked.calibrated else ' (as given)'}, predicted gain {c.ranked.gain:+.2f}"
                      if c.own is None else
                      f"{_own_what(c)}, at {c.prep.strengths[0]:+.3g}, predicted gain {c.own.gain:+.2f}"
                      for c in cands)
    return f"{image.name}: ranked {pooled} hits by their previews on it: {shown}"
