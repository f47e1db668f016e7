"""The one progress protocol of the library: a long call takes ``progress(label, total)``, which
returns an ``update(n)`` to call as work is done. The CLI draws it as progress bars, the web app
as its page's bar; ``None`` means silence."""

from __future__ import annotations

from typing import Callable, Optional

Update = Callable[[int], None]
Progress = Callable[[str, int], Update]


def _ignore(n: int = 1) -> None:
    return None


def stage(progress: Optional[Progress], label: str, total: int) -> Update:
    """The ``update`` of a new stage, or a no-op without ``progress``."""
    return progress(label, total) if progress is not None else _ignore


def note(update: Update, text: str) -> None:
    """Show ``text`` beside a stage's bar (how fast it goes, what is left), where whoever draws it
    can: an ``update`` with a ``note`` attribute takes it; any other ignores it."""
    show = getattr(update, "note", None)
    if show is not None:
        show(text)
