"""What every command shares: turning library errors into messages and exit codes."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import click

from locobank.errors import ArgumentError, LocobankError

# The library's errors name Python parameters (``LocobankError.params``); the user typed these.
FLAGS = {"specs": "ID[:STRENGTH]", "images": "IMAGE files", "query": "--query", "candidates": "--candidates", "pool": "--pool",
         "mask": "--mask", "masks": "--mask", "sweep": "--sweep", "out": "--out", "prompt": "--prompt",
         "negative_prompt": "--negative-prompt", "guidance": "--guidance", "generate": "--generate",
         "preview_steps": "--preview-steps", "refine": "--refine", "blind": "--blind",
         "preview_precision": "--preview-precision"}


def as_typed(e: LocobankError) -> str:
    """``e``'s message with each parameter it names said as the command line's flag. Only whole
    names are replaced, never inside a quoted value or a path."""
    names = [p for p in e.params if p in FLAGS]
    if not names:
        return str(e)
    name = re.compile(r"(?<![\w./\\'\"-])(" + "|".join(map(re.escape, names)) + r")(?![\w/\\'\"-]|\.\w)")
    return name.sub(lambda m: FLAGS[m.group(1)], str(e))


def fail_on_library_errors(f):
    """Run a command; a LocobankError becomes 'Error: ...' and exit code 1 (2 for an ArgumentError,
    as click's own usage errors), not a traceback."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except ArgumentError as e:
            raise click.UsageError(as_typed(e)) from e
        except LocobankError as e:
            raise click.ClickException(as_typed(e)) from e

    return wrapper


class Finite(click.ParamType):
    """A finite number in ``[lo, hi]`` (open at an end with ``open_lo``/``open_hi``): unlike
    ``click.FloatRange`` it refuses nan and inf, whose comparisons are all false."""

    name = "number"

    def __init__(self, lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False):
        self.lo, self.hi, self.open_lo, self.open_hi = lo, hi, open_lo, open_hi

    def describe(self) -> str:
        return f"{'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}{')' if self.open_hi else ']'}"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        below = x <= self.lo if self.open_lo else x < self.lo
        above = x >= self.hi if self.open_hi else x > self.hi
        if not math.isfinite(x) or below or above:
            self.fail(f"{value} is not a finite number in {self.describe()}", param, ctx)
        return x


class MaskPath(click.Path):
    """A mask file that exists, or a pattern with ``{stem}`` naming each image's own (its files are
    checked against the images, by the request)."""

    name = "mask"

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if "{stem}" in str(value):
            return Path(value)
        return super().convert(value, param, ctx)


def refine_option(given_with: str):
    """``--refine N`` for a command whose hits are ranked by their previews (``given_with``: the
    flag that turns that ranking on); None when not given: the library's default."""
    return click.option("--refine", type=click.IntRange(0, 1000), default=None, metavar="N",
                        help=f"With {given_with}: look again at N hits, the text search's first (whatever its one-step "
                             "preview said) and the first of the one-step ranking, each sampled down in 5 DDIM steps "
                             "from the edit time (a preview closer to the full edit), re-calibrate their strengths "
                             "and re-order them; a hit that shows no gain there goes behind every one that does. "
                             "0: no second look [2] (docs/image_search.md).")


def precision_option(given_with: str):
    """``--preview-precision`` for a command whose hits are ranked by their previews; None when not
    given: the library's default ("auto")."""
    return click.option("--preview-precision", type=click.Choice(["auto", "bf16", "fp32"]), default=None,
                        help=f"With {given_with}: what the previews' network passes run in. auto: bfloat16 for a float32 "
                             "pixel-space model on a device that computes it natively (a CUDA card with bf16, a CPU "
                             "with AVX512-BF16 or AMX), else the model's own; with --mask the re-projection's Jacobian "
                             "products too; the inversion never changes [auto] (docs/image_search.md).")


def parse_floats(text: str, lo: float = -100.0, hi: float = 100.0) -> list[float]:
    """'-8,0,8' -> [-8.0, 0.0, 8.0], each finite and in [lo, hi], with a clear error for anything else."""
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from e
    if not values:
        raise click.BadParameter(f"{text!r} holds no number; give a comma-separated list such as -8,-4,0,4,8")
    bad = [v for v in values if not math.isfinite(v) or not lo <= v <= hi]
    if bad:
        raise click.BadParameter(f"{bad[0]:g} is out of range: each number must be finite, from {lo:g} to {hi:g}")
    return values


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]: whole non-negative numbers, at most 1000 of them."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of whole numbers (seeds)") from e
    if not values or len(values) > 1000 or any(v < 0 or v >= 2**63 for v in values):
        raise click.BadParameter(f"{text!r}: give 1 to 1000 seeds from 0 to 2**63-1, e.g. 0,1,2")
    return list(dict.fromkeys(values))


class Stages:
    """Progress bars for a job of named stages: ``stage(name, total)`` closes the last bar and
    returns the ``update`` of a new one. Use as a context manager so the last bar is closed."""

    def __init__(self) -> None:
        self.bars: list = []

    def __call__(self, name: str, total: int):
        from tqdm import tqdm

        self.close()
        bar = tqdm(total=total, desc=f"{name:>13}", unit="step", disable=None)  # None: no bars off a terminal
        self.bars.append(bar)

        def update(n: int = 1) -> None:
            bar.update(n)

        update.note = bar.set_postfix_str  # locobank.progress.note: how fast, what is left
        return update

    def close(self) -> None:
        for b in self.bars:
            b.close()

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
