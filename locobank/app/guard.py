"""Library errors as messages in the page: a bad request is answered, and the server keeps serving."""

from __future__ import annotations

import functools
import html
import logging
from typing import Callable, TypeVar

import gradio as gr

from ..errors import FingerprintMismatch, IndexMissing, LocobankError, NotFound

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable)


def message(e: LocobankError) -> str:
    """What the page says for a library error (plain text; :func:`guarded` escapes it, since the
    page renders error messages as HTML)."""
    if isinstance(e, NotFound):
        return f"Not found: {e}"
    if isinstance(e, FingerprintMismatch):
        return f"Wrong model: {e}"
    if isinstance(e, IndexMissing):
        return f"No search index yet: {e}"
    return str(e)


def guarded(fn: F) -> F:
    """``fn`` with library errors shown as ``gr.Error`` messages, and any other error logged with its
    traceback and shown as an internal error, never as a traceback in the page."""

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except LocobankError as e:
            raise gr.Error(html.escape(message(e)), print_exception=False) from e
        except Exception as e:  # noqa: BLE001 - the server must keep serving
            log.exception("request failed")
            raise gr.Error(f"internal error ({type(e).__name__}); the server log has the details",
                           print_exception=False) from e

    return inner  # type: ignore[return-value]
