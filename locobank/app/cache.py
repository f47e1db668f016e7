"""What the app keeps between requests: the read-only catalog, CLIP, and the last few images made
ready for editing (inverted, directions re-localised), so a second strength costs one sampling.

The diffusion models stay loaded by :func:`locobank.models.recorded.model_for` and the search index
by :func:`locobank.index.load_index`; both cache on their own."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """A small least-recently-used cache, bounded in entries and in bytes (``size(value)``)."""

    def __init__(self, max_entries: int = 4, max_bytes: int = 256 * 1024 * 1024,
                 size: Callable[[V], int] = lambda v: 0):
        self.max_entries, self.max_bytes, self.size = max_entries, max_bytes, size
        self.items: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = self.misses = 0
        self.lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value kept for ``key``, else ``make()`` kept (the oldest entries dropped to fit)."""
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                self.hits += 1
                return self.items[key]
            self.misses += 1
        value = make()
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > 1 and (len(self.items) > self.max_entries or self.held() > self.max_bytes):
                self.items.popitem(last=False)
        return value

    def held(self) -> int:
        """Bytes held by the values kept."""
        return sum(self.size(v) for v in self.items.values())

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Resources:
    """The catalog and the loaded models one server shares between its requests."""

    catalog: object  # locobank.catalog.Catalog, opened read-only
    work: Path  # the app's own folder: normalised uploads and results, nothing else is served
    device: str | None = None
    clip_spec: str = "toy"
    domain: str = "face"
    index_folder: Path | None = None  # None: the default under LOCOBANK_HOME
    settled: LRU = field(default_factory=lambda: LRU(4, size=lambda s: s.nbytes()))
    cards: LRU = field(default_factory=lambda: LRU(2048))  # (direction id, sign) -> (strip PNG, locality)
    pools: LRU = field(default_factory=lambda: LRU(8))  # (query, model, pool) -> a loaded rank.Pool
    _clip: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def clip(self):  # noqa: ANN201 - locobank.clip.ClipModel, imported lazily
        """CLIP, loaded on first use."""
        with self._lock:
            if self._clip is None:
                from ..clip import load_clip

                self._clip = load_clip(self.clip_spec, device=self.device)
            return self._clip

    def close(self) -> None:
        """Drop the kept images and close the catalog."""
        self.settled.items.clear()
        self.catalog.close()
