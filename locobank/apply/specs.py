"""Directions as ``ID[:STRENGTH]`` text and images as files, folders or globs: what a user names
(the CLI splits its words into these)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..files import images_in

SPEC = re.compile(r"^(\d+)(?::(.*))?$")


@dataclass(frozen=True)
class DirectionSpec:
    """A direction id and its strength (None: the default), as ``ID[:STRENGTH]`` names them."""

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

