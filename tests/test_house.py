"""The house rules that keep the code readable, checked on every module of the package and the CLI:
small modules, short functions, and no private name imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "locobank").rglob("*.py"), *(ROOT / "cli").rglob("*.py")])
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_sources_are_found():
    assert len(SOURCES) > 50 and any(p.name == "jacobian.py" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_modules_are_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines"


def long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than the house limit."""
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def private_imports(tree: ast.AST) -> list[str]:
    """Underscore-private names imported from another module (``from x import _y``)."""
    return [f"{node.module or '.'}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_functions_are_short_and_nothing_private_crosses_a_module(path):
    tree = ast.parse(path.read_text())
    assert long_functions(tree) == [], _name(path)
    assert private_imports(tree) == [], _name(path)


def test_the_checks_can_fail():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"from .a import _hidden, shown\ndef f():\n{body}\n")
    assert long_functions(tree) == [("f", MAX_FUNCTION_LINES + 1)]
    assert private_imports(tree) == ["a._hidden"]
