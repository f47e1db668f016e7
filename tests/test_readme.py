"""Every `locobank ...` command the README shows exists: its (sub)command answers ``--help``."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from locobank_cli.main import cli

README = Path(__file__).resolve().parents[1] / "README.md"
CALL = re.compile(r"(?:^|(?<=[\s;&|(]))locobank((?:[ \t]+[A-Za-z][\w-]*)*)(?=\s|$)")


def _spans(text: str) -> list[str]:
    """Command texts: each line of a fenced code block (not Python), and each `code span` that starts with
    ``locobank``; in the command column of a table, the spans after it in the same cell (``show ID``,
    ``gallery``) are top-level commands too."""
    out: list[str] = []
    fence: str | None = None  # the open block's language
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence is not None:
            if fence != "python":  # `from locobank import core` is no command
                out.append(line.split(" #", 1)[0])
            continue
        spans = re.findall(r"`([^`]+)`", line.split(" | ")[0] if line.startswith("|") else line)
        if line.startswith("|") and spans and spans[0].startswith("locobank "):
            out += [s if s.startswith("locobank ") else f"locobank {s}" for s in spans]
        else:
            out += [s for s in spans if s.startswith("locobank ")]
    return out


def _alternatives(span: str) -> list[str]:
    """``locobank toy faces / train-ddpm`` names ``toy faces`` and ``toy train-ddpm``."""
    first, *rest = [p.strip() for p in span.split(" / ")]
    words = first.split()
    return [first] + [" ".join([*words[:2], alt]) if len(words) > 2 else f"locobank {alt}" for alt in rest]


def command_paths(text: str) -> set[tuple[str, ...]]:
    """The bare words after each ``locobank`` in the README's commands, as found in ``text``."""
    paths: set[tuple[str, ...]] = set()
    for span in _spans(text):
        for part in _alternatives(span):
            for m in CALL.finditer(part):
                paths.add(tuple(m.group(1).split()))
    return paths


def resolve(words: tuple[str, ...]) -> tuple[str, ...]:
    """The command path these words name (arguments after a leaf command dropped); ``LookupError``
    when a group has no such subcommand."""
    cmd: click.Command = cli
    path: list[str] = []
    ctx = click.Context(cli)
    for word in words:
        if not isinstance(cmd, click.Group):
            break  # a leaf command: the rest are its arguments
        sub = cmd.get_command(ctx, word)
        if sub is None:
            raise LookupError(f"`locobank {' '.join([*path, word])}` is not a command")
        cmd, path = sub, [*path, word]
    return tuple(path)


def test_the_readme_names_commands():
    paths = command_paths(README.read_text())
    resolved = {resolve(p) for p in paths}
    for must in [("demo",), ("db", "upgrade"), ("index", "build"), ("index", "status"), ("search",), ("serve",),
                 ("toy", "faces"), ("show",), ("gallery",), ("import",)]:
        assert must in resolved, must


def test_every_readme_command_answers_help():
    runner = CliRunner()
    for path in sorted({resolve(p) for p in command_paths(README.read_text())}):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)


@pytest.mark.parametrize("text", [
    "```bash\nlocobank index bulid --clip toy\n```",
    "| `locobank sheet ID...` / `galery` | sheets |",
    "run `locobank toy faces / train-ddmp` first",
    "```\nlocobank serch smile   # typo\n```",
])
def test_a_command_that_does_not_exist_is_caught(text):
    with pytest.raises(LookupError, match="is not a command"):
        for p in command_paths(text):
            resolve(p)
