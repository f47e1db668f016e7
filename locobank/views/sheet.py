"""Contact sheets: labelled PNG grids of directions' preview strips."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from ..paths import slug

from .cards import MIN_TILE, NO_PREVIEW, Card, RenderFn, _oriented, _strength, describe, split_strip

# -- contact sheet ----------------------------------------------------------------------------------


@functools.cache
def _font(size: int = 13) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font has one size
        return ImageFont.load_default()


@functools.cache
def _has_glyph(ch: str) -> bool:
    """Whether the default font draws ``ch`` (it has no Greek, for one) rather than a missing-glyph box."""
    if ch.isascii():
        return True

    def ink(c: str) -> bytes:
        im = Image.new("L", (32, 32))
        ImageDraw.Draw(im).text((4, 4), c, font=_font(), fill=255)
        return im.tobytes()

    return ink(ch) != ink("\uffff")


_SPELLED = {"σ": "sigma", "λ": "lambda", "−": "-", "→": "->", "…": "..."}


def _drawable(text: str) -> str:
    return "".join(c if _has_glyph(c) else _SPELLED.get(c, "?") for c in text)


@dataclass(frozen=True)
class SheetLayout:
    """Where everything goes on a contact sheet; the drawing and the tests share it."""

    rows: int
    cols: int
    tile: int
    title: bool = False
    pad: int = 8
    gap: int = 4
    label_w: int = 260
    line_h: int = 17

    @property
    def header_h(self) -> int:
        return self.pad + self.line_h * (2 if self.title else 1) + self.gap

    @property
    def size(self) -> tuple[int, int]:
        width = self.pad + self.label_w + self.cols * self.tile + (self.cols - 1) * self.gap + self.pad
        height = self.header_h + self.rows * (self.tile + self.gap) + self.pad
        return width, height

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of one tile."""
        left = self.pad + self.label_w + col * (self.tile + self.gap)
        top = self.header_h + row * (self.tile + self.gap)
        return left, top, left + self.tile, top + self.tile


def _tile_size(native: list[int]) -> int:
    """The common tile size: the largest native size, scaled by an integer up to at least MIN_TILE."""
    size = max(native, default=MIN_TILE)
    return size * -(-MIN_TILE // size) if size < MIN_TILE else size


def _centered(draw: ImageDraw.ImageDraw, x: float, y: float, text: str, fill: Any) -> None:
    draw.text((x - draw.textlength(text, font=_font()) / 2, y), text, font=_font(), fill=fill)


def _wrap(text: str, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """Greedy wrap on double-space field breaks, then words; over-long words are cut with '...'."""
    font = _font()
    lines: list[str] = []
    for field in [p for p in re.split(r"\s{2,}", text) if p]:
        for word in field.split(" ") if draw.textlength(field, font=font) > width else [field]:
            while draw.textlength(word, font=font) > width and len(word) > 1:
                word = word[:-4] + "..." if len(word) > 4 else word[:-1]
            joined = f"{lines[-1]}  {word}" if lines else word
            if lines and draw.textlength(joined, font=font) <= width:
                lines[-1] = joined
            else:
                lines.append(word)
    return lines


def search_sheet(catalog: Any, query: str, hits: Sequence[Any], folder: Path, *, clip_id: str | None = None) -> Path:
    """The contact sheet of a query's search hits, each row along the sign that does the edit:
    ``folder/<query>.png``, with every run of characters other than letters, digits, ``.-_`` as ``_``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return contact_sheet(catalog, [h.id for h in hits], folder / f"{slug(query, 'query')}.png",
                         signs=[h.sign for h in hits], title=f'search: "{query}"', clip_id=clip_id)


def contact_sheet(
    catalog: Any,
    ids: Sequence[int],
    out: Path,
    *,
    signs: Sequence[int] | None = None,
    title: str | None = None,
    clip_id: str | None = None,
    render: RenderFn | None = None,
) -> Path:
    """Draw one labelled row per direction, columns are strengths; returns ``out``.

    Rows are the stored preview strips (-strength, 0, +strength), or whatever ``render(id)`` returns
    as (uint8 HxWx3 images, strengths along v). A row whose sign is -1 (``signs``, else the sign its
    name was given for) runs right to left, so every row goes "less -> more" of its name, and the
    header's strengths are along ``sign * v``. ``clip_id`` picks whose transfer consistency to show.
    """
    ids = [int(i) for i in ids]
    if not ids:
        raise InputError("no directions to draw")
    if signs is not None and len(signs) != len(ids):
        raise InputError(f"got {len(signs)} signs for {len(ids)} directions")
    rows = [_row(catalog, did, clip_id, None if signs is None else signs[i], render) for i, did in enumerate(ids)]
    cols = max((len(t) for _, t, _ in rows), default=0) or 3
    tile = _tile_size([max(t.shape[:2]) for _, ts, _ in rows for t in ts])
    layout = SheetLayout(rows=len(rows), cols=cols, tile=tile, title=bool(title))
    sheet = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(sheet)
    header = _draw_header(draw, layout, rows, cols, title, "the query" if signs is not None else "the name")
    for r, (card, tiles, along) in enumerate(rows):
        _draw_row(sheet, draw, layout, r, card, tiles, along, header)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out


def _row(catalog: Any, did: int, clip_id: str | None, sign: int | None, render: RenderFn | None):
    """One direction's card, its tiles and their strengths, turned to read "less -> more"."""
    card = describe(catalog, catalog.get_direction(did), clip_id=clip_id, sign=sign)
    if render is not None:
        images, strengths = render(did)
        if len(images) != len(strengths):
            raise InputError(f"render({did}) gave {len(images)} images for {len(strengths)} strengths")
        tiles = [np.asarray(im, dtype=np.uint8) for im in images]
        along: list[float | None] = [float(s) for s in strengths]
    else:
        png = catalog.get_preview(did)
        tiles = split_strip(png) if png is not None else []
        along = [None] * len(tiles)
        if len(tiles) == 3 and card.strength is not None:  # previews are drawn at the effect's strength
            along = [-card.strength, 0.0, card.strength]
    tiles, along = _oriented(tiles, along, card.sign)
    return card, tiles, along


def _draw_header(draw, layout: SheetLayout, rows: list, cols: int, title: str | None, along_what: str):
    """The title and the strengths over the columns; returns the strengths every full row shares."""
    font, ink, faint = _font(), (20, 20, 20), (110, 110, 110)
    y = layout.pad
    if title:
        draw.text((layout.pad, y), _drawable(title), font=font, fill=ink)
        y += layout.line_h
    header = next((a for _, t, a in rows if len(t) == cols and all(s is not None for s in a)), None)
    draw.text((layout.pad, y), f"strength (along {along_what})" if header else "strength", font=font, fill=faint)
    for c in range(cols):
        if header is not None:
            text = _strength(header[c])
        elif cols == 3:
            text = ("-strength", "0", "+strength")[c]
        else:
            continue
        left, _, right, _ = layout.tile_box(0, c)
        _centered(draw, (left + right) / 2, y, text, ink)
    return header


def _draw_row(sheet, draw, layout: SheetLayout, r: int, card: Card, tiles: list, along: list, header) -> None:
    """Row ``r``: the card's caption, then its tiles, each labelled where its strength differs from the header."""
    font, ink, faint = _font(), (20, 20, 20), (110, 110, 110)
    tile, cols = layout.tile, layout.cols
    left, top, _, bottom = layout.tile_box(r, 0)
    lines = _wrap(_drawable(card.caption), layout.label_w - layout.pad, draw)
    for k, line in enumerate(lines[: max(1, tile // layout.line_h)]):
        draw.text((layout.pad, top + k * layout.line_h), line, font=font, fill=ink if k == 0 else faint)
    if not tiles:
        right = layout.tile_box(r, cols - 1)[2]
        draw.rectangle((left, top, right - 1, bottom - 1), fill=(205, 205, 205))
        msg = _wrap(NO_PREVIEW.replace(" (", "  ("), right - left - 2 * layout.pad, draw)
        y0 = top + (tile - len(msg) * layout.line_h) / 2
        for k, line in enumerate(msg):
            _centered(draw, (left + right) / 2, y0 + k * layout.line_h, line, (70, 70, 70))
        return
    for c, arr in enumerate(tiles):
        im = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr).convert("RGB")
        if im.size != (tile, tile):
            im = im.resize((tile, tile), Image.NEAREST if max(im.size) <= tile else Image.LANCZOS)
        box = layout.tile_box(r, c)
        sheet.paste(im, box[:2])
        if along[c] is not None and (header is None or along[c] != header[c]):
            text = _strength(along[c])
            x, y = box[0] + 2, box[3] - layout.line_h
            draw.rectangle((x, y, x + draw.textlength(text, font=font) + 4, box[3] - 1), fill=(0, 0, 0))
            draw.text((x + 2, y + 1), text, font=font, fill=(255, 255, 255))
