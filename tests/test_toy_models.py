"""The shipped toy models: they load through the user-facing loaders and do what the toy world needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from click.testing import CliRunner

from locobank_cli.main import cli
from locobank.models import load_model
from locobank.paths import TOY_CLIP, TOY_DDPM, TOY_SD
from locobank.toyworld import HELD_OUT_SEED
from locobank.toyworld.data.probes import lacks
from locobank.toyworld.demo import DemoConfig, run_demo
from locobank.toyworld.evaluation import pixel as E
from locobank.toyworld.evaluation.common import zero_shot


@pytest.fixture(scope="module")
def ddpm():
    return load_model(TOY_DDPM, device="cpu")


def test_ddpm_is_small_and_saved_like_a_hub_model(ddpm):
    weights = sum(p.stat().st_size for p in TOY_DDPM.rglob("*.safetensors"))
    assert weights <= 10_000_000
    assert (TOY_DDPM / "model_index.json").exists() and (TOY_DDPM / "unet" / "config.json").exists()
    assert ddpm.model_id == "local:toyfaces-ddpm" and ddpm.resolution == 32
    assert ddpm.denoiser.num_timesteps == 1000


@pytest.mark.slow
def test_ddpm_reconstructs_held_out_faces(ddpm):
    t_edit = ddpm.settings.t_edit
    psnr = E.reconstruction_psnr(ddpm, range(HELD_OUT_SEED, HELD_OUT_SEED + 4), t_edit, ddpm.settings.steps)
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

    acc = zero_shot(load_clip("toy"), 100)
    assert set(acc) == {"hair colour", "iris colour", "smile vs frown", "glasses"}
    assert min(acc.values()) >= 0.9, acc


@pytest.mark.slow
def test_demo_runs_end_to_end_in_quick_mode(tmp_path):
    res = run_demo(tmp_path / "demo", DemoConfig.quick())
    out = tmp_path / "demo"
    assert res.report.exists() and (out / "gallery" / "index.html").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["directions"] == res.directions > 0
    for q, entry in summary["queries"].items():
        assert entry["hits"], q
        assert (out / entry["sheet"]).exists()
        assert len(entry["edits"]) == 1 and all((out / e).exists() for e in entry["edits"])
        applied = entry["applied"]  # each face lacks the attribute and is edited with its own part mask
        assert applied["masked"] == applied["lacking"] == 1, applied
        shown = [int(Path(e).stem.rsplit("_", 1)[1]) for e in entry["edits"]]
        assert all(lacks(q, s) for s in shown), (q, shown)
        for e in entry["edits"]:  # before | image-blind | image-aware
            w, h = Image.open(out / e).size
            assert w == 3 * h, (e, w, h)
        assert len(applied["aware"]) == 1 and all(a["strength"] != 0 for a in applied["aware"]), applied
    html = res.report.read_text()
    assert html.count("that lack it, each with its own") == len(summary["queries"])
    assert html.count("Before | image-blind | image-aware") == len(summary["queries"]) + len(summary["latent"]["queries"])
    assert all(q in html for q in summary["queries"])
    # The folder is a locobank home, as the demo tells its user: the CLI searches it as is.
    q = next(iter(summary["queries"]))
    found = CliRunner().invoke(cli, ["search", q, "-k", "3", "--json"], env={"LOCOBANK_HOME": str(out), "LOCOBANK_DB": None})
    assert found.exit_code == 0, found.output
    assert [h["id"] for h in json.loads(found.output)] == [h["id"] for h in summary["latent"]["queries"][q]["both"]]
    # The latent half: the toy text-to-image model's directions, unsupervised and text-supervised,
    # in the same catalog and index; the search ranks both families together.
    latent = summary["latent"]
    assert latent["model"] == "local:toyfaces-sd"
    kinds = {d["edit_prompt"] is None for d in latent["directions"]}
    assert kinds == {True, False}, latent["directions"]
    supervised = [d for d in latent["directions"] if d["edit_prompt"]]
    assert all("smil" in d["edit_prompt"] and "frown" in d["prompt"] for d in supervised if d["mask"] == "mouth")
    every = CliRunner().invoke(cli, ["search", "smile", "-k", "50", "--json"],
                               env={"LOCOBANK_HOME": str(out), "LOCOBANK_DB": None})
    models = {h["id"]: h["model_id"] for h in json.loads(every.output)}
    assert set(models.values()) == {"local:toyfaces-ddpm", "local:toyfaces-sd"}
    smile = latent["queries"]["smile"]
    assert models[smile["applied"]["id"]] == "local:toyfaces-sd"  # the latent half applies a latent hit
    # under each face's caption without the words for its mood, which would undo the edit
    assert smile["prompts"] and not any(w in p for p in smile["prompts"] for w in ("frown", "smil")), smile
    assert len(smile["edits"]) == 1 and (out / smile["edits"][0]).exists()
    assert "The latent world" in html and "text-supervised" in html
    # the latent half harvests each part at its model's own edit time (the mouth's differs: docs/latent.md)
    mouth_t = json.loads((TOY_SD / "locobank.json").read_text())["t_edit_by_label"]["mouth"]
    assert f"(mouth {mouth_t:g})" in html


@pytest.mark.slow
def test_part_edits_stay_local_with_the_shipped_defaults(ddpm):
    """The locality bars of the toy world on the first 3 held-out faces, through `locobank toy eval
    --json` (stdout is JSON only; progress goes to stderr), each part at its own default strength."""
    from click.testing import CliRunner

    from locobank_cli.main import cli

    r = CliRunner().invoke(cli, ["toy", "eval", "--faces", "3", "--parts", "mouth,eyes,hair", "--skip-clip", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["basis"] == ddpm.settings.basis == "constrained"
    assert rep["jacobian_at"] == ddpm.settings.jacobian_at == "noised"
    assert rep["reconstruction_psnr"]["min"] >= 35
    assert rep["strength"] == {"mouth": 4.0, "eyes": 4.0, "hair": 12.0} == {p: ddpm.strength_for(p) for p in rep["strength"]}
    for part in ("mouth", "eyes", "hair"):  # measured: 0.85/0.90, 0.95/0.83, 0.94/0.89
        assert rep["locality"][part]["source"]["median"] >= 0.8, part
        assert rep["locality"][part]["transfer"]["median"] >= 0.8, part


@pytest.mark.slow
def test_spill_passes_keep_a_transferred_hair_edit_local(ddpm):
    """A hair direction found on one held-out face, applied to another with its hair mask: the
    spill passes cut the change outside the mask and keep the recolouring inside."""
    from locobank import core
    from locobank.toyworld import batch, face

    src, tgt = HELD_OUT_SEED + 1, HELD_OUT_SEED + 10_003  # brown hair on both
    steps, t = 20, core.to_timestep(ddpm, 0.3)
    xs = core.invert(ddpm, torch.from_numpy(batch([src])), t, steps)
    d = core.find_directions(ddpm, xs, t, torch.from_numpy(face(src).masks["hair"]), rank=1, null_rank=5, iters=6)
    x = torch.from_numpy(batch([tgt]))
    m = torch.from_numpy(face(tgt).masks["hair"])
    ref = core.sample(ddpm, core.invert(ddpm, x, t, steps), t, steps)[0]
    energy = {}
    for n in (0, 2):
        out = core.edit(ddpm, x, [(d[0], 12.0)], steps=steps, mask=m, null_rank=5, spill_passes=n).images[0]
        e = (out - ref).pow(2).sum(0)
        energy[n] = (float(e[m].sum()), float(e[~m].sum()))
    assert energy[0][0] > 20, energy  # the hair does change (measured: 272 inside, 6.9 outside)
    assert energy[2][1] < 0.65 * energy[0][1], energy  # measured: 3.6 outside after 2 passes
    assert energy[2][0] > 0.8 * energy[0][0], energy  # measured: 242 inside


def test_clip_fine_tune_starts_from_the_given_weights(tmp_path):
    """`train-clip --init DIR` starts from a toy CLIP's weights (e.g. after a generator change)."""
    from safetensors.torch import load_file

    from locobank.toyworld.training.clip import train_clip

    shipped = load_file(str(TOY_CLIP / "open_clip_model.safetensors"))
    kw = dict(steps=1, batch_size=4, n_faces=8, lr=1e-12, device="cpu")
    meta = train_clip(tmp_path / "ft", tmp_path / "ft.safetensors", init=TOY_CLIP, **kw)
    assert meta["step"] == 1 and json.loads((tmp_path / "ft" / "training.json").read_text())["init"]["path"] == str(TOY_CLIP)
    tuned = load_file(str(tmp_path / "ft" / "open_clip_model.safetensors"))
    assert tuned.keys() == shipped.keys()
    assert max(float((tuned[k].float() - shipped[k].float()).abs().max()) for k in shipped) < 1e-2
    train_clip(tmp_path / "s", tmp_path / "s.safetensors", **kw)  # the same step from scratch
    scratch = load_file(str(tmp_path / "s" / "open_clip_model.safetensors"))
    assert max(float((scratch[k].float() - shipped[k].float()).abs().max()) for k in shipped) > 0.1


def test_a_clip_folder_without_weights_is_refused_not_randomised(tmp_path):
    """A CLIP folder with its config but no weights (a broken install) is an error, never a random CLIP."""
    import shutil

    from locobank.clip import load_clip
    from locobank.errors import ModelLoadError

    shutil.copy(TOY_CLIP / "open_clip_config.json", tmp_path / "open_clip_config.json")
    with pytest.raises(ModelLoadError, match="no weights"):
        load_clip(str(tmp_path))
