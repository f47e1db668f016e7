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
from typing import Callable

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

log = logging.getLogger(__name__)

PREVIEW_PX = 128


@dataclass
class EmbedSummary:
    embedded: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


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


def source_locality(catalog, record, model: LoadedModel, *deltas: torch.Tensor) -> float | None:
    """Share of the rendered change on the source image (each of ``deltas``) inside the direction's
    own mask; None when the mask file can no longer be read."""
    from .core import locality

    try:
        mask_uri = catalog.get_job(record.job_id).mask_uri
        if mask_uri is None:
            return None
        mask = load_mask(Path(mask_uri), model.resolution, resize=True)
    except (LocobankError, OSError) as e:
        log.warning("direction %d: no locality (%s)", record.id, e)
        return None
    return locality(torch.cat(list(deltas), 0), mask)


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


def embed_directions(catalog, clip: ClipModel, *, ids: list[int] | None = None, model_override: str | None = None,
                     strength: float | None = None, n_probes: int = 4, steps: int | None = None,
                     device: str | None = None, batch: int = 8,
                     progress: Callable[[int], None] | None = None) -> EmbedSummary:
    """Render, embed and store the effect of every direction that has none for this CLIP yet.

    ``strength`` is lambda; by default each direction's model's default for its mask label
    (``LoadedModel.strength_for``)."""
    from .catalog.records import NewEffect

    summary = EmbedSummary()
    start = time.perf_counter()
    todo = ids if ids is not None else catalog.directions_without_effect(clip.clip_id)
    recs = [catalog.get_direction(i) for i in todo]
    by_model: dict[str, list] = {}
    for r in recs:
        by_model.setdefault(r.fingerprint, []).append(r)
    for fp, group in by_model.items():
        try:
            model = model_for(catalog, fp, override=model_override, device=device)
        except LocobankError as e:
            summary.failed += len(group)
            summary.errors.append(str(e))
            if progress:
                progress(len(group))
            continue
        n_steps = int(steps or model.settings.render_steps)
        caches: dict[str, StateCache] = {}  # one per prompt: a text-to-image direction renders under its own
        probes = probe_images(catalog, fp, n_probes)
        for i in range(0, len(group), batch):
            chunk = group[i : i + batch]
            effects, previews = [], []
            for r in chunk:
                lam = float(strength if strength is not None else model.strength_for(r.mask_label))
                try:
                    uris = [r.image_uri] + [p for p in probes if p != r.image_uri][:n_probes]
                    cache = _cache_for(caches, model, r.condition, n_steps)
                    xt = cache.states(uris, r.t_edit)
                    v = catalog.load_vector(r.id, expected_fingerprint=fp).to(model.device, torch.float32)
                    states = torch.cat([xt + lam * v, xt - lam * v, xt[:1]])
                    out = core.sample(cache.model, states, r.t_edit, n_steps)
                    k = len(uris)
                    plus, minus, zero = out[:k], out[k : 2 * k], out[2 * k :]
                    vec, consistency = effect_vector(clip, plus, minus)
                    effects.append(NewEffect(direction_id=r.id, clip_id=clip.clip_id, vector=vec.cpu().numpy().astype(np.float32),
                                             consistency=consistency, n_images=k, strength=lam))
                    loc = source_locality(catalog, r, model, plus[0] - zero[0], minus[0] - zero[0])
                    previews.append((r.id, preview_strip(torch.stack([minus[0], zero[0], plus[0]])), lam, loc))
                except (LocobankError, OSError) as e:
                    summary.failed += 1
                    summary.errors.append(f"direction {r.id}: {e}")
                if progress:
                    progress(1)
            if effects:
                catalog.put_effects(effects)
                for did, png, lam_, loc in previews:
                    catalog.put_preview(did, png, lam_, loc)
            summary.embedded += len(effects)
    summary.seconds = time.perf_counter() - start
    return summary
