"""What the catalog holds, for people: labelled contact sheets (PNG) and a static HTML gallery.

Both read only the catalog (stored preview strips, effects, provenance), so they need no model and
no torch. A preview strip is the source image edited at -strength, 0 and +strength; both views turn
it so it reads "less -> more" of the direction's name (the name describes ``label_sign * v``).
"""

from __future__ import annotations

import functools
import html
import io
import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .catalog.records import DirectionRecord
from .errors import InputError
from .paths import slug

# The strength ``locobank.embed`` renders previews at when nothing else is recorded (kept in step by
# hand: importing embed would import torch).
DEFAULT_STRENGTH = 8.0
MIN_TILE = 96
NO_PREVIEW = "no preview (run locobank index build)"

RenderFn = Callable[[int], tuple[Sequence[np.ndarray], Sequence[float]]]


# -- the facts both views show ----------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """One direction as the sheet and the gallery describe it."""

    id: int
    name: str
    sign: int
    mask: str
    model: str
    fingerprint: str
    sigma: float
    transfer: float | None
    local: float | None
    strength: float | None
    name_sign: int = 1  # the name describes name_sign * v (the catalog's label_sign)

    @property
    def caption(self) -> str:
        """``#id  name (+v|-v)  mask=..  σ=..  transfer=..  local=..`` (fields split on double spaces)."""
        return "  ".join(
            [
                f"#{self.id}",
                f"{self.name} ({'+' if self.name_sign > 0 else '-'}v)",
                f"mask={self.mask}",
                f"σ={self.sigma:.3g}",
                f"transfer={_num(self.transfer)}",
                f"local={_num(self.local)}",
            ]
        )

    def apply_command(self, db: str | None = None) -> str:
        """The shell command that applies the named edit (``sign * strength``) to an image."""
        signed = self.sign * (self.strength if self.strength is not None else DEFAULT_STRENGTH)
        cmd = f"locobank apply {self.id}:{_strength(signed)} IMAGE --out OUT.png"
        return cmd + (f" --db {shlex.quote(db)}" if db else "")


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _strength(x: float) -> str:
    """Strengths as typed on a command line: ``-8``, ``0``, ``+2.5``."""
    return "0" if x == 0 else f"{x:+g}"


def _tick(unit: float, strength: float | None) -> str:
    """``unit * strength`` as typed on a command line, or ``-λ``/``+λ`` when the strength is not known."""
    if strength is not None or unit == 0:
        return _strength(unit * (strength or 0.0))
    return "-λ" if unit < 0 else "+λ"


def describe(catalog: Any, record: DirectionRecord, *, clip_id: str | None = None, sign: int | None = None) -> Card:
    """The card of one direction; ``transfer`` needs ``clip_id`` (effects are stored per CLIP model)."""
    effect = catalog.effect_of(record.id, clip_id) if clip_id is not None else None
    local = catalog.preview_locality(record.id)
    if sign is None:
        sign = record.label_sign or 1
    return Card(
        id=record.id,
        name=record.label or "unnamed",
        sign=-1 if sign < 0 else 1,
        mask=record.mask_label,
        model=record.model_id,
        fingerprint=record.fingerprint,
        sigma=float(record.singular_value),
        transfer=None if effect is None or effect.consistency is None else float(effect.consistency),
        local=local,
        strength=None if effect is None else float(effect.strength),
        name_sign=-1 if (record.label_sign or 1) < 0 else 1,
    )


def split_strip(png: bytes) -> list[np.ndarray]:
    """The square tiles of a preview strip (tiles side by side, each as high as the strip)."""
    with Image.open(io.BytesIO(png)) as im:
        arr = np.asarray(im.convert("RGB"))
    h, w = arr.shape[:2]
    n = max(1, round(w / h)) if h else 1
    step = w // n
    return [arr[:, i * step : (i + 1) * step] for i in range(n)]


def _oriented(tiles: list[np.ndarray], strengths: list[float | None], sign: int):
    """Tiles and strengths along ``sign * v``, so a row reads less -> more of the name."""
    if sign < 0:
        tiles = tiles[::-1]
        strengths = [None if s is None else -s for s in strengths[::-1]]
    return tiles, strengths


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
    rows: list[tuple[Card, list[np.ndarray], list[float | None]]] = []
    for i, did in enumerate(ids):
        card = describe(catalog, catalog.get_direction(did), clip_id=clip_id, sign=None if signs is None else signs[i])
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
        rows.append((card, tiles, along))

    cols = max((len(t) for _, t, _ in rows), default=0) or 3
    tile = _tile_size([max(t.shape[:2]) for _, ts, _ in rows for t in ts])
    layout = SheetLayout(rows=len(rows), cols=cols, tile=tile, title=bool(title))
    sheet = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(sheet)
    font = _font()
    ink, faint = (20, 20, 20), (110, 110, 110)

    y = layout.pad
    if title:
        draw.text((layout.pad, y), _drawable(title), font=font, fill=ink)
        y += layout.line_h
    header = next((a for _, t, a in rows if len(t) == cols and all(s is not None for s in a)), None)
    along_what = "the query" if signs is not None else "the name"  # rows run along sign * v
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

    for r, (card, tiles, along) in enumerate(rows):
        left, top, _, bottom = layout.tile_box(r, 0)
        lines = _wrap(_drawable(card.caption), layout.label_w - layout.pad, draw)
        for k, line in enumerate(lines[: max(1, tile // layout.line_h)]):
            draw.text((layout.pad, top + k * layout.line_h), line, font=font, fill=ink if k == 0 else faint)
        if not tiles:
            right = layout.tile_box(r, cols - 1)[2]
            draw.rectangle((left, top, right - 1, bottom - 1), fill=(205, 205, 205))
            box_w = right - left - 2 * layout.pad
            msg = _wrap(NO_PREVIEW.replace(" (", "  ("), box_w, draw)
            y0 = top + (tile - len(msg) * layout.line_h) / 2
            for k, line in enumerate(msg):
                _centered(draw, (left + right) / 2, y0 + k * layout.line_h, line, (70, 70, 70))
            continue
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

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)
    return out


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
            tiles, along = _oriented(split_strip(png), [-1.0, 0.0, 1.0], card.sign)
            if len(tiles) == 3:  # the strengths to pass to `locobank apply`, along v
                item["strengths"] = [_tick(s * card.sign, card.strength) for s in along]
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


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --ink: #1d2430; --faint: #687386; --line: #dfe3ea; --bg: #f5f6f8; --accent: #2f6fdf; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
header { position: sticky; top: 0; z-index: 1; background: #fff; border-bottom: 1px solid var(--line); padding: 12px 20px; }
h1 { font-size: 18px; margin: 0 0 8px; }
.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
.filters label { color: var(--faint); font-size: 13px; }
.filters select, .filters input { font: inherit; padding: 4px 6px; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
.filters input { width: 14em; }
.summary { margin-left: auto; color: var(--faint); }
.summary #count { color: var(--ink); font-weight: 600; }
.note { color: var(--faint); font-size: 12px; margin-top: 6px; }
main { padding: 16px 20px; }
#grid { display: grid; gap: 14px; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.card { display: flex; flex-direction: column; gap: 8px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
.title { display: flex; gap: 8px; align-items: baseline; }
.id { color: var(--faint); font-variant-numeric: tabular-nums; }
.name { font-weight: 600; overflow-wrap: anywhere; }
.sign { color: var(--faint); }
.strip { width: 100%; height: auto; display: block; image-rendering: pixelated; image-rendering: crisp-edges; background: #eee; border-radius: 4px; }
.ticks { display: grid; grid-template-columns: repeat(3, 1fr); text-align: center; color: var(--faint); font-size: 12px; margin-top: -4px; }
.placeholder { display: grid; place-items: center; aspect-ratio: 3 / 1; background: #d6d6d6; color: #555; border-radius: 4px; font-size: 13px; text-align: center; padding: 8px; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; font-size: 13px; }
dt { color: var(--faint); }
dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
.cmd { display: flex; gap: 6px; align-items: stretch; }
.cmd code { flex: 1; font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f0f2f5; border-radius: 4px; padding: 5px 6px; overflow-wrap: anywhere; user-select: all; }
.cmd button { font: inherit; font-size: 12px; border: 1px solid var(--accent); color: var(--accent); background: #fff; border-radius: 4px; cursor: pointer; padding: 0 10px; }
.cmd button:hover { background: var(--accent); color: #fff; }
#empty { color: var(--faint); padding: 40px; text-align: center; }
</style>
</head>
<body>
<header>
<h1>__TITLE__</h1>
<div class="filters">
<label>model <select id="f-model"><option value="">all</option></select></label>
<label>mask <select id="f-mask"><option value="">all</option></select></label>
<label>name <input id="f-name" type="search" placeholder="e.g. smile" autocomplete="off"></label>
<a href="#" id="f-clear">clear</a>
<span class="summary"><span id="count">__TOTAL__</span> of <span id="total">__TOTAL__</span> directions</span>
</div>
<div class="note">__NOTE__. Each strip runs less &rarr; more of the direction&#39;s name; the numbers under it are the strengths to pass to <code>locobank apply</code>.</div>
</header>
<main>
<noscript>This gallery needs JavaScript to draw its cards.</noscript>
<div id="grid"></div>
<div id="empty" hidden>No direction matches these filters.</div>
</main>
<script type="application/json" id="data">__DATA__</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var grid = document.getElementById("grid");
  var fModel = document.getElementById("f-model");
  var fMask = document.getElementById("f-mask");
  var fName = document.getElementById("f-name");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(x) { return x === null || x === undefined ? "-" : x.toFixed(2); }
  function addOption(sel, value) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = value;
    sel.appendChild(o);
  }
  function fill(sel, key) {
    var seen = {};
    data.forEach(function (d) { seen[d[key]] = true; });
    Object.keys(seen).sort().forEach(function (v) { addOption(sel, v); });
  }
  function setSelect(sel, value) {
    var found = Array.prototype.some.call(sel.options, function (o) { return o.value === value; });
    if (!found) addOption(sel, value);  // keep an unknown value visible rather than silently showing all
    sel.value = value;
  }

  function copy(text, code, button) {
    function done(label) {
      button.textContent = label;
      setTimeout(function () { button.textContent = "copy"; }, 1500);
    }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(code);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok ? "copied" : "press Ctrl+C");
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { done("copied"); }, fallback);
    } else {
      fallback();
    }
  }

  function card(d, i) {
    var node = el("article", "card");
    node.dataset.id = d.id;
    var head = el("div", "title");
    head.appendChild(el("span", "id", "#" + d.id));
    head.appendChild(el("span", "name", d.name));
    head.appendChild(el("span", "sign", d.sign > 0 ? "(+)" : "(-)"));
    node.appendChild(head);
    if (d.preview) {
      var img = el("img", "strip");
      img.src = d.preview;
      img.alt = "direction " + d.id + " at " + (d.strengths.length ? d.strengths.join(", ") : "-, 0, +");
      img.width = d.preview_w;
      img.height = d.preview_h;
      if (i >= 24) img.loading = "lazy";
      node.appendChild(img);
      if (d.strengths.length) {
        var ticks = el("div", "ticks");
        d.strengths.forEach(function (s) { ticks.appendChild(el("span", null, s)); });
        node.appendChild(ticks);
      }
    } else {
      node.appendChild(el("div", "placeholder", "no preview (run locobank index build)"));
    }
    var dl = el("dl");
    [["mask", d.mask], ["model", d.model], ["\\u03c3", d.sigma.toPrecision(3)],
     ["transfer", num(d.transfer)], ["local", num(d.local)]].forEach(function (kv) {
      dl.appendChild(el("dt", null, kv[0]));
      dl.appendChild(el("dd", null, kv[1]));
    });
    node.appendChild(dl);
    var cmd = el("div", "cmd");
    var code = el("code", null, d.command);
    var button = el("button", null, "copy");
    button.type = "button";
    button.title = "Copy the command";
    button.addEventListener("click", function () { copy(d.command, code, button); });
    cmd.appendChild(code);
    cmd.appendChild(button);
    node.appendChild(cmd);
    return node;
  }

  var cards = data.map(function (d, i) {
    var node = card(d, i);
    grid.appendChild(node);
    return { d: d, node: node };
  });
  fill(fModel, "model");
  fill(fMask, "mask");

  function update() {
    var m = fModel.value, k = fMask.value, n = fName.value.trim().toLowerCase();
    var shown = 0;
    cards.forEach(function (c) {
      var ok = (!m || c.d.model === m) && (!k || c.d.mask === k) && (!n || c.d.name.toLowerCase().indexOf(n) >= 0);
      c.node.hidden = !ok;
      if (ok) shown += 1;
    });
    count.textContent = String(shown);
    empty.hidden = shown > 0 || cards.length === 0;
  }
  function readHash() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    setSelect(fModel, params.get("model") || "");
    setSelect(fMask, params.get("mask") || "");
    fName.value = params.get("name") || "";
    update();
  }
  function writeHash() {
    var params = new URLSearchParams();
    if (fModel.value) params.set("model", fModel.value);
    if (fMask.value) params.set("mask", fMask.value);
    if (fName.value.trim()) params.set("name", fName.value.trim());
    var hash = params.toString();
    try {
      history.replaceState(null, "", hash ? "#" + hash : window.location.pathname + window.location.search);
    } catch (e) {
      window.location.hash = hash;
    }
  }
  function changed() { update(); writeHash(); }
  fModel.addEventListener("change", changed);
  fMask.addEventListener("change", changed);
  fName.addEventListener("input", changed);
  document.getElementById("f-clear").addEventListener("click", function (e) {
    e.preventDefault();
    fModel.value = ""; fMask.value = ""; fName.value = "";
    changed();
  });
  window.addEventListener("hashchange", readHash);
  readHash();
})();
</script>
</body>
</html>
"""
