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

from .cards import MIN_TILE, NO_PREVIEW, Card, RenderFn, describe, split_strip, typed_row

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
    """Where everything goes on a contact sheet; the drawing and the tests share it.

    Each row has a line of strengths above its tiles (``band_box``), so a row always carries the
    strengths it was rendered at, whatever the rows around it were rendered at."""

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
    def row_h(self) -> int:
        return self.line_h + self.tile + self.gap

    @property
    def size(self) -> tuple[int, int]:
        width = self.pad + self.label_w + self.cols * self.tile + (self.cols - 1) * self.gap + self.pad
        height = self.header_h + self.rows * self.row_h + self.pad
        return width, height

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of one tile."""
        left = self.pad + self.label_w + col * (self.tile + self.gap)
        top = self.header_h + row * self.row_h + self.line_h
        return left, top, left + self.tile, top + self.tile

    def band_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the strength label over one tile."""
        left, top, right, _ = self.tile_box(row, col)
        return left, top - self.line_h, right, top


@dataclass(frozen=True)
class SheetRow:
    """One row of a sheet: the direction's card, its tiles in drawing order, and over each tile the
    strength to type in ``locobank apply ID:STRENGTH`` for it (as the tile was rendered)."""

    card: Card
    tiles: list
    labels: list[str]


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

    Rows are the stored preview strips (rendered at -s, 0 and +s along v, s stored with the strip),
    or whatever ``render(id)`` returns as (uint8 HxWx3 images, strengths along v). A row whose sign
    is -1 (``signs``, else the sign its name was given for) runs right to left, so every row goes
    "less -> more" of its name (or the query). Over each tile is the strength to pass to
    ``locobank apply`` for it, as the gallery and search hits show. ``clip_id`` picks whose
    transfer consistency to show.
    """
    rows = sheet_rows(catalog, ids, signs=signs, clip_id=clip_id, render=render)
    cols = max((len(r.tiles) for r in rows), default=0) or 3
    tile = _tile_size([max(t.shape[:2]) for r in rows for t in r.tiles])
    layout = SheetLayout(rows=len(rows), cols=cols, tile=tile, title=bool(title))
    sheet = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(sheet)
    _draw_header(draw, layout, title, "the query" if signs is not None else "its name")
    for r, row in enumerate(rows):
        _draw_row(sheet, draw, layout, r, row)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out


def sheet_rows(
    catalog: Any,
    ids: Sequence[int],
    *,
    signs: Sequence[int] | None = None,
    clip_id: str | None = None,
    render: RenderFn | None = None,
) -> list[SheetRow]:
    """The rows ``contact_sheet`` draws: cards, tiles turned to read "less -> more", and labels."""
    ids = [int(i) for i in ids]
    if not ids:
        raise InputError("no directions to draw")
    if signs is not None and len(signs) != len(ids):
        raise InputError(f"got {len(signs)} signs for {len(ids)} directions")
    return [_row(catalog, did, clip_id, None if signs is None else signs[i], render) for i, did in enumerate(ids)]


def _row(catalog: Any, did: int, clip_id: str | None, sign: int | None, render: RenderFn | None) -> SheetRow:
    """One direction's card, its tiles and their labels, turned to read "less -> more"."""
    card = describe(catalog, catalog.get_direction(did), clip_id=clip_id, sign=sign)
    if render is not None:
        images, strengths = render(did)
        if len(images) != len(strengths):
            raise InputError(f"render({did}) gave {len(images)} images for {len(strengths)} strengths")
        tiles = [np.asarray(im, dtype=np.uint8) for im in images]
        rendered: list[float | None] = [float(s) for s in strengths]
    else:
        png = catalog.get_preview(did)
        tiles = split_strip(png) if png is not None else []
        s = card.preview_strength
        rendered = [-s, 0.0, s] if s is not None and len(tiles) == 3 else [None] * len(tiles)
    tiles, labels = typed_row(tiles, rendered, card.sign)
    return SheetRow(card, tiles, labels)


def _draw_header(draw, layout: SheetLayout, title: str | None, along_what: str) -> None:
    """The title, and what the strengths over the tiles mean."""
    font, ink, faint = _font(), (20, 20, 20), (110, 110, 110)
    y = layout.pad
    if title:
        draw.text((layout.pad, y), _drawable(title), font=font, fill=ink)
        y += layout.line_h
    note = f"over each tile: the strength to type in locobank apply ID:STRENGTH; rows read less -> more of {along_what}"
    if draw.textlength(note, font=font) > layout.size[0] - 2 * layout.pad:
        note = "over each tile: the strength to type in locobank apply ID:STRENGTH"
    draw.text((layout.pad, y), note, font=font, fill=faint)


def _draw_row(sheet, draw, layout: SheetLayout, r: int, row: SheetRow) -> None:
    """Row ``r``: the card's caption, then its tiles, each under the strength it was rendered at."""
    font, ink, faint = _font(), (20, 20, 20), (110, 110, 110)
    tile, cols = layout.tile, layout.cols
    left, top, _, bottom = layout.tile_box(r, 0)
    lines = _wrap(_drawable(row.card.caption), layout.label_w - layout.pad, draw)
    for k, line in enumerate(lines[: max(1, tile // layout.line_h)]):
        draw.text((layout.pad, top + k * layout.line_h), line, font=font, fill=ink if k == 0 else faint)
    if not row.tiles:
        right = layout.tile_box(r, cols - 1)[2]
        draw.rectangle((left, top, right - 1, bottom - 1), fill=(205, 205, 205))
        msg = _wrap(NO_PREVIEW.replace(" (", "  ("), right - left - 2 * layout.pad, draw)
        y0 = top + (tile - len(msg) * layout.line_h) / 2
        for k, line in enumerate(msg):
            _centered(draw, (left + right) / 2, y0 + k * layout.line_h, line, (70, 70, 70))
        return
    for c, (arr, label) in enumerate(zip(row.tiles, row.labels)):
        im = Image.fromarray(arr[..., :3] if arr.ndim == 3 else arr).convert("RGB")
        if im.size != (tile, tile):
            im = im.resize((tile, tile), Image.NEAREST if max(im.size) <= tile else Image.LANCZOS)
        box = layout.tile_box(r, c)
        sheet.paste(im, box[:2])
        band = layout.band_box(r, c)
        _centered(draw, (band[0] + band[2]) / 2, band[1] + 1, _drawable(label), ink)
