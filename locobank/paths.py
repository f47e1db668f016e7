"""Where the toy models shipped in data/ live, and what the model name `toy` means."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
TOY_DDPM = DATA / "models" / "toyfaces-ddpm"
TOY_CLIP = DATA / "models" / "toyfaces-clip"


def resolve_model(name: str | None) -> str:
    """``toy`` (or nothing) means the shipped toy DDPM; anything else is a Hub id or folder."""
    if not name or name == "toy":
        return str(TOY_DDPM)
    return name
