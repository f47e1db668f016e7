"""Caption and prompt text for the toy world: training captions with varied wording, and
the attribute words that zero-shot prompts and search queries use."""

from __future__ import annotations

import random

from .faces import BACKGROUND, HAIR, IRIS, SKIN, FaceAttributes, caption

ATTRIBUTE_WORDS = {
    "hair": sorted(HAIR),
    "iris": sorted(IRIS),
    "mood": ["smiling", "frowning"],
    "glasses": ["with glasses", "without glasses"],
    "skin": sorted(SKIN),
    "background": sorted(BACKGROUND),
}


def phrases(a: FaceAttributes) -> list[str]:
    """Short phrases, each naming one attribute of the face."""
    out = [
        f"{a.hair} hair",
        f"{'long' if a.hair_long else 'short'} hair",
        f"{a.iris} eyes",
        f"{'big' if a.eye_size > 0.5 else 'small'} eyes",
        "a smile" if a.smile > 0 else "a frown",
        "glasses" if a.glasses else "no glasses",
        f"{a.skin} skin",
        f"a {a.background} background",
        f"a {'wide' if a.mouth_width > 0.5 else 'narrow'} mouth",
    ]
    return out


def training_caption(a: FaceAttributes, rng: random.Random) -> str:
    """The full caption half the time; otherwise a short one naming one to three attributes,
    so that prompts like "a face with blue eyes" are in the training distribution."""
    if rng.random() < 0.5:
        return caption(a)
    ph = phrases(a)
    k = rng.choice((1, 1, 2, 3))
    pick = rng.sample(ph, k)
    if a.smile > 0 and rng.random() < 0.5:
        lead = "a smiling face"
    elif a.smile <= 0 and rng.random() < 0.5:
        lead = "a frowning face"
    else:
        lead = "a face"
    return f"{lead} with " + " and ".join(pick)
