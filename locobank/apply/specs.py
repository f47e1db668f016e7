"""Directions as ``ID[:STRENGTH]`` text and images as files, folders or globs: what a user names
(the CLI splits its words into these)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..files import images_in

SPEC = re.compile(r"^(\d+)(?::(.*))?$")


@dataclass(frozen=True)
class DirectionSpec:
    """A direction id and its strength, as ``ID[:STRENGTH]`` names them: ``strength`` is lambda
    (None: the default); ``units`` (``ID:2x``) is a multiple of the direction's unit strength, the
    one its card measured when it was indexed (:mod:`locobank.rank.linear`)."""

    id: int
    strength: float | None = None
    units: float | None = None


def parse_spec(text: str) -> DirectionSpec:
    """'12', '12:4', '12:-6.5', '12:1.5x' -> DirectionSpec; anything else is a clear InputError."""
    m = SPEC.match(text.strip())
    if not m:
        raise InputError(f"{text!r} is not a direction: use ID, ID:STRENGTH or ID:UNITSx, e.g. 12:-4 or 12:2x")
    value = (m.group(2) or "").strip()
    if value == "":
        return DirectionSpec(int(m.group(1)))
    units = value.lower().endswith("x")
    try:
        number = float(value[:-1] if units else value)
    except ValueError as e:
        raise InputError(f"strength {value!r} of direction {m.group(1)} is not a number (or a number of units, "
                         "e.g. 2x)") from e
    if not units:
        return DirectionSpec(int(m.group(1)), number)  # its range is checked with the request's
    if not math.isfinite(number):
        raise InputError(f"strength {value!r} of direction {m.group(1)} is not a finite number of units")
    return DirectionSpec(int(m.group(1)), units=number)


def expand_images(items: Sequence[str | Path]) -> list[Path]:
    """Files, folders (their images) and globs, in order, without duplicates."""
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

