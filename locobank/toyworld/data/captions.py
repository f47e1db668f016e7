"""Caption and prompt text for the toy world: training captions with varied wording, the
attribute words that zero-shot prompts and search queries use, and the captions of
text-supervised edits (a face's caption with one attribute changed)."""

from __future__ import annotations

import random
from dataclasses import replace

from .faces import BACKGROUND, HAIR, IRIS, SKIN, FaceAttributes, caption

ATTRIBUTE_WORDS = {
    "hair": sorted(HAIR),
    "iris": sorted(IRIS),
    "mood": ["smiling", "frowning"],
    "glasses": ["with glasses", "without glasses"],
    "skin": sorted(SKIN),
    "background": sorted(BACKGROUND),
}


# Other words users type for the same attribute, comparatives included: search queries such as
# "bigger eyes" or "a happy face" must land near the attribute the captions name.
SYNONYMS = {
    "big": ("big", "large", "bigger", "larger"),
    "small": ("small", "tiny", "smaller", "little"),
    "smiling": ("smiling", "happy", "grinning", "cheerful"),
    "frowning": ("frowning", "sad", "unhappy", "grumpy"),
    "a smile": ("a smile", "a grin", "a happy mouth"),
    "a frown": ("a frown", "a sad mouth", "a scowl"),
    "long": ("long", "longer"),
    "short": ("short", "shorter"),
    "glasses": ("glasses", "eyeglasses", "spectacles"),
}


def _word(word: str, rng: random.Random | None) -> str:
    if rng is None or rng.random() < 0.5:
        return word
    return rng.choice(SYNONYMS.get(word, (word,)))


def phrases(a: FaceAttributes, rng: random.Random | None = None) -> list[str]:
    """Short phrases, each naming one attribute of the face; with ``rng``, words are sometimes
    swapped for a synonym or comparative from :data:`SYNONYMS`."""
    out = [
        f"{a.hair} hair",
        f"{_word('long' if a.hair_long else 'short', rng)} hair",
        f"{a.iris} eyes",
        f"{_word('big' if a.eye_size > 0.5 else 'small', rng)} eyes",
        _word("a smile" if a.smile > 0 else "a frown", rng),
        _word("glasses", rng) if a.glasses else "no glasses",
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
    ph = phrases(a, rng)
    k = rng.choice((1, 1, 2, 3))
    pick = rng.sample(ph, k)
    if rng.random() < 0.5:
        lead = f"a {_word('smiling' if a.smile > 0 else 'frowning', rng)} face"
    else:
        lead = "a face"
    return f"{lead} with " + " and ".join(pick)


def caption_without(a: FaceAttributes, query: str) -> str:
    """The face's caption (:func:`~locobank.toyworld.data.faces.caption`) without the words for what
    ``query`` edits: its mood for "smile" and "frown", its iris colour for "... eyes", its hair
    colour for "... hair". Captions name glasses only when a face has them, so for "glasses" it is
    the caption itself."""
    text = caption(a)
    if query in ("smile", "frown"):
        for words in ("smiling ", "frowning ", " and a frown", " and a smile"):
            text = text.replace(words, "")
    elif query.endswith(" eyes"):
        text = text.replace(f" {a.iris} eyes", " eyes")
    elif query.endswith(" hair"):
        text = text.replace(f" {a.hair} hair", " hair")
    return text


# What each text-supervised query changes in a face's attributes: its edit caption is the face's
# own caption rewritten with the change, same wording.
EDITS = {
    "smile": lambda a: replace(a, smile=abs(a.smile) or 0.8),
    "blue eyes": lambda a: replace(a, iris="blue"),
    "blond hair": lambda a: replace(a, hair="blond"),
    "glasses": lambda a: replace(a, glasses=True),
}


def edit_caption(a: FaceAttributes, query: str) -> str:
    """The caption of the face ``a`` with ``query`` made true (a text-supervised edit's prompt)."""
    return caption(EDITS[query](a))
