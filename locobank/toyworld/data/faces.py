"""Procedural 32x32 cartoon faces with exact part masks, attributes and captions.

Faces are painted on a 4x supersampled canvas and box-filtered down, so edges are
anti-aliased the way a learned model expects. Every face is a pure function of its
seed: the same seed always gives the same pixels, masks and caption.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SIZE = 32
SUPER = 4
# Seeds below this number are for training; held-out faces use seeds at or above it.
HELD_OUT_SEED = 1_000_000

SKIN = {
    "pale": (246, 214, 190),
    "light": (232, 190, 160),
    "tan": (205, 150, 110),
    "brown": (150, 100, 70),
    "dark": (100, 65, 45),
}
HAIR = {
    "black": (25, 22, 22),
    "brown": (110, 65, 30),
    "blond": (240, 205, 90),
    "red": (200, 70, 30),
    "gray": (165, 165, 170),
    "white": (245, 245, 240),
}
IRIS = {
    "blue": (40, 110, 235),
    "brown": (105, 55, 20),
    "green": (40, 170, 60),
    "gray": (130, 135, 140),
}
BACKGROUND = {
    "sky blue": (150, 200, 240),
    "pink": (240, 180, 200),
    "mint": (170, 230, 190),
    "yellow": (245, 230, 150),
    "lilac": (200, 180, 235),
    "gray": (200, 200, 200),
}
PARTS = ("eyes", "mouth", "hair", "face", "background", "glasses")

# Label ids painted into the supersampled label map.
_BG, _HAIR, _FACE, _EYE, _MOUTH, _GLASSES = range(6)
# Dark lips, drawn thick enough to read on every skin tone: with red lips (150, 30, 45) the
# mouth of a dark face differed from its skin by 61 RGB units, and the toy DDPM's mouth
# directions on brown and dark faces were skin-tone changes instead of smile changes.
LIPS = (30, 8, 14)
LIP_HALF_THICKNESS = 0.8


@dataclass(frozen=True)
class FaceAttributes:
    """Everything that decides how a face looks; captions and probes read these."""

    seed: int
    skin: str
    hair: str
    hair_long: bool
    iris: str
    eye_size: float  # 0 = small, 1 = big
    smile: float  # -1 = strong frown, +1 = strong smile
    mouth_width: float  # 0 = narrow, 1 = wide
    glasses: bool
    background: str
    dx: float
    dy: float


@dataclass
class Face:
    """A rendered face: uint8 HxWx3 image, boolean HxW masks per part, attributes, caption."""

    image: np.ndarray
    masks: dict[str, np.ndarray]
    attrs: FaceAttributes
    caption: str


def sample_attributes(seed: int) -> FaceAttributes:
    """Draw the attributes of face number ``seed``."""
    rng = random.Random(seed)
    return FaceAttributes(
        seed=seed,
        skin=rng.choice(sorted(SKIN)),
        hair=rng.choice(sorted(HAIR)),
        hair_long=rng.random() < 0.5,
        iris=rng.choice(sorted(IRIS)),
        eye_size=float(rng.random() < 0.5),
        smile=rng.choice((-1.0, 1.0)) * rng.uniform(0.45, 1.0),
        mouth_width=rng.random(),
        glasses=rng.random() < 0.35,
        background=rng.choice(sorted(BACKGROUND)),
        dx=rng.uniform(-1.5, 1.5),
        dy=rng.uniform(-1.0, 1.0),
    )


def geometry(a: FaceAttributes) -> dict[str, float]:
    """Positions and sizes in 32-pixel units; probes use the same numbers."""
    cx, cy = 16.0 + a.dx, 17.0 + a.dy
    return {
        "cx": cx,
        "cy": cy,
        "face_rx": 8.6,
        "face_ry": 10.4,
        "eye_y": cy - 1.5,
        "eye_dx": 3.9,
        "eye_rx": 2.0 + 0.9 * a.eye_size,
        "eye_ry": 1.5 + 0.8 * a.eye_size,
        "iris_r": 1.15 + 0.5 * a.eye_size,
        "mouth_y": cy + 5.0,
        "mouth_hw": 2.8 + 1.8 * a.mouth_width,
        "mouth_bend": 1.6 * a.smile,
    }


def render(a: FaceAttributes) -> Face:
    """Paint one face and its part masks."""
    g = geometry(a)
    n = SIZE * SUPER
    coords = (np.arange(n) + 0.5) / SUPER
    y, x = np.meshgrid(coords, coords, indexing="ij")
    rgb = np.empty((n, n, 3), np.float32)
    label = np.full((n, n), _BG, np.int8)

    top, bottom = np.array(BACKGROUND[a.background], np.float32), None
    bottom = top * 0.88
    t = (y / SIZE)[..., None]
    rgb[:] = top * (1 - t) + bottom * t

    def paint(region: np.ndarray, colour, lab: int) -> None:
        rgb[region] = colour
        label[region] = lab

    cx, cy = g["cx"], g["cy"]
    hair = np.array(HAIR[a.hair], np.float32)
    skin = np.array(SKIN[a.skin], np.float32)
    # Hair behind the face: a cap, plus long sides reaching the shoulders.
    cap = ((x - cx) / (g["face_rx"] + 1.6)) ** 2 + ((y - (cy - 1.5)) / (g["face_ry"] + 1.2)) ** 2 <= 1
    cap &= y < cy - 1.0
    if a.hair_long:
        sides = (np.abs(x - cx) <= g["face_rx"] + 2.2) & (y >= cy - 4) & (y <= cy + 12.5)
        cap |= sides
    paint(cap, hair, _HAIR)
    face = ((x - cx) / g["face_rx"]) ** 2 + ((y - cy) / g["face_ry"]) ** 2 <= 1
    paint(face, skin, _FACE)
    # Fringe over the forehead.
    fringe = face & (y < cy - 6.0 + 0.8 * np.cos((x - cx) * 1.2))
    paint(fringe, hair, _HAIR)

    _paint_eyes(paint, x, y, g, a)
    u = (x - cx) / g["mouth_hw"]
    curve_y = g["mouth_y"] - g["mouth_bend"] * (u**2 - 0.35)
    lips = (np.abs(u) <= 1) & (np.abs(y - curve_y) <= LIP_HALF_THICKNESS)
    paint(lips, LIPS, _MOUTH)
    if a.glasses:
        _paint_glasses(paint, x, y, g)

    small = rgb.reshape(SIZE, SUPER, SIZE, SUPER, 3).mean(axis=(1, 3))
    image = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    masks = _masks(label, g, a)
    return Face(image=image, masks=masks, attrs=a, caption=caption(a))


def _paint_eyes(paint, x: np.ndarray, y: np.ndarray, g: dict[str, float], a: FaceAttributes) -> None:
    """Both eyes: white, iris and pupil."""
    for side in (-1, 1):
        ex = g["cx"] + side * g["eye_dx"]
        ey = g["eye_y"]
        white = ((x - ex) / g["eye_rx"]) ** 2 + ((y - ey) / g["eye_ry"]) ** 2 <= 1
        paint(white, (250, 250, 250), _EYE)
        iris = ((x - ex) ** 2 + (y - ey) ** 2 <= g["iris_r"] ** 2) & white
        paint(iris, IRIS[a.iris], _EYE)
        pupil = ((x - ex) ** 2 + (y - ey) ** 2 <= (0.42 * g["iris_r"]) ** 2) & white
        paint(pupil, (10, 10, 10), _EYE)


def _paint_glasses(paint, x: np.ndarray, y: np.ndarray, g: dict[str, float]) -> None:
    """Two round frames and the bridge between them."""
    frame = np.zeros(x.shape, bool)
    for side in (-1, 1):
        ex = g["cx"] + side * g["eye_dx"]
        r = np.hypot(x - ex, (y - g["eye_y"]) * 1.15)
        frame |= (r >= 3.0) & (r <= 3.7)
    frame |= (np.abs(y - g["eye_y"]) <= 0.35) & (np.abs(x - g["cx"]) <= g["eye_dx"] - 3.0)
    paint(frame, (20, 20, 25), _GLASSES)


def _coverage(region: np.ndarray) -> np.ndarray:
    return region.reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))


def _masks(label: np.ndarray, g: dict[str, float], a: FaceAttributes) -> dict[str, np.ndarray]:
    """Part masks at 32x32. Eyes and mouth are the regions the part can occupy, so a
    mask also covers where a bigger eye or a stronger smile would be drawn."""
    n = SIZE * SUPER
    coords = (np.arange(n) + 0.5) / SUPER
    y, x = np.meshgrid(coords, coords, indexing="ij")
    eyes = np.zeros((n, n), bool)
    for side in (-1, 1):
        ex = g["cx"] + side * g["eye_dx"]
        eyes |= ((x - ex) / 3.9) ** 2 + ((y - g["eye_y"]) / 3.5) ** 2 <= 1
    mouth = (np.abs(x - g["cx"]) <= 5.4) & (np.abs(y - g["mouth_y"]) <= 2.4)
    masks = {
        "eyes": _coverage(eyes) >= 0.5,
        "mouth": _coverage(mouth) >= 0.5,
        "hair": _coverage(label == _HAIR) >= 0.5,
        "face": _coverage(label == _FACE) >= 0.5,
        "background": _coverage(label == _BG) > 0.5,
        "glasses": _coverage(label == _GLASSES) >= 0.25,
    }
    return masks


def caption(a: FaceAttributes) -> str:
    """A plain-English caption, with wording that varies by seed."""
    rng = random.Random(a.seed * 7919 + 1)
    mood = "smiling" if a.smile > 0 else "frowning"
    eyes = f"{'big' if a.eye_size > 0.5 else 'small'} {a.iris} eyes"
    length = "long" if a.hair_long else "short"
    hair = f"{length} {a.hair} hair"
    skin = f"{a.skin} skin"
    parts = [
        f"a {mood} face with {hair} and {eyes}",
        f"a cartoon of a {mood} person with {eyes} and {hair}",
        f"a {mood} face, {hair}, {eyes}",
        f"a face with {hair}, {eyes} and a {'smile' if a.smile > 0 else 'frown'}",
    ]
    text = rng.choice(parts)
    if rng.random() < 0.4:
        text += f", {skin}"
    if a.glasses:
        text += rng.choice([", wearing glasses", " and glasses", ", with glasses"])
    if rng.random() < 0.3:
        text += f", on a {a.background} background"
    return text


def face(seed: int) -> Face:
    """The face with this seed."""
    return render(sample_attributes(seed))


def generator_digest(n: int = 8) -> str:
    """A short digest of the first ``n`` faces: it changes whenever the generator draws differently."""
    h = hashlib.sha256()
    for s in range(n):
        h.update(face(s).image.tobytes())
    return h.hexdigest()[:10]


def batch(seeds, as_float: bool = True) -> np.ndarray:
    """Images of several faces as N x 3 x 32 x 32, in [-1, 1] when ``as_float``."""
    imgs = np.stack([face(int(s)).image for s in seeds])
    if not as_float:
        return imgs
    return imgs.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


def write_dataset(out: Path, n: int, seed: int = 0, progress=None) -> Path:
    """Write ``n`` faces as ``<stem>.png`` + ``<stem>_<part>.png`` masks + manifest.jsonl."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    with manifest.open("w") as fh:
        for i in range(n):
            f = face(seed + i)
            stem = f"face_{seed + i:07d}"
            Image.fromarray(f.image).save(out / f"{stem}.png")
            masks = {}
            for part, m in f.masks.items():
                if not m.any():
                    continue
                Image.fromarray(m.astype(np.uint8) * 255).save(out / f"{stem}_{part}.png")
                masks[part] = f"{stem}_{part}.png"
            row = {"image": f"{stem}.png", "masks": masks, "caption": f.caption, "attributes": asdict(f.attrs)}
            fh.write(json.dumps(row) + "\n")
            if progress is not None:
                progress(1)
    return manifest
