"""Image-aware search: the text search's hits re-ranked by what their previews do on *this* image.

Search ranks directions by their mean effect on the images they were found and probed on; a
direction's effect depends on the image it lands on. So text search only narrows the pool (the top
``pool`` hits, one model's directions), and each candidate is previewed on the user's image
(:mod:`.preview`) and scored on what CLIP sees change there:

- ``gain``: the cosine between the change of the image embedding, ``E(preview) - E(unedited)``,
  and the query's text direction: whether the edit goes where the query says;
- ``locality``: the share of the change's energy inside the mask (1 without a mask);
- ``lost``: ``1 - cos(E(preview), E(unedited))``, how much of the image's embedding the edit
  gives up: an edit that breaks the face loses a lot of it.

How the previews order the hits (``order``):

- ``"score"``: by ``score = gain * locality - BREAK_WEIGHT * lost``;
- ``"verify"``: the text search's order kept, but a hit whose preview does not move this image
  towards the query (``score`` at most :data:`VERIFY_FLOOR`) goes behind every hit whose preview
  does: the best text hit that works on this image comes first.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .. import core
from ..errors import ArgumentError, InputError
from ..images import load_image, load_mask
from ..models import LoadedModel
from ..progress import Progress, stage
from ..settings import EditOptions
from .preview import Previewed, narrowed, preview_pool, preview_states

# How much a unit of embedding similarity lost costs against a unit of directional gain. A first,
# untuned value: in the first runs on unseen toy faces (both models, calibrated strengths) ``lost``
# ran from 0.002 to 0.1 and ``gain`` from -0.5 to 0.7, so it weighs in only when an edit moves the
# embedding a lot; whether that tracks broken faces is not measured yet.
BREAK_WEIGHT = 1.0
ORDERS = ("score", "verify")
VERIFY_FLOOR = 0.0  # order "verify": a preview whose score is at most this does not count as working
# The second look: REFINE_TOP hits, the text search's first and the first of the one-step ranking
# (second_look), are previewed again, sampled down in REFINE_STEPS DDIM steps from the same inverted
# state, re-calibrated and re-ordered among themselves. On the quality table's faces, one-step
# previews (the posterior mean) rank a face's 32 candidates unlike their full edits do (median
# Spearman 0.77 pixel, 0.51 latent); 5-step ones as they do (0.97, 0.86). Looking again at the first
# 2 of the one-step ranking moved 88 faces of 90 on the pixel model (86 without) and 76 on the latent
# one (72); at 1, fewer; at 3 or 5, no more. A one-step preview can also pass over a text hit that
# works: on held-out faces of our own, giving the text search's first hit its closer look whatever
# its one-step preview said moved 77 latent faces instead of 73 (86 pixel faces either way), and the
# table's as many (docs/image_search.md). Doing it for 2 hits only keeps the ranking's cost.
REFINE_TOP = 2
REFINE_STEPS = 5
# The RMS change inside the mask (pixels in [-1, 1]) that the ranking calibrates each hit's strength
# to: a third more than one unit of strength (CHANGE_TARGET, the size of ``ID:1x``), so that the
# change shows. Measured with the second look (docs/image_search.md), against 0.15: on the quality
# table's faces 8 of 9 latent queries at 8 faces of 10 or more instead of 6 (77 faces moved instead
# of 76), on held-out faces of our own 8 instead of 7 (78 against 77); the pixel model's counts
# unchanged, the spread of the change lower on both.
RANK_TARGET = 0.20


@dataclass
class ImageHit:
    """A search hit as previewed on one image: how far it moves the image towards the query
    (``gain``), how local the change is, how much it breaks (``lost``), the combined ``score``
    it is ranked by, and the strength it was previewed at (``strength`` along ``sign * v``)."""

    hit: object  # locobank.search.Hit
    gain: float
    locality: float
    lost: float
    score: float
    strength: float
    change: float  # RMS change of the preview inside the mask (pixels in [-1, 1])
    calibrated: bool  # the strength was calibrated (not given)
    preview: Tensor = field(repr=False)  # (C, H, W) in [-1, 1]
    unedited: Tensor = field(repr=False)  # (C, H, W): the unedited state, previewed the same way
    direction: core.Direction | None = field(default=None, repr=False)  # the hit's vector, loaded
    steps: int = 1  # DDIM steps its preview took from the edit time (1: the posterior mean)

    @property
    def id(self) -> int:
        return int(self.hit.id)

    @property
    def sign(self) -> int:
        return int(self.hit.sign)

    @property
    def signed_strength(self) -> float:
        """The strength to pass to ``locobank apply ID:STRENGTH``: signed along v."""
        return self.sign * self.strength

    def command(self, image: str = "IMAGE", out: str = "OUT.png", prompt: str | None = None,
                mask: str | None = None) -> str:
        """The command that applies this hit's edit to the image at its strength (re-localised on
        ``mask``, as it was previewed, when one was given)."""
        p = f" --prompt {shlex.quote(prompt)}" if prompt else ""
        m = f" --mask {shlex.quote(mask)}" if mask else ""
        return f"locobank apply {self.id}:{self.signed_strength:+.4g} {shlex.quote(image)}{m}{p} --out {out}"

    def to_dict(self, image: str = "IMAGE", prompt: str | None = None, mask: str | None = None) -> dict:
        """Plain data for ``--json``: no tensors."""
        return {"id": self.id, "sign": self.sign, "predicted_gain": round(self.gain, 6),
                "locality": round(self.locality, 6), "lost": round(self.lost, 6), "score": round(self.score, 6),
                "strength": round(self.signed_strength, 6), "calibrated": self.calibrated,
                "change": round(self.change, 6), "match": None if self.hit.match is None else round(self.hit.match, 6),
                "label": self.hit.label, "mask_label": self.hit.mask_label, "t_edit": self.hit.t_edit,
                "unit": self.hit.unit, "limit": self.hit.limit, "preview_steps": self.steps,
                "apply": self.command(image, prompt=prompt, mask=mask)}


@dataclass
class Pool:
    """The text search's candidates, loaded against their model: what every image is ranked from."""

    model: LoadedModel
    hits: list
    directions: list[core.Direction]
    defaults: list[float]  # each direction's default strength (its part's), unsigned


def candidate_pool(catalog, clip, query: str, *, pool: int = 32, model: str | None = None, domain: str = "face",
                   index_folder: Path | None = None, prompt: str | None = None, model_override: str | None = None,
                   device: str | None = None, condition: dict | None = None) -> Pool:
    """The top ``pool`` text-search hits for ``query``, all of one model (the top hit's, or
    ``model``'s: an id or fingerprint, as ``search`` filters), loaded with their vectors; with
    ``prompt`` (or a whole ``condition``: prompt, negative_prompt, guidance), the model is
    conditioned on it (text-to-image models)."""
    from ..apply import DirectionSpec, prepare
    from ..search import one_model_hits

    if pool < 1:
        raise ArgumentError("pool must be at least 1", params=("pool",))
    hits = one_model_hits(catalog, clip, query, k=pool, domain=domain, model=model, index_folder=index_folder)
    if condition is None and prompt is not None:
        condition = {"prompt": prompt}
    prep = prepare(catalog, [DirectionSpec(h.id) for h in hits], model_override=model_override, device=device,
                   condition=condition)
    return Pool(prep.model, hits, prep.directions, [abs(s) for s in prep.strengths])


def as_image(model: LoadedModel, image: Path | Tensor, resize: bool) -> Tensor:
    """An image file or tensor as (C, H, W) in [-1, 1] at the model's size."""
    if isinstance(image, Tensor):
        return core.as_batch(model, image)[0]
    return load_image(Path(image), model.resolution, resize=resize, channels=model.channels)


def as_mask(model: LoadedModel, mask: Path | Tensor | None, resize: bool) -> Tensor | None:
    """A mask file or tensor as (H, W) bool at the model's size (None stays None)."""
    if mask is None or isinstance(mask, Tensor):
        return mask
    return load_mask(Path(mask), model.resolution, resize=resize)


def score_previews(clip, text: Tensor, previews: Sequence[Previewed], mask: Tensor | None,
                   break_weight: float = BREAK_WEIGHT) -> list[tuple[float, float, float, float]]:
    """(gain, locality, lost, score) of each preview (see the module docstring)."""
    if not previews:
        return []
    q = torch.as_tensor(text, dtype=torch.float32, device=clip.device).flatten()
    edited = torch.stack([p.preview for p in previews])
    e = clip.encode_images(edited)
    b = _encode_once(clip, [p.unedited for p in previews]).to(e.device)
    d = e - b
    gain = (d @ q) / d.norm(dim=1).clamp_min(1e-12)
    lost = (1 - (e * b).sum(1)).clamp_min(0)
    out = []
    for g, l, p in zip(gain.tolist(), lost.tolist(), previews):
        loc = 1.0 if mask is None else core.locality(p.preview - p.unedited, mask)
        out.append((g, loc, l, g * loc - break_weight * l))
    return out


def _encode_once(clip, images: Sequence[Tensor]) -> Tensor:
    """CLIP embeddings of ``images``, each distinct tensor encoded once: the previews of one edit
    time share their unedited image."""
    first: dict[int, int] = {}
    distinct: list[Tensor] = []
    for im in images:
        if id(im) not in first:
            first[id(im)] = len(distinct)
            distinct.append(im)
    return clip.encode_images(torch.stack(distinct))[torch.tensor([first[id(im)] for im in images])]


def rank_pool(pool: Pool, clip, query: str, image: Path | Tensor, *, mask: Path | Tensor | None = None,
              domain: str = "face", strength: float | None = None, target: float = RANK_TARGET,
              resize: bool = False, options: EditOptions | None = None, steps: int | None = None,
              batch: int = 16, order: str = "verify", preview_steps: int = 1, refine: int | None = None,
              precision: str | None = None, progress: Progress | None = None,
              inverted: list | None = None) -> list[ImageHit]:
    """The pool's hits ranked for one image by their previews (``order``: see the module
    docstring), best first (ties keep the text search's order). ``options`` say how to invert and
    re-localise, as for ``apply`` (None: the model's settings; ``steps``, when given, replaces theirs);
    ``preview_steps`` how many DDIM steps each preview takes (1: the posterior mean). ``refine``
    hits (:func:`second_look`: the text search's first and the first of the one-step ranking) are
    then previewed again in :data:`REFINE_STEPS` steps (when ``preview_steps`` is fewer),
    re-calibrated, and re-ordered among themselves (0: no second look; None: :data:`REFINE_TOP`).
    ``precision``: what the previews' network passes run in (:func:`.preview.preview_dtype`; None:
    :data:`.preview.PREVIEW_PRECISION`, bfloat16 where the device computes it natively). ``inverted``,
    when given a list, receives the image's inversion (:class:`locobank.core.Inverted`, one per edit
    time): an edit on the same grid starts from it instead of inverting the image again."""
    from ..search import text_direction

    refine = REFINE_TOP if refine is None else refine
    if refine < 0:
        raise ArgumentError("refine must be 0 or more", params=("refine",))
    m = pool.model
    x = as_image(m, image, resize)
    mk = as_mask(m, mask, resize)
    signs = [h.sign for h in pool.hits]
    look = dict(strength=strength, target=target, batch=batch)
    states, previews = preview_pool(m, x, pool.directions, signs, pool.defaults, mask=mk,
                                    options=core.options_for(m, options, steps=steps), walk=preview_steps,
                                    precision=precision, progress=progress, **look)
    if inverted is not None:
        inverted += [core.Inverted(st.grid, {st.t: st.x_t}) for st in states]
    text = text_direction(clip, query, domain)
    ranked = _image_hits(pool, clip, text, previews, mk, range(len(previews)), preview_steps)
    first = ordered([h.score for h in ranked], order)
    top = second_look(first, refine) if preview_steps < REFINE_STEPS else []
    if not top:
        return [ranked[i] for i in first]
    step = stage(progress, f"{REFINE_STEPS}-step look", 1)
    start = [h.strength for h in ranked]  # the one-step calibration: where the closer one starts
    again = preview_states(m, narrowed(states, top, REFINE_STEPS), signs, pool.defaults, start=start, **look)
    closer = _image_hits(pool, clip, text, again, mk, top, REFINE_STEPS)
    step(1)
    hits = [closer[j] for j in ordered([h.score for h in closer], order)] + [ranked[i] for i in first if i not in top]
    if order == "verify":  # a hit whose closer look shows no gain goes behind every hit that still shows one
        hits.sort(key=lambda h: h.score <= VERIFY_FLOOR)
    return hits


def second_look(first: Sequence[int], refine: int) -> list[int]:
    """The hits (indices in the text search's order) the second look takes, ``refine`` in all:
    the text search's first hit, whatever its one-step preview said, and the first of the one-step
    ranking ``first``."""
    return sorted(([0] + [i for i in first if i != 0])[:refine]) if refine else []


def _image_hits(pool: Pool, clip, text: Tensor, previews: Sequence[Previewed], mask: Tensor | None,
                which: Sequence[int], steps: int) -> list[ImageHit]:
    """The pool's hits ``which`` (indices, in order) with their ``previews``, scored."""
    scores = score_previews(clip, text, previews, mask)
    return [ImageHit(pool.hits[i], g, loc, lost, sc, p.strength, p.change, p.calibrated, p.preview.cpu(),
                     p.unedited.cpu(), pool.directions[i], steps)
            for i, p, (g, loc, lost, sc) in zip(which, previews, scores)]


def ordered(scores: Sequence[float], order: str = "score") -> list[int]:
    """The indices of hits (in the text search's order) as ``order`` ranks them by their preview
    ``scores`` (see the module docstring)."""
    if order not in ORDERS:
        raise ArgumentError(f"order must be one of {', '.join(ORDERS)}, not {order!r}", params=("order",))
    if order == "score":
        return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(range(len(scores)), key=lambda i: (scores[i] <= VERIFY_FLOOR, i))


def rank_for_image(catalog, clip, query: str, image: Path | Tensor, *, mask: Path | Tensor | None = None,
                   prompt: str | None = None, pool: int = 32, model: str | None = None, domain: str = "face",
                   index_folder: Path | None = None, strength: float | None = None, target: float = RANK_TARGET,
                   resize: bool = False, model_override: str | None = None, device: str | None = None,
                   options: EditOptions | None = None, steps: int | None = None, order: str = "verify",
                   preview_steps: int = 1, refine: int | None = None, precision: str | None = None,
                   progress: Progress | None = None) -> list[ImageHit]:
    """The hits for ``query`` that work on *this* image, best first, each with the strength that
    makes its change visible there (or ``strength`` as given, along each hit's sign).

    Text search narrows the pool to ``pool`` hits of one model (``model`` filters as ``search``
    does); the image is inverted once per edit time among them (under ``prompt`` for a
    text-to-image model), each candidate is re-localised on ``mask`` as ``apply --mask`` does
    and previewed, and the previews decide the order and the strength (``target``: the RMS
    change a calibrated strength makes inside the mask)."""
    return rank_for_images(catalog, clip, query, [image], masks=None if mask is None else [mask], prompt=prompt,
                           pool=pool, model=model, domain=domain, index_folder=index_folder, strength=strength,
                           target=target, resize=resize, model_override=model_override, device=device,
                           options=options, steps=steps, order=order, preview_steps=preview_steps,
                           refine=refine, precision=precision, progress=progress)[0]


def rank_for_images(catalog, clip, query: str, images: Sequence[Path | Tensor], *,
                    masks: Sequence[Path | Tensor] | None = None, prompt: str | None = None, pool: int = 32,
                    model: str | None = None, domain: str = "face", index_folder: Path | None = None,
                    strength: float | None = None, target: float = RANK_TARGET, resize: bool = False,
                    model_override: str | None = None, device: str | None = None,
                    options: EditOptions | None = None, steps: int | None = None, order: str = "verify",
                    preview_steps: int = 1, refine: int | None = None, precision: str | None = None,
                    progress: Progress | None = None) -> list[list[ImageHit]]:
    """One ranking per image (:func:`rank_for_image`), the candidates searched and loaded once
    for all; ``masks`` is one mask for every image or one per image; ``preview_steps`` and
    ``refine`` and ``precision`` as for :func:`rank_pool`."""
    if not images:
        raise InputError("give at least one image to rank the hits for", params=("images",))
    per = masks_per_image(masks, len(images))
    cands = candidate_pool(catalog, clip, query, pool=pool, model=model, domain=domain, index_folder=index_folder,
                           prompt=prompt, model_override=model_override, device=device)
    return [rank_pool(cands, clip, query, im, mask=mk, domain=domain, strength=strength, target=target,
                      resize=resize, options=options, steps=steps, order=order, preview_steps=preview_steps,
                      refine=refine, precision=precision, progress=progress)
            for im, mk in zip(images, per)]


def masks_per_image(masks: Sequence | None, n: int) -> list:
    """Each of ``n`` images' mask: none, one for every image, or one each (anything else is refused)."""
    ms = list(masks or [])
    if len(ms) not in (0, 1, n):
        raise ArgumentError(f"mask must be one for every image, or one per image: {len(ms)} masks for {n} images",
                            params=("mask",))
    return ms * n if len(ms) == 1 else ms or [None] * n
