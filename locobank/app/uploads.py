"""What the browser may send: PNG or JPEG, at most 20 MB and 4096 pixels a side, checked from the
file's header before anything is decoded; EXIF orientation honoured; masks that match their image."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

MAX_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
FORMATS = {"PNG", "JPEG"}


def _opened(path: Path, what: str) -> Image.Image:
    """The file opened lazily (header only), refused when too large or not PNG/JPEG."""
    path = Path(path)
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise InputError(f"the {what} upload could not be read ({e.strerror or e})") from e
    if size > MAX_BYTES:
        raise InputError(f"the {what} is {size / 1e6:.1f} MB; the limit is {MAX_BYTES // (1024 * 1024)} MB")
    try:
        img = Image.open(path)  # reads the header only
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"the {what} is not a PNG or JPEG image") from e
    if img.format not in FORMATS:
        img.close()
        raise InputError(f"the {what} is {img.format or 'of an unknown format'}; upload a PNG or JPEG")
    w, h = img.size
    if w > MAX_SIDE or h > MAX_SIDE:
        img.close()
        raise InputError(f"the {what} is {w}x{h} pixels; the limit is {MAX_SIDE}x{MAX_SIDE}")
    return img


def _decoded(img: Image.Image, what: str) -> Image.Image:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"the {what} is truncated or corrupt ({e})") from e
    return ImageOps.exif_transpose(img)


def read_image(path: Path) -> Image.Image:
    """An uploaded photo as RGB, upright; transparent pixels over white."""
    img = _decoded(_opened(path, "image"), "image")
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def fit_square(img: Image.Image, side: int) -> Image.Image:
    """The centre square of ``img`` at ``side`` pixels, as the model takes it."""
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.crop(box).resize((side, side), Image.BICUBIC) if (w, h) != (side, side) else img


def read_mask(path: Path, sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """An uploaded mask (white, or painted on a transparent layer: the part to edit) as a bool
    array at its own size, which must be one of ``sizes`` (those of the image it belongs to)."""
    img = _decoded(_opened(path, "mask"), "mask")
    if img.size not in [tuple(s) for s in sizes]:
        w, h = sizes[0]
        raise InputError(f"the mask is {img.size[0]}x{img.size[1]} but the image is {w}x{h}; upload the mask drawn "
                         f"on this image, at its size")
    if img.mode in ("RGBA", "LA"):
        return np.asarray(img.getchannel("A")) > 127
    return np.asarray(img.convert("L")) > 127


def square_mask(mask: np.ndarray, side: int) -> np.ndarray:
    """A bool mask cropped and resized as :func:`fit_square` does its image (nearest pixel)."""
    return np.asarray(fit_square(Image.fromarray(mask.astype(np.uint8) * 255), side)) > 127


def png_bytes(img: Image.Image) -> bytes:
    """``img`` as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def sha256_of(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
