"""SDXL, LCM and DeepFloyd IF through the CLI on tiny random pipelines, all in one catalog and one
index: harvest (unsupervised and text-supervised) -> index build -> search -> apply under a prompt;
a direction applies only to its own model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from locobank.catalog import Catalog
from locobank_cli.main import cli

from tiny import write_sd_inputs
from tiny_families import save_tiny_if, save_tiny_lcm, save_tiny_sdxl

BUILDERS = {"sdxl": save_tiny_sdxl, "lcm": save_tiny_lcm, "if": save_tiny_if}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("families-cli")
    write_sd_inputs(root)
    rows = [
        {"image": "a.png", "prompt": "a smiling face", "masks": {"mouth": "mouth.png"}},
        {"image": "b.png", "prompt": "a frowning face", "edit_prompt": "a smiling face", "masks": {"mouth": "mouth.png"}},
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    db = f"sqlite:///{root / 'catalog.db'}"
    assert CliRunner().invoke(cli, ["db", "upgrade", "--db", db]).exit_code == 0
    models = {}
    for kind, build in BUILDERS.items():
        models[kind] = build(root / kind)
        res = CliRunner().invoke(cli, ["harvest", "--model", str(models[kind]), "--images", str(root / "manifest.jsonl"),
                                       "--rank", "1", "--null-rank", "1", "--steps", "4", "--iters", "4", "--db", db])
        assert res.exit_code == 0, (kind, res.output)
    return root, models, db


def _by_kind(db):
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        kinds = {d.id: cat.get_model(d.fingerprint).kind for d in dirs}
    return dirs, kinds


def test_one_catalog_holds_each_family_directions(world):
    _, _, db = world
    dirs, kinds = _by_kind(db)
    assert sorted(kinds.values()) == sorted(["sdxl", "lcm", "if"] * 2)
    sup = [d for d in dirs if "edit_prompt" in (d.condition or {})]
    assert len(sup) == 3 and all(d.diagnostics["basis"] == "supervised" for d in sup)
    lcm = [d for d in dirs if kinds[d.id] == "lcm"]
    assert all(d.condition["guidance"] == 8.5 for d in lcm)  # the LCM's own default guidance


def test_search_finds_every_family_and_each_hit_applies_to_its_own_model(world, tmp_path):
    root, models, db = world
    built = CliRunner().invoke(cli, ["index", "build", "--probes", "1", "--steps", "3", "--db", db])
    assert built.exit_code == 0, built.output  # one index over the three families
    res = CliRunner().invoke(cli, ["search", "a smiling face", "-k", "10", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    _, kinds = _by_kind(db)
    assert {kinds[h["id"]] for h in hits} == {"sdxl", "lcm", "if"}
    plain = np.asarray(Image.open(root / "a.png"), float)
    for kind in ("sdxl", "lcm", "if"):
        hit = next(h for h in hits if kinds[h["id"]] == kind)
        out = tmp_path / f"{kind}.png"
        res = CliRunner().invoke(cli, ["apply", f"{hit['id']}:4", str(root / "a.png"), "--prompt", "a smiling face",
                                       "--steps", "4", "--out", str(out), "--db", db])
        assert res.exit_code == 0, (kind, res.output)
        edited = np.asarray(Image.open(out), float)
        assert edited.shape == (16, 16, 3) and np.abs(edited - plain).max() > 0, kind


def test_a_direction_is_refused_by_another_family_model(world, tmp_path):
    root, models, db = world
    dirs, kinds = _by_kind(db)
    sdxl = next(d for d in dirs if kinds[d.id] == "sdxl")
    res = CliRunner().invoke(cli, ["apply", str(sdxl.id), str(root / "a.png"), "--prompt", "a face", "--steps", "4",
                                   "--model", str(models["lcm"]), "--out", str(tmp_path / "x.png"), "--db", db])
    assert res.exit_code != 0 and "directions only transfer within the same model" in res.output, res.output
    assert "Traceback" not in res.output
