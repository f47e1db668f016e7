"""The contact sheet of an image-aware ranking: each hit's preview on the user's image."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..images import to_uint8
from .ranking import ImageHit


def preview_tiles(hit: ImageHit) -> tuple[list[np.ndarray], list[float]]:
    """The hit's unedited and edited previews, in the order of their strengths along v (what a
    sheet's ``render`` gives), so that each row reads "unedited -> edited" once turned by its sign."""
    tiles = [to_uint8(hit.unedited), to_uint8(hit.preview)]
    strengths = [0.0, hit.signed_strength]
    return (tiles[::-1], strengths[::-1]) if hit.signed_strength < 0 else (tiles, strengths)


def ranking_sheet(catalog, ranked: Sequence[ImageHit], out: Path, *, title: str | None = None,
                  clip_id: str | None = None) -> Path:
    """A contact sheet of ``ranked`` in its order: one row per hit with its card and its preview on
    the image, over each tile the strength to pass to ``locobank apply``; returns ``out``."""
    from ..views import contact_sheet

    if not ranked:
        raise InputError("no ranked hits to draw")
    by_id = {h.id: h for h in ranked}
    return contact_sheet(catalog, [h.id for h in ranked], out, signs=[h.sign for h in ranked], title=title,
                         clip_id=clip_id, render=lambda did: preview_tiles(by_id[did]))
