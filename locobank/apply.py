"""Applying catalog directions to new images: transfer, composition, sweeps, search-and-apply."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import engine
from .errors import InputError
from .images import load_image, load_mask, unpack_mask
from .loco.register import PartPrint, profiles
from .models import LoadedModel
from .resolve import model_for

SPEC = re.compile(r"^(\d+)(?::(.*))?$")


@dataclass(frozen=True)
class DirectionSpec:
    """``ID[:STRENGTH]`` from the command line; strength None means the default."""

    id: int
    strength: float | None = None


def parse_spec(text: str) -> DirectionSpec:
    """'12', '12:4', '12:-6.5' -> DirectionSpec; anything else is a clear InputError."""
    m = SPEC.match(text.strip())
    if not m:
        raise InputError(f"{text!r} is not a direction: use ID or ID:STRENGTH, e.g. 12:-4")
    if m.group(2) is None or m.group(2) == "":
        return DirectionSpec(int(m.group(1)))
    try:
        return DirectionSpec(int(m.group(1)), float(m.group(2)))
    except ValueError as e:
        raise InputError(f"strength {m.group(2)!r} of direction {m.group(1)} is not a number") from e


def expand_images(items: Sequence[str | Path]) -> list[Path]:
    """Files, folders (their images) and globs, in order, without duplicates."""
    from .harvest.inputs import images_in

    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            out += images_in(p)
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(Path().glob(str(it))) if any(c in str(it) for c in "*?[") else []
            if not matches:
                raise InputError(f"{it}: no such image, folder or glob match")
            out += matches
    seen: dict[Path, None] = {}
    for p in out:
        seen.setdefault(p, None)
    if not seen:
        raise InputError("no images to edit")
    return list(seen)


@dataclass
class Prepared:
    """Directions loaded and checked against one model, ready to apply."""

    model: LoadedModel
    directions: list[engine.Direction]
    strengths: list[float]


def prepare(catalog, specs: Sequence[DirectionSpec], *, default_strength: float | None = None,
            model_override: str | None = None, device: str | None = None) -> Prepared:
    """Load the directions' model and vectors; all must share one model and edit time."""
    if not specs:
        raise InputError("give at least one direction id")
    recs = [catalog.get_direction(s.id) for s in specs]
    fps = {r.fingerprint for r in recs}
    if len(fps) > 1:
        raise InputError(f"directions {[s.id for s in specs]} come from different models; compose within one model")
    model = model_for(catalog, recs[0].fingerprint, override=model_override, device=device)
    dirs, strengths = [], []
    for s, r in zip(specs, recs):
        v = catalog.load_vector(r.id, expected_fingerprint=model.fingerprint)
        dirs.append(engine.Direction(v.float(), r.t_edit, r.fingerprint, name=f"#{r.id}",
                                     source=source_part(r, model.resolution, model.channels)))
        default = default_strength if default_strength is not None else model.strength_for(r.mask_label)
        strengths.append(float(default if s.strength is None else s.strength))
    return Prepared(model, dirs, strengths)


def source_part(rec, resolution: int, channels: int = 3) -> PartPrint | None:
    """The part direction ``rec`` was harvested on, at the model's ``resolution``: its mask and
    profiles from the record's diagnostics (harvests that record them), else from its mask and
    image files when they are still there unchanged (the mask alone without the image); None
    when the mask is in neither, and the direction is then not registered."""
    packed = rec.diagnostics.get("source_part")
    if packed is not None:
        m = unpack_mask(packed["mask"])
        if tuple(m.shape) != (resolution, resolution):
            return None
        return PartPrint(m, torch.tensor(packed["cols"]), torch.tensor(packed["rows"]))
    from .harvest.worker import file_sha256

    def unchanged(uri: str | None, sha: str) -> Path | None:
        p = Path(uri) if uri else None
        return p if p is not None and p.is_file() and file_sha256(p) == sha else None

    mpath = unchanged(rec.mask_uri, rec.mask_sha256)
    if mpath is None:
        return None
    m = load_mask(mpath, resolution, resize=True)
    ipath = unchanged(rec.image_uri, rec.image_sha256)
    if ipath is None:
        return PartPrint(m)
    cols, rows = profiles(load_image(ipath, resolution, resize=True, channels=channels), m)
    return PartPrint(m, cols, rows)


MaskArg = Path | Sequence[Path] | None


def load_masks(prep: Prepared, mask: MaskArg, resize: bool) -> list[torch.Tensor] | None:
    """The target mask(s) at the model's size: one for every direction, or one per direction."""
    if mask is None:
        return None
    paths = [mask] if isinstance(mask, (str, Path)) else list(mask)
    if not paths:
        return None
    if len(paths) not in (1, len(prep.directions)):
        raise InputError(f"give one --mask, or one per direction: {len(paths)} masks for {len(prep.directions)} "
                         f"directions")
    return [load_mask(p, prep.model.resolution, resize=resize) for p in paths]


def _defaults(m: LoadedModel, steps: int | None, eta_tail: float | None,
              null_rank: int | None) -> tuple[int, float, int]:
    """Sampling steps, tail noise and null rank: those given, else the model's defaults."""
    d = m.defaults
    return (steps or d.get("steps", engine.DEFAULT_STEPS), d.get("eta_tail", 0.0) if eta_tail is None else eta_tail,
            d.get("null_rank", 5) if null_rank is None else null_rank)


def _load_batch(m: LoadedModel, paths: Sequence[Path], resize: bool) -> torch.Tensor:
    return torch.stack([load_image(p, m.resolution, resize=resize, channels=m.channels) for p in paths])


def apply_to_images(prep: Prepared, images: Sequence[Path], *, mask: MaskArg = None, resize: bool = False,
                    orthogonalize: bool = False, seed: int = 0, steps: int | None = None, eta_tail: float | None = None,
                    null_rank: int | None = None, max_shift: int | None = None, spill_passes: int | None = None,
                    register: bool = True, batch: int = 16, progress: Callable[[int], None] | None = None,
                    shifts: list | None = None) -> list[torch.Tensor]:
    """Edited images (3, H, W in [-1, 1]) in the order given, processed ``batch`` at a time.

    With ``mask`` (a path, or one path per direction) each direction is re-localised on each
    image: registered from its source mask onto its mask (unless ``register`` is false),
    shifted further when ``max_shift`` allows, re-projected, then corrected by
    ``spill_passes`` spill passes (see :func:`locobank.engine.edit`); ``shifts``, when given a
    list, receives each image's per-direction ((dy, dx), (sy, sx)): shift and scale."""
    m = prep.model
    steps, eta, nr = _defaults(m, steps, eta_tail, null_rank)
    masks = load_masks(prep, mask, resize)
    if masks is not None:
        batch = 1  # the re-projection is per image
    out: list[torch.Tensor] = []
    for i in range(0, len(images), batch):
        x = _load_batch(m, images[i : i + batch], resize)
        res = engine.edit(m, x, list(zip(prep.directions, prep.strengths)), steps=steps, seed=seed, eta_tail=eta,
                          mask=masks, null_rank=nr, orthogonalize=orthogonalize, max_shift=max_shift,
                          spill_passes=spill_passes, register=register)
        out += list(res.images.cpu())
        if shifts is not None and masks is not None:
            shifts.append(list(zip(res.shifts, res.scales)))
        if progress:
            progress(len(x))
    return out


def sweep(prep: Prepared, image: Path, values: Sequence[float], *, mask: MaskArg = None, resize: bool = False,
          seed: int = 0, steps: int | None = None, eta_tail: float | None = None, null_rank: int | None = None,
          max_shift: int | None = None, spill_passes: int | None = None, register: bool = True,
          shifts: list | None = None) -> list[torch.Tensor]:
    """One image edited at each strength (the first direction scaled), for a linearity strip.

    With ``mask`` the directions are re-localised on this image once (:func:`locobank.engine.relocalize`),
    and every strength uses them; the spill passes run at each strength, since the spill
    depends on it. ``shifts``, when given a list, receives the image's [(shift, scale)] per
    direction, as in :func:`apply_to_images`."""
    m = prep.model
    steps, eta, nr = _defaults(m, steps, eta_tail, null_rank)
    x = load_image(image, m.resolution, resize=resize, channels=m.channels)[None]
    masks = load_masks(prep, mask, resize)
    one_time = len({d.t for d in prep.directions}) == 1
    dirs = list(prep.directions)
    if one_time:
        src = engine.invert(m, x, dirs[0].t, steps)  # invert once
        if masks is not None:
            moved, sh, sc = engine.relocalize(m, src, dirs[0].t, masks, torch.stack([d.vector for d in dirs]),
                                              null_rank=nr, max_shift=max_shift, seed=seed, image=x[0],
                                              sources=[d.source for d in dirs] if register else None)
            if shifts is not None:
                shifts.append(list(zip(sh, sc)))
            dirs = [engine.Direction(v, d.t, d.fingerprint, name=d.name) for v, d in zip(moved, dirs)]  # registered
            nr, max_shift = 0, 0  # re-localised already: the edits below only run the spill passes
    else:
        src = x
    outs = []
    for val in values:
        r = engine.edit(m, src, [(dirs[0], float(val))] + list(zip(dirs[1:], prep.strengths[1:])), steps=steps,
                        seed=seed, eta_tail=eta, inverted=one_time, mask=masks, null_rank=nr, max_shift=max_shift,
                        spill_passes=spill_passes, register=register)
        if shifts is not None and masks is not None and not one_time and not outs:
            shifts.append(list(zip(r.shifts, r.scales)))  # registered afresh at each strength, the same way
        outs.append(r.images[0].cpu())
    return outs


@dataclass
class Candidate:
    """One search hit for a query, prepared to apply with its sign."""

    hit: object  # locobank.search.Hit
    prep: Prepared


def query_candidates(catalog, clip, query: str, *, k: int = 1, domain: str = "face",
                     default_strength: float | None = None, model_override: str | None = None,
                     device: str | None = None, index_folder: Path | None = None) -> list[Candidate]:
    """The top ``k`` search hits for ``query`` made with the top hit's model, each prepared at its
    strength times the sign that does the edit (so a negative ``default_strength`` reverses it).

    Raises InputError when nothing matches (e.g. no index has been built)."""
    from .search import search

    if k < 1:
        raise InputError("the number of candidates must be at least 1")
    hits = search(catalog, clip, query, k=k, domain=domain, index_folder=index_folder)
    if not hits:
        raise InputError(f"no direction matches {query!r}; has `locobank index build` run?")
    if any(h.fingerprint != hits[0].fingerprint for h in hits):  # one model loads, and they all apply to it
        hits = search(catalog, clip, query, k=k, domain=domain, index_folder=index_folder, model=hits[0].fingerprint)
    prep = prepare(catalog, [DirectionSpec(h.id) for h in hits], default_strength=default_strength,
                   model_override=model_override, device=device)
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


def apply_best_of(candidates: Sequence[Prepared], clip, text, images: Sequence[Path], *, mask: MaskArg = None,
                  resize: bool = False, seed: int = 0, steps: int | None = None, eta_tail: float | None = None,
                  null_rank: int | None = None, max_shift: int | None = None, spill_passes: int | None = None,
                  register: bool = True, batch: int = 16, progress: Callable[[int], None] | None = None,
                  shifts: list | None = None) -> tuple[list[torch.Tensor], list[int]]:
    """Each image edited by every candidate (one direction each, at its strength), with the
    options of :func:`apply_to_images` (``mask`` included), keeping per image the edit
    :func:`choose` picks: (edited images, the index of the candidate kept for each), ``batch``
    images at a time. ``shifts``, when given a list, receives each image's moves as
    :func:`apply_to_images` gives them, for its kept edit.

    A direction's effect depends on the image it lands on: on the toy model the top "blond
    hair" hit lightens dark hair towards blond but turns grey and white hair whiter, while
    another hit turns those blond. Choosing among the real edits means the choice is made on
    exactly what is returned. The candidates share each image's inversion and, with ``mask``,
    its re-projection and unedited reference (:func:`locobank.engine.edit_each`); only the best
    edit so far of each image is kept in memory."""
    if not candidates:
        raise InputError("no candidate directions to choose from")
    if len({c.model.fingerprint for c in candidates}) > 1:
        raise InputError("the candidates come from different models; choose among one model's directions")
    if any(len(c.directions) != 1 for c in candidates):
        raise InputError("each candidate is one direction; compose them with apply_to_images instead")
    m = candidates[0].model
    steps, eta, nr = _defaults(m, steps, eta_tail, null_rank)
    dirs = [c.directions[0] for c in candidates]
    strengths = [c.strengths[0] for c in candidates]
    masks = load_masks(candidates[0], mask, resize)
    if masks is not None and len(masks) != 1:
        raise InputError("give one --mask: every candidate is re-localised on the same part")
    per = 1 if masks is not None else batch  # the re-projection is per image
    options = dict(steps=steps, seed=seed, eta_tail=eta, null_rank=nr, max_shift=max_shift, spill_passes=spill_passes,
                   register=register, batch=batch, mask=masks[0] if masks else None)
    q = _along(clip, text)
    edited: list[torch.Tensor] = []
    picks: list[int] = []
    for i in range(0, len(images), per):
        x = _load_batch(m, images[i : i + per], resize)
        best = score = None
        kept = torch.zeros(len(x), dtype=torch.long)
        moves: list = [None] * len(x)
        for j, r in engine.edit_each(m, x, dirs, strengths, progress=progress, **options):
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
