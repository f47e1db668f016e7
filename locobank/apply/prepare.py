"""Catalog directions loaded and checked against their model, with the part each was found on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .. import core
from ..errors import InputError
from ..files import file_sha256
from ..images import load_image, load_mask, unpack_mask
from ..loco.register import PartPrint, profiles
from ..models import LoadedModel, under
from ..models.recorded import model_for
from .specs import DirectionSpec

@dataclass
class Prepared:
    """Directions loaded and checked against one model, ready to apply."""

    model: LoadedModel
    directions: list[core.Direction]
    strengths: list[float]


def prepare(catalog, specs: Sequence[DirectionSpec], *, default_strength: float | None = None,
            model_override: str | None = None, device: str | None = None, condition: dict | None = None) -> Prepared:
    """Load the directions' model and vectors; all must share one model and edit time. A
    ``condition`` (prompt, negative_prompt, guidance) is bound to a text-to-image model (a pixel
    model refuses one)."""
    if not specs:
        raise InputError("give at least one direction id")
    recs = [catalog.get_direction(s.id) for s in specs]
    fps = {r.fingerprint for r in recs}
    if len(fps) > 1:
        raise InputError(f"directions {[s.id for s in specs]} come from different models; compose within one model")
    model = model_for(catalog, recs[0].fingerprint, override=model_override, device=device)
    model = under(model, condition)
    dirs, strengths = [], []
    units = unit_strengths(catalog, specs)
    for s, r in zip(specs, recs):
        v = catalog.load_vector(r.id, expected_fingerprint=model.fingerprint)
        dirs.append(core.Direction(v.float(), r.t_edit, r.fingerprint, name=f"#{r.id}",
                                     source=source_part(r, model.resolution, model.channels)))
        default = default_strength if default_strength is not None else model.strength_for(r.mask_label)
        strengths.append(float(s.units * units[s.id] if s.units is not None else
                               default if s.strength is None else s.strength))
    return Prepared(model, dirs, strengths)


def unit_strengths(catalog, specs: Sequence[DirectionSpec]) -> dict[int, float]:
    """The unit strength of each direction given in units (``ID:2x``); one whose card records none
    (indexed before catalog revision 0008) is refused, with what to run."""
    wanted = [s.id for s in specs if s.units is not None]
    if not wanted:
        return {}
    found = {i: unit for i, (unit, _) in catalog.strength_ranges(wanted).items()}
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise InputError(f"direction(s) {', '.join(map(str, missing))} have no measured unit strength, so a "
                         "strength in units (2x) cannot be read: run `locobank index build` to measure "
                         "it, or give the strength as a number (ID:4)")
    return found


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
        raise InputError(f"mask must be one mask, or one per direction: {len(paths)} masks for "
                         f"{len(prep.directions)} directions", params=("mask",))
    return [load_mask(p, prep.model.resolution, resize=resize) for p in paths]


