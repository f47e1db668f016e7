"""Pixel probes that measure a toy face's attributes from its pixels, not from CLIP.

Each probe takes a uint8 H x W x 3 image and the face's attributes (for its geometry and
masks), so an edited image is measured in the same place as the original.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .faces import HAIR, IRIS, FaceAttributes, geometry, render, sample_attributes

_LUMA = np.array([0.299, 0.587, 0.114])
TARGET_COLOURS = {**{f"{k} hair": v for k, v in HAIR.items()}, **{f"{k} eyes": v for k, v in IRIS.items()}}


def _grid():
    y, x = np.mgrid[0:32, 0:32].astype(np.float64) + 0.5
    return y, x


def _skin(img: np.ndarray, a: FaceAttributes) -> np.ndarray:
    face = render(a).masks["face"]
    return np.median(img[face].astype(np.float64), axis=0)


def mouth_curvature(img: np.ndarray, a: FaceAttributes) -> float:
    """How much the mouth corners rise above its centre, in pixels (> 0 smile, < 0 frown).

    Fits y = c2 u^2 + c1 u + c0 to the lip pixels' centre of mass in each column, weighting by
    how far a pixel's colour is from the skin's, and reads the rise -c2 e^2 at the mouth's
    half-width e as measured in ``img`` (sqrt(3) times the weighted RMS of u: a flat profile's
    half-width). Only the mouth's place comes from ``a``, not its width: an edit that widens a
    mouth while its corners rise would otherwise read as a flatter mouth."""
    g = geometry(a)
    y, x = _grid()
    region = (np.abs(x - g["cx"]) <= 5.4) & (np.abs(y - g["mouth_y"]) <= 2.6)
    im = img.astype(np.float64)
    w = np.linalg.norm(im - _skin(img, a), axis=-1) * region
    w = np.clip(w - 25.0, 0, None)
    cols = np.where(w.sum(0) > 1e-6)[0]
    if len(cols) < 3:
        return 0.0
    yc = (w[:, cols] * y[:, cols]).sum(0) / w[:, cols].sum(0)
    u = (cols + 0.5 - g["cx"])
    wt = w[:, cols].sum(0)
    c2, _, _ = np.polyfit(u, yc, 2, w=np.sqrt(wt))
    half_width_sq = 3.0 * float((wt * u * u).sum() / wt.sum())
    return float(-c2 * half_width_sq)


def iris_colour(img: np.ndarray, a: FaceAttributes) -> np.ndarray:
    """Mean RGB inside both irises, down-weighting white, black (pupil, frames) pixels."""
    g = geometry(a)
    y, x = _grid()
    region = np.zeros((32, 32), bool)
    for side in (-1, 1):
        region |= np.hypot(x - g["cx"] - side * g["eye_dx"], y - g["eye_y"]) <= max(1.3, g["iris_r"])
    im = img.astype(np.float64)
    w = np.minimum(np.linalg.norm(im - 250.0, axis=-1), np.linalg.norm(im - 10.0, axis=-1)) * region
    if w.sum() < 1e-6:
        return im[region].mean(0)
    return (im * w[..., None]).sum((0, 1)) / w.sum()


def hair_colour(img: np.ndarray, a: FaceAttributes) -> np.ndarray:
    """Mean RGB over the face's own hair mask."""
    m = render(a).masks["hair"]
    return img[m].astype(np.float64).mean(0)


def eye_area(img: np.ndarray, a: FaceAttributes) -> float:
    """Soft count of eye-white pixels around both eyes."""
    g = geometry(a)
    y, x = _grid()
    region = np.zeros((32, 32), bool)
    for side in (-1, 1):
        region |= ((x - g["cx"] - side * g["eye_dx"]) / 3.9) ** 2 + ((y - g["eye_y"]) / 3.5) ** 2 <= 1
    lo = img.astype(np.float64).min(-1)
    return float((np.clip((lo - 200.0) / 40.0, 0, 1) * region).sum())


def glasses_darkness(img: np.ndarray, a: FaceAttributes) -> float:
    """Soft count of frame pixels in a ring around the eyes: pixels darker than the face's skin.

    Darkness is measured against the skin's own luminance, not an absolute level: the thin,
    anti-aliased frames of a 32-pixel face rarely fall below a fixed threshold on light skin
    (an absolute test, max channel < 90, scored real glasses at median 3.7 and as low as 0.7
    on 130 held-out faces; this one scores them at 7.4 to 38, and faces without glasses at
    1.1 at most)."""
    g = geometry(a)
    y, x = _grid()
    ring = np.zeros((32, 32), bool)
    for side in (-1, 1):
        r = np.hypot(x - g["cx"] - side * g["eye_dx"], (y - g["eye_y"]) * 1.15)
        ring |= (r >= 2.6) & (r <= 4.2)
    lum = img.astype(np.float64) @ _LUMA
    skin = float(_skin(img, a) @ _LUMA)
    return float((np.clip((skin - lum - 15.0) / 40.0, 0, 1) * ring).sum())


def hair_length(img: np.ndarray, a: FaceAttributes) -> float:
    """Pixels beside the lower face that differ from the background: long hair fills them."""
    g = geometry(a)
    y, x = _grid()
    side = (np.abs(x - g["cx"]) >= g["face_rx"] + 0.3) & (np.abs(x - g["cx"]) <= g["face_rx"] + 2.2)
    side &= (y >= g["cy"] + 1) & (y <= g["cy"] + 11)
    bg = render(a).masks["background"]
    bg_col = np.median(img[bg & ~side].astype(np.float64), axis=0) if (bg & ~side).any() else img[0, 0].astype(np.float64)
    d = np.linalg.norm(img.astype(np.float64) - bg_col, axis=-1)
    return float((np.clip(d / 60.0, 0, 1) * side).sum())


def colour_distance(rgb: np.ndarray, target: str) -> float:
    """Euclidean distance from an RGB triple to a named palette colour ("blond hair", "blue eyes")."""
    return float(np.linalg.norm(np.asarray(rgb, np.float64) - np.asarray(TARGET_COLOURS[target], np.float64)))


def attribute_score(query: str, img: np.ndarray, a: FaceAttributes) -> float:
    """A number that rises as ``img`` shows more of ``query`` (a toy-world query phrase)."""
    if query == "smile":
        return mouth_curvature(img, a)
    if query == "frown":
        return -mouth_curvature(img, a)
    if query == "bigger eyes":
        return eye_area(img, a)
    if query == "glasses":
        return glasses_darkness(img, a)
    if query == "long hair":
        return hair_length(img, a)
    if query.endswith(" eyes"):
        return -colour_distance(iris_colour(img, a), query)
    if query.endswith(" hair"):
        return -colour_distance(hair_colour(img, a), query)
    raise KeyError(f"no probe for {query!r}")


PROBE_PART = {"smile": "mouth", "frown": "mouth", "bigger eyes": "eyes", "glasses": "eyes", "long hair": "hair"}


def part_for(query: str) -> str:
    """The mask a direction for ``query`` should have been harvested with."""
    if query in PROBE_PART:
        return PROBE_PART[query]
    return "eyes" if query.endswith(" eyes") else "hair"


LACKS = {
    "smile": lambda a: a.smile < 0,
    "frown": lambda a: a.smile > 0,
    "bigger eyes": lambda a: a.eye_size < 0.5,
    "long hair": lambda a: not a.hair_long,
    "glasses": lambda a: not a.glasses,
}


def has_probe(query: str) -> bool:
    """Whether :func:`lacks` knows ``query`` (a toy-world query phrase)."""
    return query in LACKS or query.endswith((" eyes", " hair"))


def lacks(query: str, seed: int) -> bool:
    """Whether face ``seed`` does not already show ``query`` (so an edit towards it can show)."""
    a = sample_attributes(seed)
    if query in LACKS:
        return LACKS[query](a)
    word = query.split()[0]
    return (a.iris if query.endswith(" eyes") else a.hair) != word


def targets_for(query: str | Sequence[str], n: int, seed0: int, within: int | None = None) -> list[int]:
    """The first ``n`` faces from ``seed0`` on that lack the attribute ``query`` asks for (each
    of them, for several queries); with ``within``, only among the faces ``seed0 .. seed0 +
    within - 1``, so there may be fewer."""
    queries = [query] if isinstance(query, str) else list(query)
    out, s = [], seed0
    while len(out) < n and (within is None or s < seed0 + within):
        if all(lacks(q, s) for q in queries):
            out.append(s)
        s += 1
    return out
