"""Contact sheets and the HTML gallery: drawn from a real SQLite catalog, the gallery also in headless Chromium."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from catalog_support import make_world
from click.testing import CliRunner
from PIL import Image

from locobank_cli.main import cli
from locobank.catalog import Catalog, NewDirection
from locobank.catalog.records import NewEffect
from locobank.views import NO_PREVIEW, SheetLayout, contact_sheet, gallery, sheet_rows

pytest_plugins = ["catalog_support"]  # fixtures: sqlite_migrated_url, ...

CLIP = "test-clip"
EVIL = "<script>alert(1)</script>"
# Saturated colours the page itself never uses, so a screenshot shows whether the previews were drawn.
COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255)]


def strip_tiles(px: int = 32) -> list[np.ndarray]:
    """Three distinct tiles, each with a dark left edge so a mirrored tile differs from the original."""
    tiles = []
    for colour in COLOURS:
        t = np.zeros((px, px, 3), np.uint8)
        t[:] = colour
        t[:, : px // 4] = 30
        tiles.append(t)
    return tiles


def png(tiles: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(tiles, axis=1)).save(buf, format="PNG")
    return buf.getvalue()


def add_directions(cat: Catalog, label: str, n_images: int = 1, outside: float = 0.1) -> list[int]:
    """One direction per image of a fresh world, with the locality diagnostic the harvester records."""
    world = make_world(cat, n_images=n_images, labels=(label,), params={"label": label})
    ids: list[int] = []
    for job in cat.claim_jobs(world.run.id, "t", n=10, lease_seconds=60):
        rng = np.random.default_rng(job.id)
        v = rng.standard_normal((3, 8, 8)).astype(np.float32)
        d = NewDirection(rank_index=0, singular_value=3.25, vector=v / np.linalg.norm(v), t_edit=600,
                         t_edit_frac=0.6, null_rank=5, diagnostics={"outside_residual": outside})
        ids += cat.complete_job(job.id, "t", [d])
    return ids


def effect(did: int, consistency: float = 0.75, strength: float = 8.0) -> NewEffect:
    return NewEffect(direction_id=did, clip_id=CLIP, vector=np.ones(4, np.float32), consistency=consistency,
                     n_images=3, strength=strength)


@pytest.fixture
def cat(sqlite_migrated_url):
    with Catalog.open(sqlite_migrated_url) as c:
        yield c


@pytest.fixture
def filled(cat):
    """mouth: 'smile' (+1), EVIL (-1) and a deleted one; eyes: 'big eyes' (+1); hair: unnamed, no preview."""
    smile, evil, deleted = add_directions(cat, "mouth", n_images=3)
    (big_eyes,) = add_directions(cat, "eyes")
    (unnamed,) = add_directions(cat, "hair", outside=0.4)
    cat.set_label(smile, "smile", score=0.3, sign=1)
    cat.set_label(evil, EVIL, score=0.2, sign=-1)
    cat.set_label(big_eyes, "big eyes", score=0.3, sign=1)
    for did in (smile, evil, big_eyes, deleted):
        cat.put_preview(did, png(strip_tiles()), 8.0, locality=0.9)
    cat.put_effects([effect(smile), effect(evil, 0.5, 6.0)])
    cat.delete_direction(deleted)
    return dict(smile=smile, evil=evil, big_eyes=big_eyes, unnamed=unnamed, deleted=deleted)


def crop(sheet: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(sheet.crop(box).convert("RGB"))


def upscaled(tile: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(tile).resize((size, size), Image.NEAREST))


# -- contact sheet ----------------------------------------------------------------------------------


def test_contact_sheet_rows_columns_and_sign_flip(cat, filled, tmp_path):
    ids = [filled["smile"], filled["smile"], filled["unnamed"]]
    out = contact_sheet(cat, ids, tmp_path / "s" / "sheet.png", signs=[1, -1, 1], title="search: smile",
                        clip_id=CLIP)
    assert out == tmp_path / "s" / "sheet.png" and out.exists()
    sheet = Image.open(out)
    layout = SheetLayout(rows=3, cols=3, tile=96, title=True)  # 32 px tiles scale x3 to reach 96
    assert sheet.size == layout.size
    tiles = strip_tiles()
    for c in range(3):
        # row 0 reads -8, 0, +8 of v; row 1 (sign -1) runs the other way: the tiles swap, none is mirrored
        assert np.array_equal(crop(sheet, layout.tile_box(0, c)), upscaled(tiles[c], 96))
        assert np.array_equal(crop(sheet, layout.tile_box(1, c)), upscaled(tiles[2 - c], 96))
    flipped = crop(sheet, layout.tile_box(1, 0))
    assert not np.array_equal(flipped, flipped[:, ::-1])  # the dark edge is still on the left
    # the row without a preview is one grey placeholder across the columns
    left, top, _, bottom = layout.tile_box(2, 0)
    right = layout.tile_box(2, 2)[2]
    grey = np.asarray(sheet.crop((left, top, right, bottom)).convert("RGB")).reshape(-1, 3)
    assert (grey == (205, 205, 205)).all(axis=1).mean() > 0.8
    assert ((grey[:, 0] < 150) & (grey == grey[:, :1]).all(axis=1)).any()  # some text on it
    assert "run locobank index build" in NO_PREVIEW
    # the label column carries text
    label = np.asarray(sheet.crop((0, top, layout.pad + layout.label_w, bottom)).convert("L"))
    assert (label < 128).sum() > 100


def test_contact_sheet_uses_the_name_sign_by_default(cat, filled, tmp_path):
    out = contact_sheet(cat, [filled["evil"]], tmp_path / "sheet.png")
    sheet = Image.open(out)
    layout = SheetLayout(rows=1, cols=3, tile=96)
    assert sheet.size == layout.size
    assert np.array_equal(crop(sheet, layout.tile_box(0, 0)), upscaled(strip_tiles()[2], 96))


def test_search_sheet_names_its_file_after_the_query_safely(cat, filled, tmp_path):
    from types import SimpleNamespace

    from locobank.views import search_sheet

    hits = [SimpleNamespace(id=filled["smile"], sign=-1)]
    out = search_sheet(cat, "frown -> smile/with teeth", hits, tmp_path / "sheets", clip_id=CLIP)
    assert out == tmp_path / "sheets" / "frown_-_smile_with_teeth.png" and out.exists()
    layout = SheetLayout(rows=1, cols=3, tile=96, title=True)
    assert np.array_equal(crop(Image.open(out), layout.tile_box(0, 0)), upscaled(strip_tiles()[2], 96))  # sign -1


def test_contact_sheet_with_a_renderer(cat, filled, tmp_path):
    strengths = [-8.0, -4.0, 0.0, 4.0, 8.0]
    tiles = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(5)]
    calls: list[int] = []

    def render(did: int):
        calls.append(did)
        return tiles, strengths

    ids = [filled["smile"], filled["evil"]]
    sheet = Image.open(contact_sheet(cat, ids, tmp_path / "r.png", render=render))
    layout = SheetLayout(rows=2, cols=5, tile=96)  # 16 px scales x6
    assert calls == ids and sheet.size == layout.size
    for c in range(5):
        assert np.array_equal(crop(sheet, layout.tile_box(0, c)), upscaled(tiles[c], 96))
        assert np.array_equal(crop(sheet, layout.tile_box(1, c)), upscaled(tiles[4 - c], 96))


def test_each_row_is_labelled_with_the_strengths_it_was_rendered_at(cat, filled, tmp_path):
    """The issue's sheet had a hair row rendered at +-12 under headers saying +-4. Each row now carries,
    over each tile, the strength to type for `apply` to get that tile: the strength its strip was
    rendered at (not an effect's), signed along v as search hits and the gallery are."""
    hair = filled["unnamed"]
    cat.put_preview(hair, png(strip_tiles()), 12.0)
    cat.put_effects([effect(hair, strength=4.0)])
    ids = [filled["smile"], filled["evil"], hair, filled["smile"]]
    rows = sheet_rows(cat, ids, clip_id=CLIP)
    assert [r.labels for r in rows] == [["-8", "0", "+8"], ["+8", "0", "-8"], ["-12", "0", "+12"], ["-8", "0", "+8"]]
    data = {d["id"]: d for d in page_data(gallery(cat, tmp_path / "g", clip_id=CLIP))}
    assert [data[i]["strengths"] for i in ids] == [r.labels for r in rows]  # one convention: sheet = gallery
    (asked,) = sheet_rows(cat, [filled["smile"]], signs=[-1])  # a search hit along -v: typed as such
    assert asked.labels == ["+8", "0", "-8"] and np.array_equal(asked.tiles[0], strip_tiles()[2])

    def render(did: int):
        return [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(5)], [-12.0, -6.0, 0.0, 6.0, 12.0]

    (rendered,) = sheet_rows(cat, [filled["evil"]], render=render)
    assert rendered.labels == ["+12", "+6", "0", "-6", "-12"] and int(rendered.tiles[0][0, 0, 0]) == 160
    # Drawn: the band over each tile shows its label, so equal labels look the same and others differ.
    sheet = Image.open(contact_sheet(cat, ids, tmp_path / "s.png", clip_id=CLIP))
    layout = SheetLayout(rows=4, cols=3, tile=96)
    assert sheet.size == layout.size

    def band(r: int, c: int) -> np.ndarray:
        return crop(sheet, layout.band_box(r, c))

    assert np.array_equal(band(0, 0), band(3, 0)) and np.array_equal(band(0, 0), band(1, 2))  # "-8"
    assert np.array_equal(band(0, 2), band(1, 0)) and not np.array_equal(band(0, 0), band(0, 2))  # "+8", "-8"
    assert not np.array_equal(band(2, 0), band(0, 0)) and not np.array_equal(band(2, 2), band(0, 2))  # 12 vs 8
    assert all((band(r, c) < 128).any() for r in range(4) for c in range(3))


def test_contact_sheet_refuses_bad_input(cat, filled, tmp_path):
    from locobank.errors import InputError, NotFound

    with pytest.raises(InputError):
        contact_sheet(cat, [], tmp_path / "x.png")
    with pytest.raises(InputError):
        contact_sheet(cat, [filled["smile"]], tmp_path / "x.png", signs=[1, -1])
    with pytest.raises(NotFound):
        contact_sheet(cat, [filled["deleted"]], tmp_path / "x.png")


# -- gallery ----------------------------------------------------------------------------------------


def page_data(index: Path) -> list[dict]:
    text = index.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def test_gallery_files_data_and_escaping(cat, filled, tmp_path):
    out = tmp_path / "g"
    (out / "previews").mkdir(parents=True)
    (out / "previews" / "999.png").write_bytes(b"stale")  # from an earlier run: removed
    index = gallery(cat, out, clip_id=CLIP, title="<b>gallery</b> & co")
    assert index == out / "index.html"
    html = index.read_text(encoding="utf-8")
    data = page_data(index)
    live = [filled[k] for k in ("smile", "evil", "big_eyes", "unnamed")]
    assert sorted(d["id"] for d in data) == sorted(live)
    assert sorted(p.name for p in (out / "previews").iterdir()) == sorted(
        f"{filled[k]}.png" for k in ("smile", "evil", "big_eyes"))
    by_id = {d["id"]: d for d in data}

    smile, evil, unnamed = by_id[filled["smile"]], by_id[filled["evil"]], by_id[filled["unnamed"]]
    assert smile["command"] == f"locobank apply {filled['smile']}:+8 IMAGE --out OUT.png"
    assert evil["command"] == f"locobank apply {filled['evil']}:-6 IMAGE --out OUT.png"
    assert (smile["transfer"], smile["local"], smile["sigma"]) == (0.75, pytest.approx(0.9), 3.25)
    # the strengths to type for each tile, as the strip was rendered (at 8; evil's effect was measured at 6)
    assert smile["strengths"] == ["-8", "0", "+8"] and evil["strengths"] == ["+8", "0", "-8"]
    assert by_id[filled["big_eyes"]]["strengths"] == ["-8", "0", "+8"]  # known from the strip, effect or not
    assert unnamed["preview"] is None and unnamed["transfer"] is None and unnamed["name"] == "unnamed"
    assert unnamed["local"] is None  # locality is measured on the rendered preview; it has none
    assert evil["name"] == EVIL  # the label survives the round trip intact...
    assert "<script>alert" not in html and "</b>" not in html  # ...and never appears as markup
    assert "&lt;b&gt;gallery&lt;/b&gt; &amp; co" in html
    assert "innerHTML" not in html and "http://" not in html and "https://" not in html  # no CDN, no injection
    # the stored strip is written turned to read less -> more of the name
    evil_strip = np.asarray(Image.open(out / evil["preview"]).convert("RGB"))
    assert np.array_equal(evil_strip, np.concatenate(strip_tiles()[::-1], axis=1))


def test_gallery_without_clip_and_empty_catalog(cat, tmp_path):
    index = gallery(cat, tmp_path / "empty")
    assert page_data(index) == [] and '<span id="count">0</span>' in index.read_text()


# -- CLI --------------------------------------------------------------------------------------------


def test_cli_sheet_and_gallery(cat, filled, sqlite_migrated_url, tmp_path):
    from locobank.clip import clip_id

    cat.put_effects([NewEffect(direction_id=filled["big_eyes"], clip_id=clip_id("toy"), vector=np.ones(4, np.float32),
                               consistency=0.9, n_images=3, strength=5.0)])
    runner = CliRunner()
    sheet = tmp_path / "sheet.png"
    ids = [str(filled["smile"]), str(filled["big_eyes"])]
    r = runner.invoke(cli, ["sheet", *ids, "--out", str(sheet), "--db", sqlite_migrated_url], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert sheet.exists() and Image.open(sheet).size == SheetLayout(rows=2, cols=3, tile=96).size

    r = runner.invoke(cli, ["gallery", "--out", str(tmp_path / "g"), "--db", sqlite_migrated_url],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    index = tmp_path / "g" / "index.html"
    assert f"open {index.resolve().as_uri()}" in r.output
    data = {d["id"]: d for d in page_data(index)}
    assert data[filled["big_eyes"]]["transfer"] == 0.9  # effects of the default CLIP, 'toy'
    assert data[filled["big_eyes"]]["command"].endswith(f"--db {sqlite_migrated_url}")

    bad = runner.invoke(cli, ["sheet", "12345", "--out", str(sheet), "--db", sqlite_migrated_url])
    assert bad.exit_code == 1 and "no direction 12345" in bad.output
    bad_clip = runner.invoke(cli, ["gallery", "--out", str(tmp_path / "h"), "--clip", "nope@/no/such.pt",
                                   "--db", sqlite_migrated_url])
    assert bad_clip.exit_code == 1 and "does not exist" in bad_clip.output
    assert "Open the printed file:// address" in " ".join(runner.invoke(cli, ["gallery", "--help"]).output.split())


# -- headless Chromium --------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (Debian: apt-get install chromium); .ci/run installs it")


def chromium(tmp_path: Path, url: str, *args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Cards(HTMLParser):
    """The cards, images and count of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str | None]] = []
        self.images: list[tuple[int, str]] = []
        self.count: str | None = None
        self._in_count = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article" and "card" in (a.get("class") or "").split():
            self.cards.append(a)
        elif tag == "img" and self.cards:
            self.images.append((len(self.cards) - 1, a.get("src") or ""))
        self._in_count = a.get("id") == "count"

    def handle_data(self, data):
        if self._in_count:
            self.count = data.strip()
            self._in_count = False


@needs_chromium
@pytest.mark.slow
def test_gallery_in_headless_chromium(cat, filled, tmp_path):
    index = gallery(cat, tmp_path / "g", clip_id=CLIP)
    url = index.resolve().as_uri()

    dump = chromium(tmp_path, url + "#mask=mouth", "--dump-dom")
    dom = Cards()
    dom.feed(dump)
    assert len(dom.cards) == 4 and dom.count == "2"  # the deleted mouth direction is not in the page
    visible = [c["data-id"] for c in dom.cards if "hidden" not in c]
    assert sorted(visible) == sorted([str(filled["smile"]), str(filled["evil"])])
    shown = {dom.cards[i]["data-id"]: src for i, src in dom.images}
    assert shown[str(filled["smile"])] == f"previews/{filled['smile']}.png"
    assert "<script>alert" not in dump and "&lt;script&gt;alert(1)&lt;/script&gt;" in dump  # shown as text

    dom = Cards()
    dom.feed(chromium(tmp_path, url + "#name=EYE", "--dump-dom"))
    assert dom.count == "1" and [c["data-id"] for c in dom.cards if "hidden" not in c] == [str(filled["big_eyes"])]

    shot = tmp_path / "shot.png"
    chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars")
    img = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert img.shape[0] == 1200 * 900 and img.std(axis=0).max() > 10  # not blank
    for colour in COLOURS:  # the preview strips were drawn
        assert (np.abs(img - colour).sum(axis=1) < 30).sum() > 500, f"no {colour} pixels: previews missing"
