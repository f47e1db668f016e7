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


class Stages:
    """Progress bars for a job of named stages: ``stage(name, total)`` closes the last bar and
    returns the ``update`` of a new one. Use as a context manager so the last bar is closed."""

    def __init__(self) -> None:
        self.bars: list = []

    def __call__(self, name: str, total: int):
        from tqdm import tqdm

        self.close()
        bar = tqdm(total=total, desc=f"{name:>13}", unit="step")
        self.bars.append(bar)
        return bar.update

    def close(self) -> None:
        for b in self.bars:
            b.close()

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
