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


# Harvest options that say how inputs are read, not what is found: a job that succeeds finds the same
# directions with or without them (``resize`` only lets an off-size image through instead of failing
# its job), so they never make another run. Runs recorded before this rule keep them in their params.
INPUT_OPTIONS = ("resize",)


def run_identity(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that identify a harvest run: ``params`` less the ``INPUT_OPTIONS``."""
    return {k: v for k, v in params.items() if k not in INPUT_OPTIONS}
