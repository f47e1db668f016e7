"""Reading and writing images and masks, with clear errors for inputs the model cannot take."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError

log = logging.getLogger(__name__)

MAX_PIXELS = 64_000_000


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        img = Image.open(path)
        img.load()
    except UnidentifiedImageError as e:
        raise InputError(f"{path}: not an image file PIL can read") from e
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: image is larger than {MAX_PIXELS:,} pixels") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: the image is truncated or corrupt ({e})") from e
    return img


def load_image(path: Path, size: int | None = None, *, resize: bool = False, channels: int = 3) -> torch.Tensor:
    """An RGB image as a (3, H, W) float tensor in [-1, 1].

    Refuses grayscale, alpha, 16-bit and palette-less odd modes instead of guessing, and a size
    other than ``size`` unless ``resize`` is set (then it says so in the log).
    """
    img = _open(path)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    bands = len(img.getbands())
    if img.mode not in ("RGB", "RGBA", "L", "LA") or (img.mode == "RGB" and channels != 3):
        raise InputError(f"{path}: image mode {img.mode!r} is not 8-bit RGB; convert it to 8-bit RGB first")
    if bands != channels:
        fix = {"L": "it is grayscale: convert it to RGB", "LA": "it is grayscale with alpha: convert it to RGB",
               "RGBA": "drop its alpha channel"}.get(img.mode, "convert it to RGB")
        raise InputError(f"{path}: image has {bands} channel{'s' if bands != 1 else ''} ({img.mode}); "
                         f"the model needs {channels} (RGB); {fix} first")
    if size is not None and img.size != (size, size):
        if not resize:
            raise InputError(f"{path}: image is {img.size[0]}x{img.size[1]} but the model takes {size}x{size}; "
                             f"pass --resize to resize it")
        log.warning("%s: resized from %dx%d to %dx%d", path, img.size[0], img.size[1], size, size)
        img = img.resize((size, size), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def load_mask(path: Path, size: int | tuple[int, int] | None = None, *, resize: bool = False) -> torch.Tensor:
    """A mask as a (H, W) bool tensor: white (> 127) is the region to edit."""
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        arr = arr > (arr.max() / 2 if arr.max() > 0 else 0)
        img = Image.fromarray(arr.astype(np.uint8) * 255)
    else:
        img = img.convert("L")
        levels = np.unique(np.asarray(img))
        if len(levels) > 2 or not set(levels.tolist()) <= {0, 255}:
            log.warning("%s: the mask has grey levels; pixels brighter than 127 (of 255) are the part to edit",
                        path)
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if img.size != (hw[1], hw[0]):
            if not resize:
                raise InputError(f"{path}: mask is {img.size[0]}x{img.size[1]} but the image is {hw[1]}x{hw[0]}; "
                                 f"pass --resize to resize the mask")
            log.warning("%s: mask resized from %dx%d to %dx%d (nearest)", path, img.size[0], img.size[1], hw[1], hw[0])
            img = img.resize((hw[1], hw[0]), Image.NEAREST)
    return torch.from_numpy(np.asarray(img) > 127)


def check_mask(mask: torch.Tensor, shape: tuple[int, int], *, need_outside: bool = True, name: str = "mask") -> torch.Tensor:
    """A (H, W) bool mask that is neither empty nor (when the null space needs it) everything."""
    m = torch.as_tensor(mask)
    if m.dim() == 3:
        m = m.any(0) if m.dtype == torch.bool else (m > 0.5).any(0)
    if m.dim() != 2:
        raise InputError(f"{name} must be H x W, got shape {tuple(m.shape)}")
    if tuple(m.shape) != tuple(shape):
        raise InputError(f"{name} is {m.shape[1]}x{m.shape[0]} but the image is {shape[1]}x{shape[0]}; "
                         f"resize the mask (load_mask(..., resize=True) or --resize)")
    m = m.bool() if m.dtype == torch.bool else m > 0.5
    if not m.any():
        raise InputError(f"{name} is empty: it selects no pixel to edit")
    if need_outside and m.all():
        raise InputError(f"{name} covers the whole image: LOCO keeps the pixels outside the mask unchanged, and "
                         f"there are none; mark only the part to edit (harvest and directions take --null-rank 0 "
                         f"for a global edit)")
    return m


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (H, W, 3) in [-1, 1] to a uint8 H x W x 3 array."""
    if x.dim() == 4:
        x = x[0]
    if x.shape[0] in (1, 3):
        x = x.permute(1, 2, 0)
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def save_image(x: torch.Tensor, path: Path) -> Path:
    """Write a [-1, 1] tensor as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(x)).save(path)
    return path


def pack_mask(mask: torch.Tensor) -> dict:
    """A (H, W) bool mask as JSON: its shape and its bits, packed and base64-encoded."""
    import base64

    m = torch.as_tensor(mask).bool().cpu().numpy()
    return {"shape": list(m.shape), "bits": base64.b64encode(np.packbits(m.reshape(-1)).tobytes()).decode("ascii")}


def unpack_mask(packed: dict) -> torch.Tensor:
    """The (H, W) bool mask that :func:`pack_mask` wrote; a malformed entry is an InputError."""
    import base64
    import binascii

    try:
        h, w = (int(n) for n in packed["shape"])
        bits = np.frombuffer(base64.b64decode(packed["bits"], validate=True), dtype=np.uint8)
        flat = np.unpackbits(bits)[: h * w]
        if flat.size != h * w:
            raise ValueError(f"{flat.size} bits for a {h}x{w} mask")
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise InputError(f"a stored mask is malformed: {e}") from e
    return torch.from_numpy(flat.reshape(h, w).astype(bool))


def pack_part(image: torch.Tensor, mask: torch.Tensor) -> dict:
    """A part as JSON: its mask (:func:`pack_mask`) and its column and row profiles in ``image``
    (:func:`locobank.loco.register.profiles`), to 5 significant digits."""
    from .loco.register import profiles

    cols, rows = profiles(torch.as_tensor(image), torch.as_tensor(mask).bool())
    return {"mask": pack_mask(mask), "cols": [float(f"{v:.5g}") for v in cols.tolist()],
            "rows": [float(f"{v:.5g}") for v in rows.tolist()]}
