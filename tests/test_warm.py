"""Warm starts: find_directions from given bases, built from the catalog and from finished jobs,
and each job's cost in forward-pass equivalents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from locobank import core
from locobank.catalog import Catalog
from locobank.harvest.warm import catalog_bases, warm_start
from locobank.images import load_image, load_mask
from locobank.loco.jacobian import max_principal_angle
from locobank.models import load_model
from locobank.toyworld import write_dataset
from locobank_cli.main import cli
from tiny import save_tiny_pipeline

FAST = ["--rank", "2", "--null-rank", "2", "--steps", "3", "--iters", "8", "--t-edit", "0.5"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(save_tiny_pipeline(tmp_path_factory.mktemp("m") / "tiny16", size=16), device="cpu")


def test_find_directions_from_its_own_converged_bases_needs_fewer_iterations(model):
    g = torch.Generator().manual_seed(3)
    x_t = torch.randn(3, 16, 16, generator=g)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[9:13, 4:12] = True
    cold = core.find_directions(model, x_t, 500, mask, rank=3, null_rank=3, tol=1e-5, null_tol=1e-5, iters=80)
    warm = core.find_directions(model, x_t, 500, mask, rank=3, null_rank=3, tol=1e-5, null_tol=1e-5, iters=80,
                                start=core.Start(cold.basis.edit, cold.basis.null))
    assert cold.diagnostics["converged"] and warm.diagnostics["converged"]
    assert warm.diagnostics["iterations"] < cold.diagnostics["iterations"]
    assert warm.diagnostics["null_iterations"] < cold.diagnostics["null_iterations"]
    assert warm.diagnostics["warm"] == [3, 3] and cold.diagnostics["warm"] == [0, 0]
    assert max_principal_angle(cold.basis.edit, warm.basis.edit) < 1e-3
    def orth(v):
        return torch.linalg.qr(v.reshape(3, -1).T.double())[0].T

    assert max_principal_angle(orth(cold.vectors), orth(warm.vectors)) < 1e-3


def test_forward_pass_equivalents(model):
    x_t = torch.randn(3, 16, 16)
    unit = core.forward_seconds(model, x_t, 500)
    assert 0 < unit < 10
    assert core.fpe(3 * unit, unit) == pytest.approx(3.0)


def _harvest(tmp_path, faces: int, *extra: str):
    """A tiny 32-pixel model harvested over ``faces`` toy faces; its folder, catalog URL and output."""
    folder = save_tiny_pipeline(tmp_path / "tiny32", size=32)
    write_dataset(tmp_path / "faces", faces, 1_000_000)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["harvest", "--model", str(folder), "--images", str(tmp_path / "faces"), *extra, *FAST, "--db", db]
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return folder, db, out.output


@pytest.mark.slow
def test_harvest_warm_starts_later_jobs_and_records_their_cost(tmp_path):
    folder, db, _ = _harvest(tmp_path, 3, "--labels", "mouth", "--batch", "2", "--warm")
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        by_job = {d.job_id: d.diagnostics for d in dirs}
        assert len(by_job) == 3
        for diag in by_job.values():
            assert diag["fpe"] > 0 and diag["forward_seconds"] > 0 and diag["state_fpe"] > 0
        warm = [diag["warm"][0] for _, diag in sorted(by_job.items())]
        assert warm[0] == 0 and all(0 < w <= 2 for w in warm[1:])  # the first job knew nothing; rank rows
        lm = load_model(folder)
        rec = dirs[0]
        assert [len(v) for v, _ in catalog_bases(cat, lm, "mouth", rec.t_edit)] == [2, 2, 2]
        assert catalog_bases(cat, lm, "eyes", rec.t_edit) == []
        image = load_image(Path(rec.image_uri), 32)
        mask = load_mask(Path(rec.mask_uri), 32)
        start = warm_start(cat, lm, "mouth", rec.t_edit, mask, image, rank=2, null_rank=2)
        assert start.edit.shape == (2, 3 * 32 * 32) and start.null is None
        torch.testing.assert_close(start.edit @ start.edit.T, torch.eye(2), atol=1e-4, rtol=0)
        assert warm_start(cat, lm, "eyes", rec.t_edit, mask, image) is None


def test_harvest_dry_run_estimates_the_cost_and_writes_nothing(tmp_path):
    folder = save_tiny_pipeline(tmp_path / "tiny16", size=16)
    faces = tmp_path / "faces"
    faces.mkdir()
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(faces / f"f{i}.png")
        m = Image.new("L", (16, 16), 0)
        m.paste(255, (4, 4, 10, 10))
        m.save(faces / f"f{i}_eyes.png")
        m.save(faces / f"f{i}_mouth.png")
    db = tmp_path / "c.db"
    args = ["harvest", "--model", str(folder), "--images", str(faces), "--rank", "2", "--null-rank", "3",
            "--steps", "7", "--dry-run", "--db", f"sqlite:///{db}"]
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "4 jobs on 2 images" in out.output
    assert "per image: inversion 7 FPE" in out.output and "20.0 rounds (assumed)" in out.output
    assert "estimate:" in out.output and "FPE, about" in out.output
    assert not db.exists()
    # whole Krylov blocks (the path before the small ones) take fewer, wider rounds
    from locobank.loco import jacobian

    with jacobian.krylov_block(0):
        whole = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert whole.exit_code == 0, whole.output
    assert "12.0 rounds (assumed)" in whole.output
    # after a harvest, the rounds its jobs took; not theirs for bases grown in other blocks
    done = CliRunner().invoke(cli, [a for a in args if a != "--dry-run"] + ["--iters", "1"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    recorded = re.search(r"per job: ([0-9.]+) rounds \(4 earlier jobs\)", again.output)
    assert recorded and float(recorded.group(1)) <= 3, again.output  # a cap of 1 whole block: 3 rounds of 2 of 5
    with jacobian.krylov_block(0):
        other = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "12.0 rounds (assumed)" in other.output


def test_pace_says_jobs_done_directions_per_minute_and_time_left():
    from locobank.harvest.estimate import Pace

    p = Pace(total=10, started=100.0)
    assert p.text(now=130.0) == "0/10 jobs, 0.0 directions/min, time left unknown"
    p.add(2, 6)
    assert p.text(now=160.0) == "2/10 jobs, 6.0 directions/min, 4 min 0 s left"


def test_stages_show_the_pace_beside_the_bar():
    from locobank.progress import note
    from locobank_cli.common import Stages

    seen = []
    with Stages() as stages:
        update = stages("harvest", 3)
        update(1)
        note(update, "1/3 jobs")
        seen.append(stages.bars[0].postfix)
    note(lambda n: None, "ignored")  # a plain update takes no note
    assert seen == ["1/3 jobs"]


def test_several_masks_on_one_state_are_found_together_as_alone(model):
    g = torch.Generator().manual_seed(5)
    x_t = torch.randn(3, 16, 16, generator=g)
    masks = [torch.zeros(16, 16, dtype=torch.bool) for _ in range(2)]
    masks[0][9:13, 4:12] = True
    masks[1][2:6, 3:9] = True
    kw = dict(rank=2, null_rank=2, tol=1e-5, null_tol=1e-5, iters=80)
    alone = [core.find_directions(model, x_t, 500, m, **kw) for m in masks]
    together = core.find_many(model, x_t, 500, masks, **kw)
    for a, b in zip(alone, together):
        assert b.diagnostics["converged"] and b.diagnostics["masks_together"] == 2
        assert max_principal_angle(a.basis.edit, b.basis.edit) < 1e-3
        assert max_principal_angle(a.basis.null, b.basis.null) < 1e-3
        torch.testing.assert_close(a.singular_values, b.singular_values, rtol=1e-3, atol=0)
    with pytest.raises(Exception, match="one start"):
        core.find_many(model, x_t, 500, masks, starts=[None])


@pytest.mark.slow
def test_harvest_together_finds_each_images_masks_in_one_group(tmp_path):
    _, db, output = _harvest(tmp_path, 2, "--labels", "mouth,eyes", "--batch", "4", "--together")
    assert "done 4, skipped 0 (already done), failed 0, 8 new directions" in output
    with Catalog.open(db) as cat:
        diags = {d.job_id: d.diagnostics for d in cat.list_directions()}
    assert sorted(d.get("masks_together", 1) for d in diags.values()) == [2, 2, 2, 2]
    assert all(d["fpe"] > 0 for d in diags.values())
    assert all(d["warm"] == [0, 0] for d in diags.values())  # without --warm, every job starts cold


def test_reprojection_warm_started_from_the_image_before_gives_the_same_vectors(model):
    g = torch.Generator().manual_seed(7)
    states = [torch.randn(3, 16, 16, generator=g) for _ in range(2)]
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[9:13, 4:12] = True
    v = torch.randn(2, 3, 16, 16, generator=g)
    memory = core.NullBases()
    assert memory.start(500) is None
    core.reproject(model, states[0], 500, mask, v, null_rank=3, memory=memory)
    assert memory.start(500).shape == (3, 3 * 16 * 16) and memory.start(400) is None
    cold = core.reproject(model, states[1], 500, mask, v, null_rank=3, tol=1e-6)
    warm = core.reproject(model, states[1], 500, mask, v, null_rank=3, tol=1e-6, memory=memory)
    torch.testing.assert_close(warm, cold, atol=1e-4, rtol=0)
