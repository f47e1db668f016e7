"""A text-to-image model through the CLI, on a tiny random StableDiffusionPipeline: harvest from
captioned images, from a prompt's samples and text-supervised, then apply under a prompt and to
a prompt's samples; bad conditions refused with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from locobank.catalog import Catalog
from locobank_cli.main import cli

from tiny import save_tiny_sd, write_sd_inputs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent-cli")
    model = save_tiny_sd(root / "sd")
    write_sd_inputs(root)
    rows = [
        {"image": "a.png", "prompt": "a smiling face", "masks": {"mouth": "mouth.png"}},
        {"image": "b.png", "prompt": "a frowning face", "negative_prompt": "glasses", "masks": {"mouth": "mouth.png"}},
        {"prompt": "a face with blue eyes", "seed": 3, "masks": {"mouth": "mouth.png"}},
        {"image": "a.png", "prompt": "a smiling face", "edit_prompt": "a frowning face", "masks": {"mouth": "mouth.png"}},
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    db = f"sqlite:///{root / 'catalog.db'}"
    assert CliRunner().invoke(cli, ["db", "upgrade", "--db", db]).exit_code == 0
    res = CliRunner().invoke(cli, ["harvest", "--model", str(model), "--images", str(root / "manifest.jsonl"),
                                   "--rank", "1", "--null-rank", "1", "--steps", "4", "--iters", "4", "--db", db])
    assert res.exit_code == 0, res.output
    return root, model, db


@pytest.mark.slow
def test_harvest_records_each_job_condition(world):
    root, _, db = world
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
    conds = sorted((json.dumps(d.condition, sort_keys=True), d.rank_index) for d in dirs)
    assert len(dirs) == 4  # rank 1 on three jobs, and one text-supervised direction
    prompts = {d.condition["prompt"] for d in dirs}
    assert prompts == {"a smiling face", "a frowning face", "a face with blue eyes"}
    sup = [d for d in dirs if "edit_prompt" in (d.condition or {})]
    assert len(sup) == 1 and sup[0].condition["edit_prompt"] == "a frowning face"
    assert sup[0].condition["edit_guidance"] == 4.0 and sup[0].diagnostics["basis"] == "supervised"
    gen = [d for d in dirs if d.condition.get("seed") == 3]
    assert gen and Path(gen[0].image_uri).is_file() and "generated" in gen[0].image_uri
    assert all(d.condition["guidance"] == 7.5 for d in dirs), conds
    neg = [d for d in dirs if d.condition["prompt"] == "a frowning face"]
    assert neg[0].condition["negative_prompt"] == "glasses"


@pytest.mark.slow
def test_a_rerun_stores_nothing_twice(world):
    root, model, db = world
    res = CliRunner().invoke(cli, ["harvest", "--model", str(model), "--images", str(root / "manifest.jsonl"),
                                   "--rank", "1", "--null-rank", "1", "--steps", "4", "--iters", "4", "--db", db])
    assert res.exit_code == 0, res.output
    with Catalog.open(db) as cat:
        assert len(cat.list_directions()) == 4


@pytest.mark.slow
def test_apply_under_a_prompt_and_to_a_prompts_samples(world, tmp_path):
    root, _, db = world
    with Catalog.open(db) as cat:
        d = cat.list_directions()[0]
    out = tmp_path / "edited.png"
    res = CliRunner().invoke(cli, ["apply", f"{d.id}:4", str(root / "a.png"), "--prompt", "a smiling face",
                                   "--steps", "4", "--out", str(out), "--db", db])
    assert res.exit_code == 0, res.output
    assert "under the prompt 'a smiling face'" in res.output and out.is_file()
    plain = tmp_path / "plain.png"
    res = CliRunner().invoke(cli, ["apply", f"{d.id}:0", str(root / "a.png"), "--prompt", "a smiling face",
                                   "--steps", "4", "--out", str(plain), "--db", db])
    assert res.exit_code == 0, res.output
    assert np.abs(np.asarray(Image.open(out), float) - np.asarray(Image.open(plain), float)).mean() > 0.5
    res = CliRunner().invoke(cli, ["apply", str(d.id), "--generate", "0,1", "--prompt", "a face", "--steps", "4",
                                   "--out", str(tmp_path / "samples"), "--db", db])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["seed0.png", "seed1.png"]
    assert "generated from seeds 0, 1 under the prompt 'a face'" in res.output


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["--generate", "0"], "give --prompt"),
    (["--generate", "x"], "whole numbers"),
    (["--generate", "0", "--prompt", "p", "IMAGE"], "not both"),
    (["--guidance", "nan", "--prompt", "p", "IMAGE"], "finite"),
    (["--negative-prompt", "glasses", "IMAGE"], "goes with --prompt"),
])
def test_bad_conditions_are_refused_before_any_work(world, tmp_path, args, words):
    root, _, db = world
    args = [str(root / "a.png") if a == "IMAGE" else a for a in args]
    res = CliRunner().invoke(cli, ["apply", "1", *args, "--out", str(tmp_path / "o.png"), "--db", db])
    assert res.exit_code == 2 and words in res.output, res.output
    assert "Traceback" not in res.output


def test_a_pixel_model_refuses_a_prompt(tmp_path):
    from tiny import save_tiny_pipeline

    model = save_tiny_pipeline(tmp_path / "px")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "a_mouth.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"image": "a.png", "prompt": "x", "masks": {"mouth": "a_mouth.png"}}))
    db = f"sqlite:///{tmp_path / 'c.db'}"
    CliRunner().invoke(cli, ["db", "upgrade", "--db", db])
    res = CliRunner().invoke(cli, ["harvest", "--model", str(model), "--images", str(tmp_path / "m.jsonl"), "--db", db])
    assert res.exit_code != 0 and "take no prompt" in res.output, res.output


@pytest.mark.slow
def test_index_search_and_the_hits_command_carry_the_prompt(world):
    root, _, db = world
    built = CliRunner().invoke(cli, ["index", "build", "--probes", "1", "--steps", "3", "--db", db])
    assert built.exit_code == 0, built.output
    res = CliRunner().invoke(cli, ["search", "a smiling face", "--json", "--db", db])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    assert len(hits) == 4 and all(h["condition"]["prompt"] for h in hits)
    assert all(f"--prompt '{h['condition']['prompt']}'" in h["apply"] for h in hits)


@pytest.mark.slow
def test_a_pack_round_trip_keeps_the_conditions(world, tmp_path):
    root, _, db = world
    with Catalog.open(db) as cat:
        before = {d.vector_sha256: d.condition for d in cat.list_directions()}
    pack = tmp_path / "sd.safetensors"
    res = CliRunner().invoke(cli, ["export", *map(str, range(1, 5)), "--out", str(pack), "--db", db])
    assert res.exit_code == 0, res.output
    other = f"sqlite:///{tmp_path / 'other.db'}"
    CliRunner().invoke(cli, ["db", "upgrade", "--db", other])
    res = CliRunner().invoke(cli, ["import", str(pack), "--db", other])
    assert res.exit_code == 0 and "imported 4 new direction(s)" in res.output, res.output
    with Catalog.open(other) as cat:
        after = {d.vector_sha256: d.condition for d in cat.list_directions()}
    assert after == before and str(root) not in pack.read_bytes().decode("latin-1")


@pytest.mark.slow
def test_the_gallery_shows_each_direction_prompt(world, tmp_path):
    root, _, db = world
    res = CliRunner().invoke(cli, ["gallery", "--out", str(tmp_path / "g"), "--db", db])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "g" / "index.html").read_text()
    data = json.loads(page.split('id="data"')[1].split(">", 1)[1].split("</script>")[0])
    by_prompt = {d["prompt"]: d for d in data}
    assert set(by_prompt) == {"a smiling face", "a frowning face", "a face with blue eyes"}
    assert [d["edit_prompt"] for d in data if d["edit_prompt"]] == ["a frowning face"]
    assert all(f"--prompt '{d['prompt']}'" in d["command"] for d in data)


@pytest.mark.slow
def test_query_candidates_keep_each_sample_best_real_edit(world, tmp_path):
    """--query with --candidates on a prompt's samples: each seed keeps one candidate's own edit."""
    root, _, db = world
    assert CliRunner().invoke(cli, ["index", "build", "--probes", "1", "--steps", "3", "--db", db]).exit_code == 0
    common = ["--generate", "0,1", "--prompt", "a face", "--steps", "4", "--db", db]
    res = CliRunner().invoke(cli, ["apply", "--query", "a smiling face", "--candidates", "3", *common,
                                   "--out", str(tmp_path / "best")])
    assert res.exit_code == 0, res.output
    assert "kept per image: #" in res.output and "2 samples of the prompt" in res.output
    hits = json.loads(CliRunner().invoke(cli, ["search", "a smiling face", "-k", "3", "--json", "--db", db]).output)
    alone = []
    for h in hits:  # each candidate alone, as `apply` would do it
        spec = h["apply"].split()[2]
        out = tmp_path / f"alone{h['id']}"
        assert CliRunner().invoke(cli, ["apply", spec, *common, "--out", str(out)]).exit_code == 0
        alone.append(out)
    for name in ("seed0.png", "seed1.png"):
        kept = np.asarray(Image.open(tmp_path / "best" / name), float)
        gaps = [np.abs(kept - np.asarray(Image.open(a / name), float)).max() for a in alone]
        assert min(gaps) <= 1, gaps  # the kept image is one candidate's edit, not a blend


@pytest.mark.slow
def test_a_killed_latent_harvest_resumes_without_duplicates(world, tmp_path):
    """kill -9 in the middle of a text-to-image harvest, then a rerun: every job done once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root, model, _ = world
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    more = [dict(r, prompt=r["prompt"] + f", take {i}") for i in range(2) for r in rows if "image" in r]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({**r, "image": str(root / r["image"]),
                                              "masks": {"mouth": str(root / "mouth.png")}}) for r in more))
    db = f"sqlite:///{tmp_path / 'c.db'}"
    cmd = [sys.executable, "-m", "locobank_cli.main", "harvest", "--model", str(model), "--images", str(manifest),
           "--rank", "1", "--null-rank", "1", "--steps", "4", "--iters", "4", "--batch", "1", "--lease", "3",
           "--db", db]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def done() -> int:
        try:
            with Catalog.open(db) as cat:
                return cat.job_counts().get("done", 0)
        except Exception:  # not created yet, or mid-migration
            return 0

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and done() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed and 2 <= done() < len(more), done()
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        counts = cat.job_counts(dirs[0].run_id)
        assert counts["done"] == len(more) and counts["failed"] == counts["running"] == counts["pending"] == 0, counts
        found = sorted((d.condition["prompt"], d.condition.get("edit_prompt") or "") for d in dirs)
        assert found == sorted((r["prompt"], r.get("edit_prompt") or "") for r in more)  # one direction per job
