"""Text search over direction effects, and automatic names from a vocabulary.

A query's text direction is normalize(T("a {domain} with {text}") - T("a {domain}")); the
form "A -> B" uses normalize(T(B) - T(A)). A direction matches with sign +1 when its effect
points along the query and -1 when the opposite edit (-v) does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from .clip import ClipModel
from .errors import InputError, NotFound
from .paths import DATA

ARROW = re.compile(r"\s*(?:->|→)\s*")


def named(label: str | None, label_sign: int | None) -> str:
    """A direction's automatic name with the sign it names: 'frown (-v)' means -v frowns."""
    if not label:
        return "-"
    return f"{label} ({'-' if (label_sign or 1) < 0 else '+'}v)"


def _template(text: str, domain: str) -> str:
    text = text.strip()
    return text if text.lower().startswith(("a ", "an ")) and domain in text else f"a {domain} with {text}"


def text_direction(clip: ClipModel, query: str, domain: str = "face") -> np.ndarray:
    """The unit text direction of a query (see the module docstring)."""
    q = query.strip()
    if not q:
        raise InputError("the query is empty")
    parts = ARROW.split(q)
    if len(parts) == 2 and all(p.strip() for p in parts):
        a, b = clip.encode_text([_template(parts[0], domain), _template(parts[1], domain)])
        d = b - a
    elif len(parts) == 1:
        t, base = clip.encode_text([_template(q, domain), f"a {domain}"])
        d = t - base
    else:
        raise InputError(f"could not read {query!r}: use TEXT or 'FROM -> TO'")
    return F.normalize(d, dim=0).cpu().numpy().astype(np.float32)


def load_vocabulary(domain: str = "face", extra: list[str] | None = None, files: list[Path] | None = None) -> list[str]:
    """Phrases from data/vocab/<domain>.txt, plus the user's own files and phrases (comments and blanks skipped)."""
    paths = [DATA / "vocab" / f"{domain}.txt"] + list(files or [])
    phrases: list[str] = []
    for p in paths:
        if p.exists():
            phrases += [ln.strip() for ln in Path(p).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        elif p != paths[0]:
            raise InputError(f"vocabulary file {p} does not exist")
    phrases += [e.strip() for e in extra or [] if e.strip()]
    if not phrases:
        raise InputError(f"no vocabulary for domain {domain!r}: add data/vocab/{domain}.txt or pass --vocab")
    return list(dict.fromkeys(phrases))


def name_effects(clip: ClipModel, effects: np.ndarray, phrases: list[str], domain: str = "face"
                 ) -> list[tuple[str, float, int]]:
    """(best phrase, |cosine|, sign) for each effect vector row."""
    T = np.stack([text_direction(clip, p, domain) for p in phrases])
    S = effects @ T.T  # (n, phrases)
    best = np.abs(S).argmax(1)
    out = []
    for i, j in enumerate(best):
        s = float(S[i, j])
        out.append((phrases[j], abs(s), 1 if s >= 0 else -1))
    return out


@dataclass(frozen=True)
class Hit:
    """One search result: a direction, how well it matches, and which sign of it does the edit."""

    id: int
    score: float
    sign: int
    label: str | None
    label_sign: int | None  # the label names label_sign * v
    mask_label: str
    model_id: str
    fingerprint: str
    singular_value: float
    t_edit: int

    def to_dict(self) -> dict:
        return {"id": self.id, "score": round(self.score, 6), "sign": self.sign, "label": self.label,
                "label_sign": self.label_sign,
                "mask_label": self.mask_label, "model_id": self.model_id, "fingerprint": self.fingerprint,
                "singular_value": self.singular_value, "t_edit": self.t_edit,
                "apply": f"locobank apply {self.id}:{'-' if self.sign < 0 else ''}STRENGTH IMAGE --out OUT.png"}


def search(catalog, clip: ClipModel, query: str, *, k: int = 10, domain: str = "face", model: str | None = None,
           label: str | None = None, mask_label: str | None = None, min_score: float | None = None,
           index_folder: Path | None = None, nprobe: int | None = None) -> list[Hit]:
    """Top-k directions whose effect matches the query, each with the sign that does it."""
    from .index import load_index

    if k < 1:
        raise InputError("k must be at least 1")
    q = text_direction(clip, query, domain)
    idx = load_index(clip.clip_id, folder=index_folder)
    filtered = any(x is not None for x in (model, label, mask_label, min_score))
    fetch = k if not filtered else min(max(k * 10, 100), max(idx.ntotal, 1))
    hits = idx.search_signed(q, fetch, nprobe=nprobe)
    out: list[Hit] = []
    for did, score, sign in hits:
        if min_score is not None and score < min_score:
            continue
        try:
            r = catalog.get_direction(int(did))
        except NotFound:
            continue  # deleted since the index was built
        if model and model not in (r.fingerprint, r.model_id):
            continue
        if label and r.label != label:
            continue
        if mask_label and r.mask_label != mask_label:
            continue
        out.append(Hit(int(did), float(score), int(sign), r.label, r.label_sign, r.mask_label, r.model_id,
                       r.fingerprint, r.singular_value, r.t_edit))
        if len(out) >= k:
            break
    return out
