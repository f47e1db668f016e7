"""Search and apply: the top hits for a text, and each image's best edit among them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import core
from ..errors import InputError
from ..settings import EditOptions
from .prepare import MaskArg, Prepared, load_masks, prepare
from .sources import Source, load_batch
from .specs import DirectionSpec


@dataclass
class Candidate:
    """One search hit for a query, prepared to apply with its sign."""

    hit: object  # locobank.search.Hit
    prep: Prepared
    ranked: object | None = None  # locobank.rank.ImageHit: how it previewed on its image, when ranked there
    own: object | None = None  # locobank.rank.own.OwnDirection: the image's own direction applied instead
    inverted: list | None = None  # the ranking's inversions of its image (locobank.core.Inverted), for the edit


def query_candidates(catalog, clip, query: str, *, k: int = 1, domain: str = "face",
                     default_strength: float | None = None, model_override: str | None = None,
                     device: str | None = None, index_folder: Path | None = None,
                     condition: dict | None = None) -> list[Candidate]:
    """The top ``k`` search hits for ``query`` made with the top hit's model, each prepared at its
    strength times the sign that does the edit (so a negative ``default_strength`` reverses it).

    Raises InputError when nothing matches (e.g. no index has been built)."""
    from ..search import one_model_hits

    if k < 1:
        raise InputError("the number of candidates must be at least 1")
    hits = one_model_hits(catalog, clip, query, k=k, domain=domain, index_folder=index_folder)
    prep = prepare(catalog, [DirectionSpec(h.id) for h in hits], default_strength=default_strength,
                   model_override=model_override, device=device, condition=condition)
    return [Candidate(h, Prepared(prep.model, [d], [s * h.sign]))
            for h, d, s in zip(hits, prep.directions, prep.strengths)]


def _along(clip, text):
    """``text`` (a tensor or array) as a flat float tensor on ``clip``'s device."""
    return torch.as_tensor(text, dtype=torch.float32, device=clip.device).flatten()


def choose(outputs: Sequence[torch.Tensor], clip, text) -> list[int]:
    """For each image, the index of the candidate output furthest along ``text`` in CLIP's space.

    ``outputs[j]`` holds candidate j's edits of the same images (B, C, H, W in [-1, 1]); ``text``
    (a tensor or array) is a unit direction in ``clip``'s embedding space
    (:func:`locobank.search.text_direction`). Ties keep the earlier candidate.
    The choice is the largest ``CLIP(edited) . text``: the unedited image's own term would be
    the same for every candidate of an image, so it drops out."""
    if not outputs:
        raise InputError("no candidate edits to choose from")
    q = _along(clip, text)
    return torch.stack([clip.encode_images(o) @ q for o in outputs]).argmax(0).tolist()


def apply_best_of(candidates: Sequence[Prepared], clip, text, images: Sequence[Source], *,
                  options: EditOptions | None = None, mask: MaskArg = None, resize: bool = False, batch: int = 16,
                  progress: Callable[[int], None] | None = None, shifts: list | None = None,
                  inverted: Sequence[Sequence | None] | None = None) -> tuple[list[torch.Tensor], list[int]]:
    """Each image edited by every candidate (one direction each, at its strength), with the
    options of :func:`apply_to_images` (``mask`` included), keeping per image the edit
    :func:`choose` picks: (edited images, the index of the candidate kept for each), ``batch``
    images at a time. ``shifts``, when given a list, receives each image's moves as
    :func:`apply_to_images` gives them, for its kept edit.

    A direction's effect depends on the image it lands on: on the toy model the top "blond
    hair" hit lightens dark hair towards blond but turns grey and white hair whiter, while
    another hit turns those blond. Choosing among the real edits means the choice is made on
    exactly what is returned. The candidates share each image's inversion and, with ``mask``,
    its re-projection and unedited reference (:func:`locobank.core.edit_each`); only the best
    edit so far of each image is kept in memory. ``inverted[i]`` (with ``mask``): image ``i``'s
    inversions made already (:class:`locobank.core.Inverted`, e.g. by its ranking)."""
    if not candidates:
        raise InputError("no candidate directions to choose from")
    if len({c.model.fingerprint for c in candidates}) > 1:
        raise InputError("the candidates come from different models; choose among one model's directions")
    if any(len(c.directions) != 1 for c in candidates):
        raise InputError("each candidate is one direction; compose them with apply_to_images instead")
    m = candidates[0].model
    opts = core.options_for(m, options)
    dirs = [c.directions[0] for c in candidates]
    strengths = [c.strengths[0] for c in candidates]
    masks = load_masks(candidates[0], mask, resize)
    if masks is not None and len(masks) != 1:
        raise InputError("mask must be one mask: every candidate is re-localised on the same part", params=("mask",))
    one = masks[0] if masks else None
    per = 1 if masks is not None else batch  # the re-projection is per image
    q = _along(clip, text)
    if any(isinstance(i, int) for i in images):
        return _best_of_samples(candidates, clip, q, images, opts, one, per, progress)
    edited: list[torch.Tensor] = []
    picks: list[int] = []
    for i in range(0, len(images), per):
        x = load_batch(m, images[i : i + per], resize)
        best = score = None
        kept = torch.zeros(len(x), dtype=torch.long)
        moves: list = [None] * len(x)
        at = inverted[i] if inverted is not None and masks is not None else None
        for j, r in core.edit_each(m, x, dirs, strengths, options=opts, mask=one, batch=batch, progress=progress,
                                   at=at):
            out = r.images.cpu()
            sc = (clip.encode_images(out) @ q).cpu()
            if best is None:
                best, score = out.clone(), torch.full_like(sc, -torch.inf)
            better = (sc > score) | ((sc == score) & (j < kept))  # ties keep the higher-ranked hit, as choose()
            best[better], score[better], kept[better] = out[better], sc[better], j
            moves = [list(zip(r.shifts, r.scales)) if b else mv for mv, b in zip(moves, better.tolist())]
        edited += list(best)
        picks += kept.tolist()
        if shifts is not None and masks is not None:
            shifts += moves
    return edited, picks


def _best_of_samples(candidates: Sequence[Prepared], clip, q: torch.Tensor, seeds: Sequence[Source], opts: EditOptions,
                     mask: torch.Tensor | None, per: int,
                     progress: Callable[[int], None] | None) -> tuple[list[torch.Tensor], list[int]]:
    """:func:`apply_best_of` on a prompt's samples: each seed's sample is generated to each
    candidate's edit time (once per time), edited there by the candidate, and the best edit kept."""
    if not all(isinstance(i, int) for i in seeds):
        raise InputError("give image files or seeds to generate from, not both")
    m = candidates[0].model
    edited: list[torch.Tensor] = []
    picks: list[int] = []
    for i in range(0, len(seeds), per):
        noise = core.noise_for(m, list(seeds[i : i + per]))
        states: dict[int, torch.Tensor] = {}
        best = score = kept = None
        for j, c in enumerate(candidates):
            d = c.directions[0]
            if d.t_edit not in states:
                states[d.t_edit] = core.generate_to(m, noise, d.t_edit, opts.steps)
            out = core.edit(m, states[d.t_edit], [(d, c.strengths[0])], options=opts, inverted=True,
                            mask=None if mask is None else [mask]).images.cpu()
            sc = (clip.encode_images(out) @ q).cpu()
            if best is None:
                best, score, kept = out.clone(), torch.full_like(sc, -torch.inf), torch.zeros(len(out), dtype=torch.long)
            better = sc > score  # ties keep the higher-ranked hit, as choose()
            best[better], score[better], kept[better] = out[better], sc[better], j
            if progress:
                progress(len(out))
        edited += list(best)
        picks += kept.tolist()
    return edited, picks
