"""Canonical JSON: equal values give equal text, hence equal hashes, on every machine."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from locobank.errors import InputError


def canonical_json(value: Any) -> str:
    """Sorted, compact, ASCII JSON; refuses NaN and non-JSON values."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"expected plain JSON values: {e}") from e


def params_hash(params: dict[str, Any]) -> str:
    """The key that maps the same harvest command to the same run."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()
