"""Do the directions' automatic names say what the directions do? Measured with the probes.

Each direction is rendered at +-lambda (the strength its effect was embedded at) on its own image
and the probe images, as ``index`` renders it for CLIP. For every vocabulary phrase the probes can
read (:data:`PHRASE_PROBES`), its change is the probe's mean change from -lambda to +lambda over
those images, in units of the probe's spread over unedited faces (its natural variation), with the
phrase's sign. What the direction does, read by the probes, is the phrase (and sign of v) it moves
most. Its name *matches* when the phrase it is named after moves the named way by at least
:data:`MATCH_SHARE` of that largest change (hair colours overlap: a lighter hair moves "blond" and
"white" together). A direction whose largest change is below :data:`VISIBLE` changes nothing the
probes see and is counted apart, as is one named after a phrase no probe reads.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ...images import to_uint8
from ..data.faces import HAIR, HELD_OUT_SEED, IRIS, face
from ..data.probes import attribute_score

PHRASE_PROBES: dict[str, tuple[str, int]] = {
    "smile": ("smile", 1), "frown": ("smile", -1), "bigger eyes": ("bigger eyes", 1),
    "smaller eyes": ("bigger eyes", -1), "glasses": ("glasses", 1), "no glasses": ("glasses", -1),
    "long hair": ("long hair", 1), "short hair": ("long hair", -1),
    **{f"{c} eyes": (f"{c} eyes", 1) for c in IRIS}, **{f"{c} hair": (f"{c} hair", 1) for c in HAIR},
}
MATCH_SHARE = 0.5  # the named phrase's change, as a share of the largest, that still names it
VISIBLE = 0.25  # the largest change (in spreads of its probe) below which the probes see nothing
_SEED = re.compile(r"face_(\d+)")


@dataclass
class NameCheck:
    """One direction's name against what the probes see it do (``changes``: per phrase, the change
    along +v in probe spreads; ``does``: the phrase it moves most, signed as names are)."""

    id: int
    mask_label: str | None
    name: str  # e.g. "frown (-v)"
    does: str  # e.g. "smile (+v)"
    largest: float
    named_change: float | None  # the named phrase's change along its named sign (None: no probe reads it)
    changes: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``match``, ``wrong``, ``invisible`` (the probes see no change) or ``unprobed`` (the name's
        phrase has no probe)."""
        if self.largest < VISIBLE:
            return "invisible"
        if self.named_change is None:
            return "unprobed"
        return "match" if self.named_change >= MATCH_SHARE * self.largest else "wrong"


def seed_of(uri: str) -> int | None:
    """The toy face's seed in a file name (``face_1000123.png``), or None."""
    m = _SEED.search(Path(uri).name)
    return int(m.group(1)) if m else None


def probe_spreads(n: int = 200, seed0: int = HELD_OUT_SEED) -> dict[str, float]:
    """Each probe's standard deviation over ``n`` unedited held-out faces."""
    faces = [face(s) for s in range(seed0, seed0 + n)]
    queries = dict.fromkeys(q for q, _ in PHRASE_PROBES.values())
    return {q: float(np.std([attribute_score(q, f.image, f.attrs) for f in faces])) for q in queries}


def phrase_changes(plus, minus, seeds: Sequence[int], spreads: dict[str, float]) -> dict[str, float]:
    """Per phrase, the mean probe change from ``minus`` to ``plus`` renders (images in [-1, 1], one
    per seed) in spreads of its probe, with the phrase's sign."""
    out = {}
    for phrase, (q, sign) in PHRASE_PROBES.items():
        d = [attribute_score(q, to_uint8(p), face(s).attrs) - attribute_score(q, to_uint8(m), face(s).attrs)
             for p, m, s in zip(plus, minus, seeds)]
        out[phrase] = round(sign * float(np.mean(d)) / 2 / max(spreads[q], 1e-9), 4)
    return out


def judge(record, changes: dict[str, float]) -> NameCheck:
    """A direction's :class:`NameCheck` from its phrase changes."""
    from ...search import named

    best = max(changes, key=lambda p: abs(changes[p]))
    named_change = None
    if record.label in changes:
        named_change = (record.label_sign or 1) * changes[record.label]
    return NameCheck(int(record.id), record.mask_label, named(record.label, record.label_sign),
                     named(best, 1 if changes[best] >= 0 else -1), abs(changes[best]), named_change, changes)


def name_checks(catalog, clip, fingerprint: str, *, ids: Sequence[int] | None = None, n_probes: int = 4,
                steps: int | None = None, device: str | None = None, progress=None) -> list[NameCheck]:
    """Every named direction of the model ``fingerprint`` (or only ``ids``), checked (see the module
    docstring); directions whose images are not toy faces are skipped."""
    from ...embed import EffectRenderer, probe_images
    from ...models.recorded import model_for

    model = model_for(catalog, fingerprint, device=device)
    renderer = EffectRenderer(catalog, clip, model, probe_images(catalog, fingerprint, n_probes), n_probes,
                              int(steps or model.settings.render_steps), None)
    spreads = probe_spreads()
    records = [catalog.get_direction(i) for i in (ids if ids is not None else
                                                  [r.id for r in catalog.list_directions()])]
    out = []
    for r in records:
        if r.fingerprint != fingerprint or not r.label:
            continue
        seeds = [seed_of(u) for u in renderer.uris(r)]
        if None in seeds:
            continue
        plus, minus, _ = renderer.render(r, renderer.strength_for(r), renderer.vector(r))
        out.append(judge(r, phrase_changes(plus, minus, seeds, spreads)))
        if progress:
            progress(1)
    return out


def summary(checks: Sequence[NameCheck]) -> dict:
    """Counts per verdict, and the share of matches among the directions the probes can judge."""
    counts = {v: sum(c.verdict == v for c in checks) for v in ("match", "wrong", "invisible", "unprobed")}
    judged = counts["match"] + counts["wrong"]
    return {**counts, "n": len(checks), "match_share": counts["match"] / judged if judged else float("nan")}


def as_rows(checks: Sequence[NameCheck]) -> list[dict]:
    """Plain data, with each verdict."""
    return [{**asdict(c), "verdict": c.verdict} for c in checks]
