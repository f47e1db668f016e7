"""What a user names on the command line: directions as ``ID[:STRENGTH]`` and images as files,
folders or globs."""

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
    """``ID[:STRENGTH]`` from the command line; strength None means the default."""

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
                raise InputError(_missing(str(it)))
            out += matches
    seen: dict[Path, None] = {}
    for p in out:
        seen.setdefault(p, None)
    if not seen:
        raise InputError("no images to edit")
    return list(seen)


def _missing(item: str) -> str:
    """Why a command-line word is neither an image nor a folder, and what was probably meant."""
    if re.fullmatch(r"-\d+(:.*)?", item):
        return f"{item}: direction ids are positive whole numbers (a negative strength goes after the colon, e.g. 12:-4)"
    if item.startswith("--"):
        return f"{item}: no such option; see `locobank apply --help`"
    if not Path(item).suffix and "/" not in item and "\\" not in item:
        return (f"{item!r} is neither a direction id nor an image file; to apply the best match for a text, "
                f"use --query {item!r}")
    return f"{item}: no such image, folder or glob match"
