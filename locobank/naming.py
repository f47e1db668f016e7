"""Automatic names: each embedded direction gets its best vocabulary phrase, score and sign."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .clip import ClipModel
from .search import load_vocabulary, name_effects


def label_all(catalog, clip: ClipModel, *, domain: str = "face", files: list[Path] | None = None,
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
