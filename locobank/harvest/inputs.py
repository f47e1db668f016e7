"""Finding (image, mask) pairs on disk: a folder with ``<stem>_<label>.png`` masks, a
CelebAMask-HQ tree, or a ``manifest.jsonl``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..files import IMAGE_SUFFIXES, images_in, mask_owner
from ..paths import slug
from .conditions import condition_of


@dataclass(frozen=True)
class Pair:
    """One image and one labelled mask of it; for text-to-image models, the condition it is
    harvested under (see :mod:`locobank.harvest.conditions`)."""

    image: Path
    mask: Path
    label: str
    condition: dict | None = field(default=None, hash=False)


def _labels_ok(label: str, labels: set[str] | None) -> bool:
    return labels is None or label in labels


def from_manifest(path: Path, labels: set[str] | None = None) -> list[Pair]:
    """Rows ``{"image": "a.png", "masks": {"eyes": "a_eyes.png", ...}}``; paths relative to the manifest.

    For text-to-image models a row may add ``prompt`` (the image's caption), ``negative_prompt``,
    ``guidance`` and ``edit_prompt`` (a text-supervised direction towards it); a row with ``prompt``
    and ``seed`` and no ``image`` stands for the prompt's sample from that seed, written to
    ``generated/`` beside the manifest when the harvest is planned."""
    base = path.parent
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            cond = condition_of(row, f"{path}:{n}")
            image = base / row["image"] if "image" in row or cond is None or "seed" not in cond \
                else base / "generated" / f"{slug(cond['prompt'], 'prompt')[:60]}-seed{cond['seed']}.png"
            masks = row.get("masks") or {}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"{path}:{n}: not a manifest row with 'image' (or 'prompt' and 'seed') and 'masks' "
                             f"({e})") from e
        for label, mask in sorted(masks.items()):
            if _labels_ok(label, labels):
                pairs.append(Pair(image, base / mask, label, cond))
    return pairs


def from_folder(folder: Path, mask_folder: Path | None = None, labels: set[str] | None = None) -> list[Pair]:
    """Images ``<stem>.<ext>`` with masks ``<stem>_<label>.png`` beside them or in ``mask_folder``.

    Beside the images, a file named like ``<another image's stem>_<label>.png`` is a mask."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if mask_folder is None:
        images = images_in(folder)
        masks = [p for p in files if p not in set(images)]
    else:
        masks = sorted(p for p in mask_folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
        images = files
    by_stem: dict[str, list[tuple[str, Path]]] = {}
    image_stems = {p.stem for p in images}
    for m in masks:
        hit = mask_owner(m.stem, image_stems)
        if hit:
            by_stem.setdefault(hit[0], []).append((hit[1], m))
    return [Pair(img, m, label) for img in images for label, m in by_stem.get(img.stem, []) if _labels_ok(label, labels)]


_CELEBA_MASK = re.compile(r"^(\d+)_(.+)$")


def from_celebamask(root: Path, labels: set[str] | None = None) -> list[Pair]:
    """CelebAMask-HQ: ``CelebA-HQ-img/<n>.jpg`` and ``CelebAMask-HQ-mask-anno/<k>/<nnnnn>_<label>.png``."""
    img_dir = root / "CelebA-HQ-img"
    anno = root / "CelebAMask-HQ-mask-anno"
    images = {int(p.stem): p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit()}
    pairs = []
    for m in sorted(anno.rglob("*.png")):
        hit = _CELEBA_MASK.match(m.stem)
        if not hit:
            continue
        n, label = int(hit.group(1)), hit.group(2)
        if n in images and _labels_ok(label, labels):
            pairs.append(Pair(images[n], m, label))
    return pairs


def discover(images: Path, masks: Path | None = None, labels: set[str] | None = None) -> list[Pair]:
    """Pairs from a manifest file, a folder holding ``manifest.jsonl``, a CelebAMask-HQ root, or a plain folder."""
    images = Path(images)
    if images.is_file():
        if images.suffix == ".jsonl":
            return from_manifest(images, labels)
        raise InputError(f"{images}: give a folder or a manifest.jsonl")
    if not images.is_dir():
        raise InputError(f"{images}: no such folder")
    if masks is None and (images / "manifest.jsonl").exists():
        return from_manifest(images / "manifest.jsonl", labels)
    if masks is None and (images / "CelebA-HQ-img").is_dir() and (images / "CelebAMask-HQ-mask-anno").is_dir():
        return from_celebamask(images, labels)
    return from_folder(images, masks, labels)
