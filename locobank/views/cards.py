"""The facts every view of a direction shows: its card (name, sign, part, strength, scores,
provenance, the command that applies it) and its preview strip, turned to read "less -> more".

Views read only the catalog (stored preview strips, effects, provenance), so they need no model and
no torch. A preview strip is the source image edited at -strength, 0 and +strength; views turn it
so it reads "less -> more" of the direction's name (the name describes ``label_sign * v``).
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..catalog.records import DirectionRecord

from ..settings import DEFAULT_STRENGTH

MIN_TILE = 96
NO_PREVIEW = "no preview (run locobank index build)"

RenderFn = Callable[[int], tuple[Sequence[np.ndarray], Sequence[float]]]


# -- the facts both views show ----------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """One direction as the sheet and the gallery describe it."""

    id: int
    name: str
    sign: int
    mask: str
    model: str
    fingerprint: str
    sigma: float
    transfer: float | None
    local: float | None
    strength: float | None
    name_sign: int = 1  # the name describes name_sign * v (the catalog's label_sign)
    preview_strength: float | None = None  # what the stored preview strip was rendered at (-s, 0, +s)
    prompt: str | None = None  # text-to-image models: the prompt it was found (and is applied) under
    edit_prompt: str | None = None  # text-supervised directions: the edit prompt that defined it
    unit: float | None = None  # the strength of one unit of change (``apply ID:1x``), measured when indexed
    limit: float | None = None  # the strength up to which it stayed linear and local when indexed

    @property
    def caption(self) -> str:
        """``#id  name (+v|-v)  mask=..  σ=..  transfer=..  local=..`` (fields split on double spaces)."""
        return "  ".join(
            [
                f"#{self.id}",
                f"{self.name} ({'+' if self.name_sign > 0 else '-'}v)",
                f"mask={self.mask}",
                f"σ={self.sigma:.3g}",
                f"transfer={format_number(self.transfer)}",
                f"local={format_number(self.local)}",
            ]
        )

    def apply_command(self, db: str | None = None) -> str:
        """The shell command that applies the named edit (``sign * strength``) to an image."""
        signed = self.sign * (self.strength if self.strength is not None else DEFAULT_STRENGTH)
        cmd = f"locobank apply {self.id}:{_strength(signed)} IMAGE --out OUT.png"
        if self.prompt is not None:
            cmd += f" --prompt {shlex.quote(self.prompt)}"
        return cmd + (f" --db {shlex.quote(db)}" if db else "")


def format_number(x: float | None, fmt: str = ".2f", missing: str = "-") -> str:
    """A figure that a direction may lack (a score not measured yet): ``missing`` stands in for it."""
    return missing if x is None else format(x, fmt)


def _strength(x: float) -> str:
    """Strengths as typed on a command line: ``-8``, ``0``, ``+2.5``."""
    return "0" if x == 0 else f"{x:+g}"


def _tick(unit: float, strength: float | None) -> str:
    """``unit * strength`` as typed on a command line, or ``-λ``/``+λ`` when the strength is not known."""
    if strength is not None or unit == 0:
        return _strength(unit * (strength or 0.0))
    return "-λ" if unit < 0 else "+λ"


def describe(catalog: Any, record: DirectionRecord, *, clip_id: str | None = None, sign: int | None = None) -> Card:
    """The card of one direction; ``transfer`` needs ``clip_id`` (effects are stored per CLIP model)."""
    effect = catalog.effect_of(record.id, clip_id) if clip_id is not None else None
    shown, local, unit, limit = catalog.preview_facts(record.id)
    if sign is None:
        sign = record.label_sign or 1
    return Card(
        id=record.id,
        name=record.label or "unnamed",
        sign=-1 if sign < 0 else 1,
        mask=record.mask_label,
        model=record.model_id,
        fingerprint=record.fingerprint,
        sigma=float(record.singular_value),
        transfer=None if effect is None or effect.consistency is None else float(effect.consistency),
        local=local,
        strength=None if effect is None else float(effect.strength),
        name_sign=-1 if (record.label_sign or 1) < 0 else 1,
        preview_strength=None if shown is None else float(shown),
        prompt=None if record.condition is None else record.condition.get("prompt", ""),
        edit_prompt=None if record.condition is None else record.condition.get("edit_prompt"),
        unit=unit,
        limit=limit,
    )


def split_strip(png: bytes) -> list[np.ndarray]:
    """The square tiles of a preview strip (tiles side by side, each as high as the strip)."""
    with Image.open(io.BytesIO(png)) as im:
        arr = np.asarray(im.convert("RGB"))
    h, w = arr.shape[:2]
    n = max(1, round(w / h)) if h else 1
    step = w // n
    return [arr[:, i * step : (i + 1) * step] for i in range(n)]


def oriented(tiles: Sequence[np.ndarray], sign: int) -> list[np.ndarray]:
    """Tiles rendered along v (-s ... +s) in the order that reads less -> more along ``sign * v``,
    the direction's name: the one way every view turns a preview strip."""
    return list(tiles[::-1]) if sign < 0 else list(tiles)


def typed_row(tiles: list[np.ndarray], strengths: list[float | None], sign: int) -> tuple[list, list[str]]:
    """Tiles rendered at ``strengths`` (along v) turned to read less -> more along ``sign * v``, and
    each tile's label: the strength to type in ``locobank apply ID:STRENGTH`` to get that tile
    (signed along v, as hits and ``apply`` are). A preview strip of unknown strength reads
    ``-λ 0 +λ``. The one labelling convention of the sheet and the gallery."""
    if len(tiles) == 3 and all(s is None for s in strengths):
        labels = ["-λ", "0", "+λ"]
    else:
        labels = ["?" if s is None else _strength(s) for s in strengths]
    return oriented(tiles, sign), labels[::-1] if sign < 0 else labels
