"""The Search tab's hits re-ranked for the user's image (:mod:`locobank.rank`): each card is the
hit's preview on that image, unedited then edited, at the strength calibrated there. Plain
functions, no gradio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..images import load_image, to_uint8
from ..search import named
from ..views import format_number
from .apply_actions import InputImage, Report, fitted_mask
from .cache import Resources
from .listings import TILE

POOL = 32  # the text hits each image's previews rank


@dataclass
class RankedCard:
    """One hit as previewed on the user's image: the two tiles (a PNG in the app's folder) and its facts."""

    hit: object  # locobank.rank.ImageHit
    tiles: Path

    @property
    def caption(self) -> str:
        """Every fact of the card on one line."""
        h = self.hit
        return "  ·  ".join([f"#{h.id} {named(h.hit.label, h.hit.label_sign)}", f"mask {h.hit.mask_label}",
                             f"gain on your image {format_number(h.gain, '+.2f')}",
                             f"local {format_number(h.locality)}",
                             f"apply at {format_number(h.signed_strength, '+.3g')}"
                             + ("" if h.calibrated else " (as given)")])


def ranked_cards(res: Resources, query: str, inp: InputImage, mask: np.ndarray | None, *, model: str | None = None,
                 k: int = 12, pool: int = POOL, report: Report = lambda f, s: None) -> list[RankedCard]:
    """The top ``pool`` text hits for ``query`` (of one model: ``model``'s, else the top hit's)
    ranked by their previews on ``inp`` (re-localised on ``mask`` when given), the best ``k`` as
    cards. The candidates of a query are loaded once and kept."""
    from ..rank import candidate_pool, rank_pool

    if not query or not query.strip():
        raise InputError("type what the edit should do, e.g. smile or blond hair")
    clip = res.clip()
    report(0.05, "searching")
    key = (query.strip(), model or None, int(pool))
    cands = res.pools.get_or_make(key, lambda: candidate_pool(
        res.catalog, clip, query, pool=int(pool), model=model or None, domain=res.domain,
        index_folder=res.index_folder, device=res.device))
    m = cands.model
    x = load_image(inp.fitted(m.resolution), m.resolution, channels=m.channels)
    mk = None if mask is None else torch.from_numpy(fitted_mask(mask, m.resolution))
    report(0.2, f"previewing {len(cands.hits)} hits on your image")
    ranked = rank_pool(cands, clip, query, x, mask=mk, domain=res.domain)
    return [RankedCard(h, _tiles(res, inp, h)) for h in ranked[: int(k)]]


def _tiles(res: Resources, inp: InputImage, hit) -> Path:
    """The hit's unedited and edited previews side by side, enlarged, as a PNG in the app's folder."""
    row = np.concatenate([to_uint8(hit.unedited), to_uint8(hit.preview)], 1)
    img = Image.fromarray(row)
    scale = max(1, TILE // img.height)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = res.work / "ranked" / f"{inp.sha[:16]}_{hit.id}_{hit.signed_strength:+.4g}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
