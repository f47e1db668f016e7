"""The visible effect of each direction, rendered and embedded with CLIP.

For a direction v found on image A, the effect is measured on A and on P probe images of the
same model: each is inverted to the edit time, pushed to +lambda v and -lambda v, and sampled
back. The effect vector is normalize(mean_p [CLIP(x_p(+lambda)) - CLIP(x_p(-lambda))]), and the
transfer consistency is the mean cosine between the per-image effects.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .clip import ClipModel
from .errors import LocobankError
from .images import load_image, load_mask, to_uint8
from . import core
from .models import LoadedModel
from .models.recorded import model_for
from .tally import Tally

if TYPE_CHECKING:
    from .rank.linear import StrengthRange
    from .catalog.records import DirectionRecord, NewEffect

log = logging.getLogger(__name__)

PREVIEW_PX = 128


@dataclass
class EmbedSummary(Tally):
    """Counts for ``index build``'s message: directions embedded, and those that failed and why."""

    embedded: int = 0


def effect_vector(clip: ClipModel, plus: torch.Tensor, minus: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(unit effect vector, transfer consistency) from images rendered at +lambda and -lambda."""
    e = clip.encode_images(plus) - clip.encode_images(minus)  # (P, dim)
    en = F.normalize(e, dim=-1)
    n = en.shape[0]
    if n > 1:
        cos = en @ en.T
        consistency = float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))
    else:
        consistency = 1.0
    return F.normalize(e.mean(0), dim=0), consistency


def preview_strip(images: torch.Tensor, px: int = PREVIEW_PX) -> bytes:
    """PNG bytes of images side by side (e.g. -lambda, 0, +lambda), each scaled to ``px`` high."""
    tiles = [Image.fromarray(to_uint8(im)) for im in images]
    size = tiles[0].size[0]
    scale = px / size
    tiles = [t.resize((px, px), Image.NEAREST if scale >= 1 else Image.LANCZOS) for t in tiles]
    strip = Image.new("RGB", (px * len(tiles), px))
    for i, t in enumerate(tiles):
        strip.paste(t, (i * px, 0))
    buf = io.BytesIO()
    strip.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class StateCache:
    """Inverted states x_te of catalog images, computed once per (image, t, steps)."""

    def __init__(self, model: LoadedModel, steps: int):
        self.model = model
        self.steps = steps
        self._x: dict[tuple[str, int], torch.Tensor] = {}
        self._ref: dict[tuple[str, int], torch.Tensor] = {}

    def states(self, uris: list[str], t: int) -> torch.Tensor:
        """The states of these images at timestep ``t``, inverting only those not seen before."""
        missing = [u for u in dict.fromkeys(uris) if (u, t) not in self._x]
        if missing:
            x = torch.stack([load_image(Path(u), self.model.resolution, resize=True) for u in missing]).to(self.model.device)
            xt = core.invert(self.model, x, t, self.steps)
            for u, s in zip(missing, xt):
                self._x[(u, t)] = s
        return torch.stack([self._x[(u, t)] for u in uris])


def _cache_for(caches: dict, model: LoadedModel, condition: dict | None, steps: int) -> StateCache:
    """The state cache of the prompt a direction was found under (the model's own for none):
    its effect is rendered on the probe images inverted and sampled under that prompt."""
    from .models import under

    c = condition or {}
    key = (c.get("prompt", ""), c.get("negative_prompt", ""), c.get("guidance"))
    if key not in caches:
        caches[key] = StateCache(under(model, condition), steps)
    return caches[key]


def source_mask(catalog, record, model: LoadedModel) -> torch.Tensor | None:
    """The direction's own mask at the model's resolution; None when its file can no longer be read."""
    try:
        mask_uri = catalog.get_job(record.job_id).mask_uri
        return None if mask_uri is None else load_mask(Path(mask_uri), model.resolution, resize=True)
    except (LocobankError, OSError) as e:
        log.warning("direction %d: no mask to measure on (%s)", record.id, e)
        return None


def probe_images(catalog, fingerprint: str, n: int) -> list[str]:
    """The first ``n + 1`` distinct images harvested for this model (by id), so probes are stable."""
    seen: list[str] = []
    page, offset = max(16, 2 * (n + 1)), 0
    while len(seen) <= n:
        uris = catalog.harvested_images(fingerprint, page, offset)
        seen += [u for u in uris if Path(u).exists()][: n + 1 - len(seen)]  # images moved away are skipped
        if len(uris) < page:
            break
        offset += page
    return seen


@dataclass
class _Batch:
    """The effects and previews of one batch of directions, written together when the batch ends."""

    effects: list = field(default_factory=list)
    previews: list[tuple] = field(default_factory=list)  # put_preview's arguments


@dataclass
class EffectRenderer:
    """One model's effect rendering: its probe images, its DDIM steps and one state cache per
    prompt (a text-to-image direction renders under the prompt it was found under)."""

    catalog: Any
    clip: ClipModel
    model: LoadedModel
    probes: list[str]
    n_probes: int
    steps: int
    strength: float | None
    caches: dict = field(default_factory=dict)

    def strength_for(self, r: DirectionRecord) -> float:
        """lambda: the one asked for, else the model's default for the direction's mask label."""
        return float(self.strength if self.strength is not None else self.model.strength_for(r.mask_label))

    def uris(self, r: DirectionRecord) -> list[str]:
        """The images a direction is rendered on: its own, then the probes."""
        return [r.image_uri] + [p for p in self.probes if p != r.image_uri][: self.n_probes]

    def vector(self, r: DirectionRecord) -> torch.Tensor:
        """The direction's unit vector on the model's device."""
        return self.catalog.load_vector(r.id, expected_fingerprint=r.fingerprint).to(self.model.device, torch.float32)

    def states(self, r: DirectionRecord) -> tuple[LoadedModel, torch.Tensor]:
        """(the model under the direction's prompt, the states of the images it is rendered on)."""
        cache = _cache_for(self.caches, self.model, r.condition, self.steps)
        return cache.model, cache.states(self.uris(r), r.t_edit)

    def render(self, r: DirectionRecord, lam: float, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(+lambda, -lambda, 0) renderings along ``v``: the first two on the source image and the
        probes, the last on the source image only; all in one sampling pass."""
        model, xt = self.states(r)
        out = core.sample(model, torch.cat([xt + lam * v, xt - lam * v, xt[:1]]), r.t_edit, self.steps)
        k = len(xt)
        return out[:k], out[k : 2 * k], out[2 * k :]

    def scale(self, r: DirectionRecord, lam: float, v: torch.Tensor, mask: torch.Tensor) -> "StrengthRange":
        """The direction's unit strength and linear limit (:mod:`locobank.rank.linear`), measured
        inside its own ``mask`` on the images it is rendered on."""
        from .rank.linear import strength_range

        model, xt = self.states(r)
        return strength_range(model, xt, r.t_edit, v, mask, lam)

    def embed(self, r: DirectionRecord, lam: float, plus: torch.Tensor, minus: torch.Tensor) -> NewEffect:
        """The direction's CLIP effect row, from its renderings."""
        from .catalog.records import NewEffect

        vec, consistency = effect_vector(self.clip, plus, minus)
        return NewEffect(direction_id=r.id, clip_id=self.clip.clip_id, vector=vec.cpu().numpy().astype(np.float32),
                         consistency=consistency, n_images=len(plus), strength=lam)

    def preview(self, r: DirectionRecord, lam: float, v: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor,
                zero: torch.Tensor) -> tuple:
        """The source image's (-lambda, 0, +lambda) strip, the locality measured on it and the
        direction's strength scale (none without a readable mask): ``Catalog.put_preview``'s arguments."""
        from .core import locality

        mask = source_mask(self.catalog, r, self.model)
        loc = unit = limit = None
        if mask is not None:
            loc = locality(torch.cat([plus[0] - zero[0], minus[0] - zero[0]], 0), mask)
            rng = self.scale(r, lam, v, mask)
            unit, limit = rng.unit, rng.limit
        return r.id, preview_strip(torch.stack([minus[0], zero[0], plus[0]])), lam, loc, unit, limit


def _group_by_model(catalog, clip_id: str, ids: list[int] | None) -> dict[str, list[DirectionRecord]]:
    """The directions to embed, grouped by model fingerprint so each model loads once."""
    todo = ids if ids is not None else catalog.directions_without_effect(clip_id)
    groups: dict[str, list[DirectionRecord]] = {}
    for r in [catalog.get_direction(i) for i in todo]:
        groups.setdefault(r.fingerprint, []).append(r)
    return groups


def _embed_one(renderer: EffectRenderer, r: DirectionRecord, out: _Batch, summary: EmbedSummary) -> None:
    """Render, embed and measure one direction into ``out``; a failure is counted, not raised."""
    lam = renderer.strength_for(r)
    try:
        v = renderer.vector(r)
        plus, minus, zero = renderer.render(r, lam, v)
        out.effects.append(renderer.embed(r, lam, plus, minus))
        out.previews.append(renderer.preview(r, lam, v, plus, minus, zero))
    except (LocobankError, OSError) as e:
        summary.fail(f"direction {r.id}: {e}")


def _write(catalog, out: _Batch) -> None:
    """A batch's effects in one transaction, then its previews (none when no effect was made)."""
    if out.effects:
        catalog.put_effects(out.effects)
        for args in out.previews:
            catalog.put_preview(*args)


def _embed_group(renderer: EffectRenderer, group: list[DirectionRecord], batch: int, summary: EmbedSummary,
                 progress: Callable[[int], None] | None) -> None:
    """One model's directions, ``batch`` at a time, each batch written before the next is rendered."""
    for i in range(0, len(group), batch):
        out = _Batch()
        for r in group[i : i + batch]:
            _embed_one(renderer, r, out, summary)
            if progress:
                progress(1)
        _write(renderer.catalog, out)
        summary.embedded += len(out.effects)


def embed_directions(catalog, clip: ClipModel, *, ids: list[int] | None = None, model_override: str | None = None,
                     strength: float | None = None, n_probes: int = 4, steps: int | None = None,
                     device: str | None = None, batch: int = 8,
                     progress: Callable[[int], None] | None = None) -> EmbedSummary:
    """Render, embed and store the effect of every direction that has none for this CLIP yet.

    ``strength`` is lambda; by default each direction's model's default for its mask label
    (``LoadedModel.strength_for``)."""
    summary = EmbedSummary()
    start = time.perf_counter()
    for fp, group in _group_by_model(catalog, clip.clip_id, ids).items():
        try:
            model = model_for(catalog, fp, override=model_override, device=device)
        except LocobankError as e:  # the whole group fails with the model's reason
            summary.fail(str(e), len(group))
            if progress:
                progress(len(group))
            continue
        probes = probe_images(catalog, fp, n_probes)
        n_steps = int(steps or model.settings.render_steps)
        renderer = EffectRenderer(catalog, clip, model, probes, n_probes, n_steps, strength)
        _embed_group(renderer, group, batch, summary, progress)
    summary.seconds = time.perf_counter() - start
    return summary
