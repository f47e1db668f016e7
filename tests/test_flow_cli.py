"""The flow-matching families through the CLI, on tiny random pipelines: harvest from captioned
images (unsupervised and text-supervised) -> index -> search -> apply, in one catalog that also
holds a Stable Diffusion model's directions; a direction applies only to its own model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from locobank.catalog import Catalog
from locobank_cli.main import cli

from tiny import save_tiny_sd, write_sd_inputs
from tiny_flow import save_tiny_flux, save_tiny_sd3

FAMILIES = {"sd3": save_tiny_sd3, "flux": save_tiny_flux}
ROWS = [
    {"image": "a.png", "prompt": "a smiling face", "masks": {"mouth": "mouth.png"}},
    {"image": "a.png", "prompt": "a smiling face", "edit_prompt": "a frowning face", "masks": {"mouth": "mouth.png"}},
]


def _harvest(model, manifest, db):
    res = CliRunner().invoke(cli, ["harvest", "--model", str(model), "--images", str(manifest), "--rank", "1",
                                   "--null-rank", "1", "--steps", "4", "--iters", "4", "--db", db])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-cli")
    write_sd_inputs(root)
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    db = f"sqlite:///{root / 'catalog.db'}"
    assert CliRunner().invoke(cli, ["db", "upgrade", "--db", db]).exit_code == 0
    models = {"latent": save_tiny_sd(root / "sd")}
    models.update({kind: save(root / kind) for kind, save in FAMILIES.items()})
    for model in models.values():
        _harvest(model, root / "manifest.jsonl", db)
    return root, models, db


def _by_kind(db):
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        return {d.id: (cat.get_model(d.fingerprint).kind, d) for d in dirs}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_each_flow_family_harvests_into_the_shared_catalog(world, kind):
    _, _, db = world
    dirs = [d for k, d in _by_kind(db).values() if k == kind]
    assert len(dirs) == 2  # rank 1 unsupervised, and one text-supervised direction
    assert {d.diagnostics["basis"] for d in dirs if "edit_prompt" in d.condition} == {"supervised"}
    assert all(d.condition["prompt"] == "a smiling face" for d in dirs)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_search_finds_and_apply_edits_with_a_flow_direction(world, kind, tmp_path):
    root, models, db = world
    built = CliRunner().invoke(cli, ["index", "build", "--probes", "1", "--steps", "3", "--db", db])
    assert built.exit_code == 0, built.output
    res = CliRunner().invoke(cli, ["search", "a smiling face", "-k", "20", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    kinds = _by_kind(db)
    hits = [h for h in json.loads(res.output) if kinds[h["id"]][0] == kind]
    assert len(hits) == 2 and len({kinds[h["id"]][0] for h in json.loads(res.output)}) == 1 + len(FAMILIES)
    d = hits[0]["id"]
    outs = {}
    for strength in (0, 4):
        outs[strength] = tmp_path / f"s{strength}.png"
        res = CliRunner().invoke(cli, ["apply", f"{d}:{strength}", str(root / "b.png"), "--prompt", "a face",
                                       "--steps", "4", "--out", str(outs[strength]), "--db", db])
        assert res.exit_code == 0, res.output
    a, b = (np.asarray(Image.open(outs[s]), float) for s in (0, 4))
    assert a.shape == (16, 16, 3) and np.abs(a - b).mean() > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_a_flow_direction_applies_only_to_its_own_model(world, kind, tmp_path):
    root, models, db = world
    d = next(i for i, (k, _) in _by_kind(db).items() if k == kind)
    res = CliRunner().invoke(cli, ["apply", str(d), str(root / "b.png"), "--model", str(models["latent"]),
                                   "--prompt", "a face", "--steps", "4", "--out", str(tmp_path / "o.png"), "--db", db])
    assert res.exit_code != 0 and "only transfer within the same model" in res.output, res.output
