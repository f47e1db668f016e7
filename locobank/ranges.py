"""Strength scales for directions indexed before catalogs recorded them (revision 0008): each
card's unit strength and linear limit (:mod:`locobank.rank.linear`), measured on the same images
``index`` renders its effect on, without rendering the effect again."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .embed import EffectRenderer, probe_images, source_mask
from .errors import LocobankError
from .models.recorded import model_for


@dataclass
class RangeSummary:
    """How many scales were measured, which directions failed and why, and how long it took."""

    measured: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def measure_ranges(catalog, *, ids: Sequence[int] | None = None, model_override: str | None = None,
                   n_probes: int = 4, steps: int | None = None, device: str | None = None,
                   progress: Callable[[int], None] | None = None) -> RangeSummary:
    """Measure and record the strength scale of every direction whose card has none (or of
    ``ids``), at its model's default strength for its part, on its own image and ``n_probes`` probes."""
    summary, start = RangeSummary(), time.perf_counter()
    groups: dict[str, list] = {}
    for r in catalog.get_directions(catalog.directions_without_range() if ids is None else ids).values():
        groups.setdefault(r.fingerprint, []).append(r)
    for fp, group in groups.items():
        try:
            model = model_for(catalog, fp, override=model_override, device=device)
        except LocobankError as e:
            summary.errors += [f"direction {r.id}: {e}" for r in group]
            continue
        renderer = EffectRenderer(catalog, None, model, probe_images(catalog, fp, n_probes), n_probes,
                                  int(steps or model.settings.render_steps), None)
        for r in group:
            _measure_one(catalog, renderer, r, summary)
            if progress:
                progress(1)
    summary.seconds = time.perf_counter() - start
    return summary


def _measure_one(catalog, renderer: EffectRenderer, r, summary: RangeSummary) -> None:
    """One direction's scale measured and recorded; a failure is counted, not raised."""
    mask = source_mask(catalog, r, renderer.model)
    if mask is None:
        summary.errors.append(f"direction {r.id}: its mask file can no longer be read")
        return
    try:
        rng = renderer.scale(r, renderer.strength_for(r), renderer.vector(r), mask)
    except (LocobankError, OSError) as e:
        summary.errors.append(f"direction {r.id}: {e}")
        return
    catalog.set_strength_range(r.id, rng.unit, rng.limit)
    summary.measured += 1
