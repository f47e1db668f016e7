"""The counts a long pass over the catalog (harvest, effect embedding) reports when it ends.

One base, so every pass counts its failures and keeps their reasons the same way."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Tally:
    """What a pass skipped and failed, with each failure's reason, and how long it took."""

    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def fail(self, reason: str, n: int = 1) -> None:
        """Count ``n`` failures that share ``reason``, so the end-of-run message can say why."""
        self.failed += n
        self.errors.append(reason)
