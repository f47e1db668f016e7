"""The static HTML gallery of a catalog (its page template is ``gallery.html`` beside this file)."""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


from .cards import describe, split_strip, typed_row

_PAGE = (Path(__file__).parent / "gallery.html").read_text(encoding="utf-8")


# -- gallery ----------------------------------------------------------------------------------------


def _script_json(value: Any) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' can close the element or start markup."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    for raw in "<>&\u2028\u2029":
        text = text.replace(raw, f"\\u{ord(raw):04x}")
    return text


def gallery(
    catalog: Any,
    out_dir: Path,
    *,
    clip_id: str | None = None,
    title: str = "locobank gallery",
    db: str | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/previews/<id>.png``: a gallery that opens from file://.

    One card per live direction, filtered in the page by model, mask and name; the filter also
    reads the URL hash (``index.html#mask=mouth&name=smile``). ``db`` is added to each card's
    ``locobank apply`` command when the catalog is not the default one. Returns the index path.
    """
    out_dir = Path(out_dir)
    previews = out_dir / "previews"
    previews.mkdir(parents=True, exist_ok=True)
    items: list[dict[str, Any]] = []
    written: set[str] = set()
    for record in catalog.list_directions():
        card = describe(catalog, record, clip_id=clip_id)
        png = catalog.get_preview(record.id)
        item = asdict(card)
        item.update(caption=card.caption, command=card.apply_command(db), preview=None, strengths=[])
        if png is not None:
            tiles = split_strip(png)
            s = card.preview_strength
            rendered = [-s, 0.0, s] if s is not None and len(tiles) == 3 else [None] * len(tiles)
            tiles, labels = typed_row(tiles, rendered, card.sign)
            if len(tiles) == 3:  # the strengths to pass to `locobank apply`, as the strip was rendered
                item["strengths"] = labels
            name = f"{record.id}.png"
            strip = Image.fromarray(np.concatenate(tiles, axis=1))
            strip.save(previews / name, format="PNG", optimize=True)
            written.add(name)
            item.update(preview=f"previews/{name}", preview_w=strip.width, preview_h=strip.height)
        items.append(item)
    for old in previews.glob("*.png"):  # directions deleted since the last run
        if re.fullmatch(r"\d+\.png", old.name) and old.name not in written:
            old.unlink()
    note = f"transfer = consistency of the edit across images, as seen by CLIP {clip_id}" if clip_id else (
        "transfer consistency not shown: no CLIP model was given")
    fills = {"TITLE": html.escape(title), "TOTAL": str(len(items)), "NOTE": html.escape(note), "DATA": _script_json(items)}
    index = out_dir / "index.html"
    index.write_text(re.sub(r"__([A-Z]+)__", lambda m: fills[m.group(1)], _PAGE), encoding="utf-8")
    return index


