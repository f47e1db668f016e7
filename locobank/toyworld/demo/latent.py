"""The demo's latent half: its faces harvested again with the toy latent text-to-image model
(T-LOCO through inversion under each face's caption), unsupervised and text-supervised, into the
same catalog, so that one index and one search rank both families. Here: what the half holds, the
manifest of its harvest, and its directions as the report lists them; its queries go through the
demo's one search -> apply loop (:mod:`.queries`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..data.captions import edit_caption
from ..data.faces import sample_attributes
from ..data.probes import lacks, part_for

SUPERVISED = ("smile", "blond hair")  # text-supervised jobs: the first harvest face lacking each


@dataclass
class LatentHalf:
    """What the latent half made: its model, its directions, and per query its hits and edits."""

    model_id: str = ""
    fingerprint: str = ""
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    total: int = 0  # latent directions harvested; ``directions`` holds each job's top one
    directions: list[dict] = field(default_factory=list)
    queries: dict[str, dict] = field(default_factory=dict)


def _rows(folder: Path) -> list[dict]:
    """The rows of a face folder's ``manifest.jsonl`` (as ``write_dataset`` wrote them)."""
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]


def write_manifest(faces: Path, labels: tuple[str, ...], supervised: tuple[str, ...] = SUPERVISED) -> Path:
    """``faces/latent.jsonl``: each face under its caption with its part masks, and per query in
    ``supervised`` whose part is among ``labels`` one text-supervised row (caption -> the caption
    with the attribute) on the first face that lacks it."""
    rows = _rows(faces)
    out = [{"image": r["image"], "prompt": r["caption"], "masks": {k: r["masks"][k] for k in labels if k in r["masks"]}}
           for r in rows]
    for q in supervised:
        part = part_for(q)
        if part not in labels:
            continue
        lacking = [r for r in rows if lacks(q, r["attributes"]["seed"]) and part in r["masks"]]
        if lacking:
            r = lacking[0]
            edit = edit_caption(sample_attributes(r["attributes"]["seed"]), q)
            out.append({"image": r["image"], "prompt": r["caption"], "edit_prompt": edit, "masks": {part: r["masks"][part]}})
    path = faces / "latent.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def describe_directions(cat, half: LatentHalf, out: Path) -> None:
    """The top latent direction of each job, for the report: how it was found, its part, name and
    preview strip (``half.total`` counts them all)."""
    from ...search import named

    (out / "latent").mkdir(exist_ok=True)
    mine = [r for r in cat.list_directions() if r.fingerprint == half.fingerprint]
    half.total = len(mine)
    for r in mine:
        if r.rank_index != 0:
            continue
        c = r.condition or {}
        png = cat.get_preview(r.id)
        preview = None
        if png is not None:
            preview = f"latent/preview_{r.id}.png"
            (out / preview).write_bytes(png)
        half.directions.append({"id": r.id, "mask": r.mask_label, "name": named(r.label, r.label_sign),
                                "prompt": c.get("prompt", ""), "edit_prompt": c.get("edit_prompt"),
                                "image": Path(r.image_uri).name, "preview": preview})
