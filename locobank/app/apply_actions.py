"""What the Apply tab does, over the library's apply functions: take an image (an upload or one of
the catalog's own), apply directions at strengths with or without a mask, sweep a strength, or keep
the best of N hits for a text. Plain functions, no gradio. Every file read is an upload the app
has checked or a file the catalog names; every file written goes under the app's own folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .. import core
from ..apply import DirectionSpec, apply_best_of, edit_settled, prepare, query_candidates, settle, sweep_settled
from ..errors import InputError
from ..files import file_sha256
from ..images import check_mask, load_image, to_uint8
from .cache import Resources
from .uploads import fit_square, png_bytes, read_image, read_mask, sha256_of, square_mask

SHOW = 256  # pixels a side the input and result are shown at
Report = Callable[[float, str], None]


@dataclass
class InputImage:
    """An image to edit, kept in the app's folder under the sha256 of its pixels (as PNG)."""

    sha: str
    path: Path  # upright RGB PNG, as uploaded
    size: tuple[int, int]
    mask: np.ndarray | None = None  # the catalog's mask for a catalog image, at ``size``

    @property
    def shown_size(self) -> tuple[int, int]:
        """Its size on the page (and the mask editor's): small images enlarged by a whole factor."""
        scale = max(1, SHOW // max(self.size))
        return self.size[0] * scale, self.size[1] * scale

    def shown(self) -> Image.Image:
        """The image as the page shows it (nearest-pixel enlargement)."""
        with Image.open(self.path) as im:
            return im.convert("RGB").resize(self.shown_size, Image.NEAREST)

    def fitted(self, side: int) -> Path:
        """The image at the model's size (centre square), written once."""
        out = self.path.with_name(f"{self.sha}_{side}.png")
        if not out.exists():
            with Image.open(self.path) as im:
                fit_square(im.convert("RGB"), side).save(out)
        return out


@dataclass
class EditView:
    """One edit's outcome: the input and result at the model's size, the PNG written, and facts."""

    before: Image.Image
    after: Image.Image
    png: Path
    locality: float | None
    note: str


def _keep(res: Resources, folder: str, img: Image.Image) -> Path:
    """``img`` as a PNG in the app's ``folder``, named by the sha256 of its bytes (written once)."""
    data = png_bytes(img)
    path = res.work / folder / f"{sha256_of(data)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return path


def _store(res: Resources, img: Image.Image, mask: np.ndarray | None = None) -> InputImage:
    path = _keep(res, "inputs", img)
    return InputImage(path.stem, path, img.size, mask)


def take_upload(res: Resources, upload: str | Path) -> InputImage:
    """A browser upload, checked (:func:`~locobank.app.uploads.read_image`) and kept."""
    return _store(res, read_image(Path(upload)))


def catalog_images(res: Resources, limit: int = 200) -> list[tuple[str, str]]:
    """(label, value) for each image and mask part the catalog's directions were harvested on."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for r in res.catalog.list_directions():
        key = (r.image_sha256, r.mask_label)
        if key not in seen and len(seen) < limit:
            seen[key] = (f"{Path(r.image_uri).name} · {r.mask_label} (of #{r.id})", str(r.id))
    return list(seen.values())


def take_catalog_image(res: Resources, choice: str) -> InputImage:
    """The image (and mask) a catalog direction was harvested on; ``choice`` is that direction's id."""
    try:
        rec = res.catalog.get_direction(int(str(choice).strip().lstrip("#")))
    except ValueError as e:
        raise InputError(f"{choice!r} is not one of the catalog's images") from e
    path = Path(rec.image_uri)
    if not path.is_file() or file_sha256(path) != rec.image_sha256:
        raise InputError(f"the image direction #{rec.id} was harvested on is no longer at {rec.image_uri} (or changed)")
    img = read_image(path)
    mask = None
    if rec.mask_uri and Path(rec.mask_uri).is_file() and file_sha256(Path(rec.mask_uri)) == rec.mask_sha256:
        mask = read_mask(Path(rec.mask_uri), [img.size])
    return _store(res, img, mask)


def take_mask(inp: InputImage, upload: str | Path) -> np.ndarray:
    """An uploaded mask for ``inp``: at its size as uploaded, or as the page shows it."""
    return read_mask(Path(upload), [inp.size, inp.shown_size])


def editor_mask(layers: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray | None:
    """The painted pixels of the mask editor's layers (RGBA, at ``size``: the image as shown) as
    one bool mask; None when nothing is painted."""
    painted = None
    for layer in layers:
        a = np.asarray(layer)
        if a.ndim != 3 or a.shape[2] != 4:
            continue
        if (a.shape[1], a.shape[0]) != tuple(size):
            raise InputError(f"the drawn mask is {a.shape[1]}x{a.shape[0]} but the image is {size[0]}x{size[1]}; "
                             f"load the image again and draw on it")
        hit = a[..., 3] > 0
        painted = hit if painted is None else painted | hit
    return painted if painted is not None and painted.any() else None


def fitted_mask(mask: np.ndarray, side: int) -> np.ndarray:
    """A mask at the image's size, cropped and resized as the image is to the model's size, and checked."""
    m = square_mask(mask, side) if mask.shape != (side, side) else mask
    check_mask(torch.from_numpy(m), (side, side))
    return m


def mask_file(res: Resources, mask: np.ndarray, side: int) -> Path:
    """A mask at the image's size as a checked PNG at the model's size, in the app's folder."""
    return _keep(res, "masks", Image.fromarray(fitted_mask(mask, side).astype(np.uint8) * 255))


def _settled(res: Resources, prep, inp: InputImage, mask: Path | None, ids: Sequence[int], seed: int, report: Report):
    """The image made ready for these directions (the model's edit options, ``seed``): from the
    cache, else inverted and re-localised."""
    key = (prep.model.fingerprint, inp.sha, tuple(ids), None if mask is None else mask.stem, seed)

    def make():
        report(0.3, "inverting the image" + (" and re-localising on the mask" if mask else ""))
        options = prep.model.settings.edit_options(seed=seed)
        return settle(prep, inp.fitted(prep.model.resolution), options=options, mask=mask)

    return res.settled.get_or_make(key, make)


def apply_edit(res: Resources, inp: InputImage, mask: np.ndarray | None, specs: Sequence[tuple[int, float]], *,
               orthogonalize: bool = False, seed: int = 0, report: Report = lambda f, s: None) -> EditView:
    """``inp`` edited by the directions at their strengths (one model), re-localised on ``mask``."""
    if not specs:
        raise InputError("pick at least one direction to apply")
    report(0.05, "loading the model")
    prep = prepare(res.catalog, [DirectionSpec(int(i), float(s)) for i, s in specs], device=res.device)
    side = prep.model.resolution
    mpath = mask_file(res, mask, side) if mask is not None else None
    settled = _settled(res, prep, inp, mpath, [i for i, _ in specs], seed, report)
    report(0.6, "editing")
    out = edit_settled(settled, prep, prep.strengths, orthogonalize=orthogonalize)
    desc = ", ".join(f"#{i}:{s:+g}" for i, s in specs)
    return _view(res, inp, side, out, mpath, f"applied {desc}", f"{inp.sha[:12]}_{'_'.join(str(i) for i, _ in specs)}")


def sweep_strip(res: Resources, inp: InputImage, mask: np.ndarray | None, specs: Sequence[tuple[int, float]],
                values: Sequence[float], *, seed: int = 0, report: Report = lambda f, s: None) -> tuple[Image.Image, Path]:
    """The first direction at each strength in ``values`` (the others at theirs), side by side."""
    if not specs:
        raise InputError("pick at least one direction to sweep")
    prep = prepare(res.catalog, [DirectionSpec(int(i), float(s)) for i, s in specs], device=res.device)
    side = prep.model.resolution
    mpath = mask_file(res, mask, side) if mask is not None else None
    settled = _settled(res, prep, inp, mpath, [i for i, _ in specs], seed, report)
    edits = sweep_settled(settled, prep, values,
                          progress=lambda n, v: report(0.4 + 0.6 * n / len(values), f"strength {v:+g}"))
    strip = Image.fromarray(np.concatenate([to_uint8(e) for e in edits], 1))
    path = _out(res, f"{inp.sha[:12]}_{specs[0][0]}_sweep.png")
    strip.save(path)
    return _shown(strip), path


def best_of(res: Resources, inp: InputImage, mask: np.ndarray | None, query: str, n: int, *, seed: int = 0,
            report: Report = lambda f, s: None) -> EditView:
    """The top ``n`` hits for ``query`` each applied with its sign; the one CLIP sees furthest towards it kept."""
    from ..search import text_direction

    clip = res.clip()
    report(0.1, "searching")
    cands = query_candidates(res.catalog, clip, query, k=int(n), domain=res.domain, device=res.device,
                             index_folder=res.index_folder)
    side = cands[0].prep.model.resolution
    mpath = mask_file(res, mask, side) if mask is not None else None
    report(0.3, f"applying {len(cands)} hits")
    edited, picks = apply_best_of([c.prep for c in cands], clip, text_direction(clip, query, res.domain),
                                  [inp.fitted(side)], options=cands[0].prep.model.settings.edit_options(seed=seed),
                                  mask=mpath)
    c = cands[picks[0]]
    note = (f"kept #{c.hit.id} ({'+' if c.hit.sign > 0 else '-'}v, strength {c.prep.strengths[0]:+g}) of "
            f"{', '.join('#' + str(x.hit.id) for x in cands)} for {query!r}")
    return _view(res, inp, side, edited[0], mpath, note, f"{inp.sha[:12]}_best_{c.hit.id}")


def _out(res: Resources, name: str) -> Path:
    folder = res.work / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _shown(img: Image.Image) -> Image.Image:
    scale = max(1, SHOW // img.height)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def _view(res: Resources, inp: InputImage, side: int, out: torch.Tensor, mask: Path | None, note: str,
          stem: str) -> EditView:
    """The edit written as PNG, shown beside its input, with its locality when it had a mask."""
    before = load_image(inp.fitted(side), side)
    after = Image.fromarray(to_uint8(out))
    png = _out(res, f"{stem}.png")
    after.save(png)
    local = None
    if mask is not None:
        m = np.asarray(Image.open(mask).convert("L")) > 127
        local = core.locality(out - before, torch.from_numpy(m))
        note += f"; locality {local:.2f} (share of the change inside the mask)"
    return EditView(_shown(Image.fromarray(to_uint8(before))), _shown(after), png, local, note)
