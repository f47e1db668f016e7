"""Where the toy models shipped in data/ live, what the model name `toy` means, and safe file names."""

from __future__ import annotations

import re
from pathlib import Path

def shipped(installed: str, checkout: str) -> Path:
    """A folder that ships with locobank: ``locobank/<installed>`` in an installed wheel, else
    ``<checkout>`` beside the package in a source checkout (or an editable install)."""
    here = Path(__file__).resolve().parent
    inside = here / installed
    return inside if inside.is_dir() else here.parent / checkout


DATA = shipped("toydata", "data")
TOY_DDPM = DATA / "models" / "toyfaces-ddpm"
TOY_CLIP = DATA / "models" / "toyfaces-clip"
TOY_SD = DATA / "models" / "toyfaces-sd"
FACE_VOCAB = DATA / "vocab" / "face.txt"


def slug(text: str, fallback: str = "x") -> str:
    """``text`` as a file-name stem: every run of characters other than letters, digits and ``.-_``
    becomes ``_``, leading and trailing dots and underscores go (``fallback`` if nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._") or fallback


def resolve_model(name: str | None) -> str:
    """``toy`` (or nothing) means the shipped toy DDPM, ``toy-sd`` the shipped toy latent model;
    anything else is a Hub id or folder."""
    if not name or name == "toy":
        return str(TOY_DDPM)
    if name == "toy-sd":
        return str(TOY_SD)
    return name
