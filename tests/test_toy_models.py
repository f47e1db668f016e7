"""The shipped toy models: they load through the user-facing loaders and do what the toy world needs."""

from __future__ import annotations

import json

import pytest
import torch

from locobank.demo import DemoConfig, run_demo
from locobank.models import load_model
from locobank.paths import TOY_CLIP, TOY_DDPM
from locobank.toyworld import HELD_OUT_SEED
from locobank.toyworld import evaluate as E


@pytest.fixture(scope="module")
def ddpm():
    return load_model(TOY_DDPM, device="cpu")


def test_ddpm_is_small_and_saved_like_a_hub_model(ddpm):
    weights = sum(p.stat().st_size for p in TOY_DDPM.rglob("*.safetensors"))
    assert weights <= 10_000_000
    assert (TOY_DDPM / "model_index.json").exists() and (TOY_DDPM / "unet" / "config.json").exists()
    assert ddpm.model_id == "local:toyfaces-ddpm" and ddpm.resolution == 32
    assert ddpm.denoiser.num_timesteps == 1000


def test_ddpm_reconstructs_held_out_faces(ddpm):
    t_edit = ddpm.defaults.get("t_edit", 0.6)
    psnr = E.reconstruction_psnr(ddpm, range(HELD_OUT_SEED, HELD_OUT_SEED + 4), t_edit, ddpm.defaults.get("steps", 50))
    assert min(psnr) >= 35.0, psnr


def test_clip_loads_through_open_clip_and_embeds():
    import open_clip

    from locobank.clip import load_clip

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{TOY_CLIP}")
    assert sum(p.numel() for p in model.parameters()) > 0
    clip = load_clip("toy")
    t = clip.encode_text(["a face with blond hair", "a face with black hair"])
    assert t.shape == (2, clip.dim) and torch.allclose(t.norm(dim=1), torch.ones(2), atol=1e-5)
    cfg = json.loads((TOY_CLIP / "open_clip_config.json").read_text())
    assert cfg["model_cfg"]["vision_cfg"]["image_size"] == 32


def test_clip_zero_shot_on_held_out_faces():
    from locobank.clip import load_clip

    acc = E.zero_shot(load_clip("toy"), 100)
    assert set(acc) == {"hair colour", "iris colour", "smile vs frown", "glasses"}
    assert min(acc.values()) >= 0.9, acc


def test_demo_runs_end_to_end_in_quick_mode(tmp_path):
    res = run_demo(tmp_path / "demo", DemoConfig.quick())
    out = tmp_path / "demo"
    assert res.report.exists() and (out / "gallery" / "index.html").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["directions"] == res.directions > 0
    for q, entry in summary["queries"].items():
        assert entry["hits"], q
        assert (out / entry["sheet"]).exists()
        assert len(entry["edits"]) == 2 and all((out / e).exists() for e in entry["edits"])
    html = res.report.read_text()
    assert all(q in html for q in summary["queries"])


def test_eyes_edits_stay_local_with_the_shipped_defaults(ddpm):
    """The eyes bar of the toy world on a small sample, through `locobank toy eval --json`
    (stdout is JSON only; progress goes to stderr)."""
    from click.testing import CliRunner

    from cli.main import cli

    r = CliRunner().invoke(cli, ["toy", "eval", "--faces", "2", "--parts", "eyes", "--skip-clip", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["basis"] == ddpm.defaults["basis"] == "constrained"
    assert rep["reconstruction_psnr"]["min"] >= 35
    assert rep["locality"]["eyes"]["source"]["median"] >= 0.8
