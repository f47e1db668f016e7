"""``locobank index build`` and ``index status`` through click's CliRunner."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from catalog_support import harvest_all, make_world
from click.testing import CliRunner

from locobank_cli.main import cli
from locobank.catalog import Catalog, NewEffect

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...

STATUS_KEYS = {
    "clip_id", "exists", "stale", "reasons", "notes", "new", "deleted", "reembedded", "without_effect", "effects",
    "ntotal", "dim", "factory", "resolved_factory", "nprobe", "built_at", "catalog", "catalog_state",
    "effects_state", "max_direction_id", "gpu", "path", "catalog_id",
}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def fake_clip_ids(monkeypatch):
    """CLIP specs map to ids without loading any CLIP model (the real mapping is locobank.clip's)."""
    module = types.ModuleType("locobank.clip")
    module.clip_id = lambda spec: f"test-clip:{spec}"
    monkeypatch.setitem(sys.modules, "locobank.clip", module)


@pytest.fixture
def embedded(sqlite_migrated_url):
    """Six directions, five with a 'toy' effect."""
    with Catalog.open(sqlite_migrated_url) as cat:
        ids = harvest_all(cat, make_world(cat, n_images=1, labels=("mouth", "eyes")), rank=3)
        vectors = np.random.default_rng(0).standard_normal((5, 12))
        cat.put_effects([NewEffect(i, "test-clip:toy", v, 0.7, 5, 8.0) for i, v in zip(ids, vectors, strict=False)])
    return sqlite_migrated_url, ids


def test_build_then_status_json(embedded, tmp_path):
    url, ids = embedded
    before = json.loads(run("index", "status", "--json", "--db", url).output)
    assert before["exists"] is False and before["stale"] is True and before["effects"] == 5

    built = run("index", "build", "--no-embed", "--db", url)
    assert built.exit_code == 0, built.output
    assert "built from scratch: 5 directions (Flat, dim 12)" in built.output
    assert str(tmp_path / "home" / "index") in built.output

    status = json.loads(run("index", "status", "--json", "--db", url).output)
    assert set(status) == STATUS_KEYS
    assert status["exists"] and not status["stale"] and status["ntotal"] == 5 and status["clip_id"] == "test-clip:toy"
    assert status["without_effect"] == 1 and status["max_direction_id"] == ids[4]

    with Catalog.open(url) as cat:
        cat.delete_direction(ids[0])
    stale = json.loads(run("index", "status", "--json", "--db", url).output)
    assert stale["stale"] and stale["reasons"] == ["1 deleted direction"]
    assert "STALE: 1 deleted direction" in run("index", "status", "--db", url).output

    updated = run("index", "build", "--no-embed", "--db", url)
    assert "updated: 4 directions" in updated.output and "removed 1" in updated.output
    assert "up to date" in run("index", "status", "--db", url).output


def test_factory_option_and_rebuild(embedded):
    url, _ = embedded
    assert run("index", "build", "--no-embed", "--db", url).exit_code == 0
    ivf = run("index", "build", "--no-embed", "--index-factory", "IVF", "--db", url)
    assert ivf.exit_code == 0 and "built from scratch" in ivf.output and "IVF1,Flat" in ivf.output
    assert "updated" in run("index", "build", "--no-embed", "--db", url).output  # keeps IVF
    assert "built from scratch" in run("index", "build", "--no-embed", "--rebuild", "--db", url).output
    bad = run("index", "build", "--no-embed", "--index-factory", "Nonsense7", "--db", url)
    assert bad.exit_code == 1 and "not a usable FAISS index factory" in bad.output and "Traceback" not in bad.output


def test_errors_are_messages(sqlite_migrated_url):
    nothing = run("index", "build", "--no-embed", "--clip", "other", "--db", sqlite_migrated_url)
    assert nothing.exit_code == 1 and "no effect embeddings for CLIP model 'test-clip:other'" in nothing.output
    missing = run("index", "status", "--db", "sqlite:////nonexistent/x.db")
    assert missing.exit_code == 1 and "locobank db upgrade" in missing.output


@pytest.mark.parametrize("args", [["index"], ["index", "build"], ["index", "status"]])
def test_help(args):
    result = run(*args, "--help")
    assert result.exit_code == 0 and len(result.output.splitlines()) > 4
