"""What every command shares: turning library errors into messages and exit codes."""

from __future__ import annotations

import functools

import click

from locobank.errors import LocobankError


def fail_on_library_errors(f):
    """Run a command; a LocobankError becomes 'Error: ...' and exit code 1, not a traceback."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except LocobankError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def parse_floats(text: str) -> list[float]:
    """'-8,0,8' -> [-8.0, 0.0, 8.0], with a clear error for anything else."""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from e
