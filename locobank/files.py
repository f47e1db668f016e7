"""Files on disk that every stage reads: content hashes, and the images of a folder under the
naming convention ``<stem>.png`` with masks ``<stem>_<label>.png`` beside it."""

from __future__ import annotations

import hashlib
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mask_owner(stem: str, stems: set[str]) -> tuple[str, str] | None:
    """(image stem, label) when ``stem`` reads as ``<image stem>_<label>``; the longest image stem wins."""
    parts = stem.split("_")
    for cut in range(len(parts) - 1, 0, -1):
        head = "_".join(parts[:cut])
        if head in stems:
            return head, "_".join(parts[cut:])
    return None


def images_in(folder: Path) -> list[Path]:
    """The images of a folder, leaving out masks named ``<another image's stem>_<label>.png``."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    stems = {p.stem for p in files}
    return [p for p in files if not (p.suffix.lower() == ".png" and mask_owner(p.stem, stems))]
