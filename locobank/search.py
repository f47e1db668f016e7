"""Text search over direction effects, and automatic names from a vocabulary.

A query's text direction is normalize(T("a {domain} with {text}") - T("a {domain}")); the
form "A -> B" uses normalize(T(B) - T(A)). A direction matches with sign +1 when its effect
points along the query and -1 when the opposite edit (-v) does.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from .clip import ClipModel
from .errors import InputError, SearchIndexError
from .paths import DATA

ARROW = re.compile(r"\s*(?:->|→)\s*")


log = logging.getLogger(__name__)


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


def agreement(consistency: float | None, n_images: int) -> float:
    """Length of the mean of ``n_images`` unit per-image effects whose mean pairwise cosine is
    ``consistency``: 1 when every image shows the same effect, 1/sqrt(n) when they are unrelated."""
    if consistency is None or n_images < 2:
        return 1.0
    c = min(1.0, max(-1.0, consistency))
    return math.sqrt(max(0.0, 1.0 / n_images + (1.0 - 1.0 / n_images) * c))


# Below this match, the best hit is reported as weak. Measured on the toy world's quality catalog
# (216 directions, docs/quality.md): 15 real queries' top matches were 0.44-0.84, 12 nonsense
# queries' 0.23-0.55; 0.42 flags 4 of the 12 and none of the 15.
WEAK_MATCH = 0.42


@dataclass(frozen=True)
class Hit:
    """One search result: a direction, how well it matches, and which sign of it does the edit.

    ``score`` is the cosine between the query and the direction's mean effect; ``match`` is what
    hits are ranked by, ``score`` times :func:`agreement`: about the mean cosine between the query
    and the effect on each rendered image. A direction that does different things on different
    images can have a mean effect that points at the query by chance; it does not transfer."""

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
    transfer: float | None = None  # transfer consistency of the effect
    match: float | None = None
    strength: float | None = None  # the default strength: the one its effect was rendered at
    condition: dict | None = None  # text-to-image models: the prompt (and guidance) it was found under
    unit: float | None = None  # its card's unit strength (``ID:1x``), measured when indexed; None before 0008
    limit: float | None = None  # the largest strength at which it stayed linear and local when indexed

    @property
    def signed_strength(self) -> float | None:
        """The strength that does the query's edit: the default strength times the hit's sign."""
        return None if self.strength is None else self.sign * self.strength

    def command(self, image: str = "IMAGE", out: str = "OUT.png") -> str:
        """The command that applies this hit's edit."""
        s = self.signed_strength
        spec = f"{self.id}:{s:+g}" if s is not None else f"{self.id}:{'-' if self.sign < 0 else '+'}STRENGTH"
        prompt = f" --prompt {shlex.quote(self.condition['prompt'])}" if self.condition else ""
        return f"locobank apply {spec} {image}{prompt} --out {out}"

    def to_dict(self) -> dict:
        return {"id": self.id, "score": round(self.score, 6),
                "match": None if self.match is None else round(self.match, 6),
                "transfer": None if self.transfer is None else round(self.transfer, 6), "sign": self.sign,
                "strength": self.signed_strength, "label": self.label, "label_sign": self.label_sign,
                "mask_label": self.mask_label, "model_id": self.model_id, "fingerprint": self.fingerprint,
                "singular_value": self.singular_value, "t_edit": self.t_edit, "condition": self.condition,
                "unit": self.unit, "limit": self.limit, "apply": self.command()}


def one_model_hits(catalog, clip: ClipModel, query: str, *, k: int, domain: str = "face", model: str | None = None,
                   index_folder: Path | None = None) -> list[Hit]:
    """The top ``k`` hits for ``query`` that all belong to one model (the top hit's, or ``model``'s),
    so that one model loads and every hit applies to it. Raises InputError when nothing matches."""
    hits = search(catalog, clip, query, k=k, domain=domain, model=model, index_folder=index_folder)
    if not hits and model is not None:
        raise InputError(f"no direction of the model {model!r} matches {query!r}: a model is given by its name "
                         f"(as `locobank search` lists it, e.g. local:toyfaces-sd) or its fingerprint",
                         params=("model",))
    if not hits:
        raise InputError(f"no direction matches {query!r}; has `locobank index build` run?", params=("query",))
    if any(h.fingerprint != hits[0].fingerprint for h in hits):
        hits = search(catalog, clip, query, k=k, domain=domain, model=hits[0].fingerprint, index_folder=index_folder)
    return hits


def search(catalog, clip: ClipModel, query: str, *, k: int = 10, domain: str = "face", model: str | None = None,
           label: str | None = None, mask_label: str | None = None, min_score: float | None = None,
           index_folder: Path | None = None, nprobe: int | None = None) -> list[Hit]:
    """Top-k directions whose effect matches the query, each with the sign that does it, best ``match`` first.

    FAISS ranks by ``score``; since ``0 <= match <= score``, the candidate pool grows until the
    k-th ``match`` is at least the lowest ``score`` in it, so the ranking is exact over what the
    index returns (all of it for Flat; IVF and HNSW are approximate as usual). The filters are
    applied in the catalog query that reads the candidates' consistencies."""
    from .index import load_index

    if k < 1:
        raise InputError("k must be at least 1")
    q = text_direction(clip, query, domain)
    idx = load_index(clip.clip_id, folder=index_folder, catalog=catalog)
    _check_bound(idx.info, catalog, clip.clip_id)
    total = max(idx.ntotal, 1)
    pool = min(max(4 * k, 50), total)
    ranker = _Ranker(catalog, clip.clip_id, {"model": model, "label": label, "mask_label": mask_label}, min_score)
    while True:
        hits = idx.search_signed(q, pool, nprobe=nprobe)
        out = ranker.first(ranker.rank(hits), k)
        lowest = max(hits[-1][1], 0.0) if hits else 0.0
        if (pool >= total or len(hits) < pool or (len(out) >= k and out[-1].match >= lowest)
                or (min_score is not None and lowest < min_score)):  # nothing further down can pass
            return out
        pool = min(2 * pool, total)


def _check_bound(info, catalog, clip_id: str) -> None:
    """Refuse an index built from another catalog; warn when it is behind this one."""
    from .index import foreign_catalog

    if foreign_catalog(info, catalog):
        raise SearchIndexError(f"this search index was built from the catalog {info.catalog}, not {catalog.url}; "
                               f"run `locobank index build --db {catalog.url}` to build one for this catalog")
    if info.effects_state != catalog.effects_state(clip_id).token:
        log.warning("the search index is stale: the catalog changed since it was built, so new or re-embedded "
                    "directions are missing from the hits; run `locobank index build`")


class _Ranker:
    """Candidates' transfer consistencies and catalog records, each read once per search in batched
    queries; candidates that fail the filters (or were deleted since the index was built) drop out there."""

    def __init__(self, catalog, clip_id: str, filters: dict, min_score: float | None):
        self.catalog, self.clip_id, self.filters, self.min_score = catalog, clip_id, filters, min_score
        self.transfer: dict[int, tuple[float | None, int, float]] = {}
        self.records: dict[int, object] = {}  # None: deleted between the two reads
        self.asked: set[int] = set()
        self.ranges: dict[int, tuple[float, float]] = {}  # (unit, limit) of the cards that record one

    def rank(self, hits) -> list[tuple[float, int, float, int, float | None, float]]:
        """(match, id, score, sign, consistency, strength) of the hits that pass, best match first."""
        passing = [h for h in hits if self.min_score is None or h[1] >= self.min_score]
        new = [int(h[0]) for h in passing if int(h[0]) not in self.asked]
        self.transfer.update(self.catalog.transfer_of(self.clip_id, new, **self.filters))
        self.asked.update(new)
        ranked = []
        for did, score, sign in passing:
            if int(did) in self.transfer:
                c, n, strength = self.transfer[int(did)]
                match = max(float(score), 0.0) * agreement(c, n)  # a negative score is no match
                ranked.append((match, int(did), float(score), int(sign), c, strength))
        return sorted(ranked, key=lambda r: -r[0])

    def first(self, ranked, k: int) -> list[Hit]:
        """The first ``k`` ranked candidates, their records read 2k at a time."""
        out: list[Hit] = []
        for start in range(0, len(ranked), 2 * k):
            chunk = ranked[start : start + 2 * k]
            unread = [did for _, did, *_ in chunk if did not in self.records]
            found = self.catalog.get_directions(unread)
            self.records.update({did: found.get(did) for did in unread})
            self.ranges.update(self.catalog.strength_ranges(unread))
            for m, did, score, sign, c, strength in chunk:
                r = self.records[did]
                if r is not None:
                    unit, limit = self.ranges.get(did, (None, None))
                    out.append(Hit(did, score, sign, r.label, r.label_sign, r.mask_label, r.model_id, r.fingerprint,
                                   r.singular_value, r.t_edit, c, m, strength, r.condition, unit, limit))
                    if len(out) == k:
                        return out
        return out


def name_directions(catalog, clip: ClipModel, *, domain: str = "face", files: list[Path] | None = None,
              extra: list[str] | None = None, ids=None) -> tuple[int, Counter]:
    """Name the directions embedded for ``clip`` (or only ``ids``); returns (count, names used)."""
    phrases = load_vocabulary(domain, extra, files)
    all_ids, vectors = catalog.effects_for(clip.clip_id)
    if ids is not None:
        keep = [i for i, d in enumerate(all_ids) if int(d) in set(ids)]
        all_ids, vectors = all_ids[keep], vectors[keep]
    if len(all_ids) == 0:
        return 0, Counter()
    names = name_effects(clip, vectors, phrases, domain)
    counts: Counter = Counter()
    for did, (name, score, sign) in zip(all_ids.tolist(), names):
        catalog.set_label(int(did), name, score, sign)
        counts[name if sign > 0 else f"-({name})"] += 1
    return len(all_ids), counts
