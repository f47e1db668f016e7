"""The harvester end to end: discovery, a resumable run, bad inputs, crash and resume, many workers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from locobank_cli.main import cli
from locobank.catalog import Catalog
from locobank.harvest import discover
from locobank.toyworld import write_dataset
from tiny import save_tiny_pipeline

pytest_plugins = ["catalog_support"]  # pg_url

FAST = ["--rank", "2", "--null-rank", "2", "--steps", "3", "--iters", "4", "--t-edit", "0.5"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny32", size=32)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A 16-pixel model, for the tests of many runs and workers: their jobs cost a quarter."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny16", size=16)


@pytest.fixture()
def faces(tmp_path) -> Path:
    write_dataset(tmp_path / "faces", 3, 1_000_000)
    return tmp_path / "faces"


def _harvest(args, db):
    return CliRunner().invoke(cli, ["harvest", *args, "--db", db], catch_exceptions=False)


def test_discovery_layouts(faces, tmp_path):
    by_manifest = discover(faces, labels={"eyes", "mouth"})
    assert len(by_manifest) == 6 and {p.label for p in by_manifest} == {"eyes", "mouth"}
    (faces / "manifest.jsonl").rename(tmp_path / "elsewhere.jsonl")
    by_name = discover(faces, labels={"eyes", "mouth"})
    assert sorted((p.image.name, p.label) for p in by_name) == sorted((p.image.name, p.label) for p in by_manifest)
    celeb = tmp_path / "celeb"
    (celeb / "CelebA-HQ-img").mkdir(parents=True)
    (celeb / "CelebAMask-HQ-mask-anno" / "0").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(celeb / "CelebA-HQ-img" / "7.jpg")
    Image.new("L", (32, 32), 255).save(celeb / "CelebAMask-HQ-mask-anno" / "0" / "00007_l_eye.png")
    Image.new("L", (32, 32), 255).save(celeb / "CelebAMask-HQ-mask-anno" / "0" / "00007_hair.png")
    pairs = discover(celeb, labels={"l_eye"})
    assert [(p.image.name, p.label) for p in pairs] == [("7.jpg", "l_eye")]


@pytest.mark.slow
def test_harvest_is_safe_to_repeat(tiny_model, faces, tmp_path):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["--model", str(tiny_model), "--images", str(faces), "--labels", "eyes,mouth", *FAST]
    first = _harvest(args, db)
    assert first.exit_code == 0, first.output
    assert "done 6, skipped 0 (already done), failed 0, 12 new directions" in first.output
    second = _harvest(args, db)
    assert second.exit_code == 0, second.output
    assert "done 0, skipped 6 (already done), failed 0, 0 new directions" in second.output
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        assert len(dirs) == 12
        assert len({(d.job_id, d.rank_index) for d in dirs}) == 12
        v = cat.load_vector(dirs[0].id, expected_fingerprint=dirs[0].fingerprint)
        assert tuple(v.shape) == (3, 32, 32) and abs(float(v.norm()) - 1) < 1e-4
        assert dirs[0].mask_label in {"eyes", "mouth"} and dirs[0].t_edit == 500
    # Other parameters are another run: its jobs are new work.
    third = _harvest([*args[:-2], "--t-edit", "0.4"], db)
    assert "done 6, skipped 0" in third.output


@pytest.mark.slow
def test_each_direction_records_the_part_it_was_found_on(tiny_model, faces, tmp_path):
    """The mask and the part's profiles go into the direction's diagnostics, so `apply --mask`
    can register it with neither file at hand; with the files (an older catalog) they are read
    from them, and a changed or missing mask file means no registration."""
    import dataclasses

    import torch

    from locobank.apply import source_part
    from locobank.images import load_image, load_mask, unpack_mask
    from locobank.loco.register import profiles

    db = f"sqlite:///{tmp_path / 'c.db'}"
    assert _harvest(["--model", str(tiny_model), "--images", str(faces), "--labels", "mouth", *FAST], db).exit_code == 0
    with Catalog.open(db) as cat:
        rec = cat.list_directions()[0]
    mask = load_mask(Path(rec.mask_uri), 32)
    img = load_image(Path(rec.image_uri), 32)
    assert torch.equal(unpack_mask(rec.diagnostics["source_part"]["mask"]), mask)
    cols, rows = profiles(img, mask)
    part = source_part(rec, 32)
    assert torch.equal(part.mask, mask)
    torch.testing.assert_close(part.cols, cols, rtol=1e-4, atol=1e-4)  # stored to 5 digits
    torch.testing.assert_close(part.rows, rows, rtol=1e-4, atol=1e-4)
    older = dataclasses.replace(rec, diagnostics={})
    from_files = source_part(older, 32)
    assert torch.equal(from_files.mask, mask)
    torch.testing.assert_close(from_files.cols, cols)
    Path(rec.image_uri).write_bytes(b"changed")
    assert source_part(older, 32).cols is None  # the mask alone
    Path(rec.mask_uri).unlink()
    assert source_part(older, 32) is None
    assert source_part(rec, 64) is None  # another resolution: not this model's grid


def _bad_corpus(folder: Path) -> dict[str, str]:
    """Every kind of bad input next to good ones; returns the expected reason per image stem."""
    folder.mkdir()
    good = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 10:20] = 255

    def put(stem, img, m=mask, mask_size=None):
        img.save(folder / f"{stem}.png") if isinstance(img, Image.Image) else (folder / f"{stem}.png").write_bytes(img)
        mm = Image.fromarray(m)
        if mask_size:
            mm = mm.resize(mask_size)
        mm.save(folder / f"{stem}_part.png")

    put("good one", Image.fromarray(good))
    put("gööd ünicode", Image.fromarray(good[::-1].copy()))
    data = (folder / "good one.png").read_bytes()
    put("truncated", data[: len(data) // 2])
    put("gray", Image.fromarray(good[..., 0]))
    put("rgba", Image.fromarray(np.dstack([good, good[..., :1]])))
    put("sixteen", Image.fromarray(good[..., 0].astype(np.uint16) * 200))
    put("wrong mask size", Image.fromarray(good[:, ::-1].copy()), mask_size=(16, 16))
    put("empty mask", Image.fromarray(good[1:].copy().repeat(2, 0)[:32]), m=np.zeros((32, 32), np.uint8))
    put("full mask", Image.fromarray((good // 2).astype(np.uint8)), m=np.full((32, 32), 255, np.uint8))
    put("not an image", b"%PDF-1.4 this is not a png")
    put("huge", Image.fromarray(np.zeros((2048, 2048, 3), np.uint8) + 7))
    return {
        "truncated": "truncated", "gray": "1 channel", "rgba": "4 channels", "sixteen": "not 8-bit RGB",
        "wrong mask size": "--resize", "empty mask": "empty", "full mask": "whole image",
        "not an image": "not an image", "huge": "--resize",
    }


@pytest.mark.slow
def test_constrained_basis_is_its_own_run_and_is_recorded(tiny_model, faces, tmp_path):
    from locobank.errors import InputError
    from locobank.harvest import HarvestParams

    assert "basis" not in HarvestParams().to_dict()  # runs planned before --basis keep their identity
    with pytest.raises(InputError, match="basis"):
        HarvestParams(basis="orthogonal")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["--model", str(tiny_model), "--images", str(faces), "--labels", "mouth", *FAST]
    assert "done 3, skipped 0" in _harvest(args, db).output
    con = _harvest([*args, "--basis", "constrained"], db)
    assert con.exit_code == 0 and "(constrained)" in con.output and "done 3, skipped 0" in con.output
    with Catalog.open(db) as cat:
        bases = sorted(d.diagnostics["basis"] for d in cat.list_directions())
    assert bases == ["constrained"] * 6 + ["projected"] * 6
    bad = CliRunner().invoke(cli, ["harvest", *args, "--basis", "nope", "--db", db])
    assert bad.exit_code == 2 and "'nope' is not one of" in bad.output


@pytest.mark.slow
def test_edit_time_per_mask_label(tiny_model, faces, tmp_path):
    from locobank.errors import InputError
    from locobank.harvest import HarvestParams

    p = HarvestParams(t_edit=0.5, t_edit_by_label={"mouth": 0.3})
    assert (p.t_for("mouth"), p.t_for("eyes")) == (0.3, 0.5)
    assert HarvestParams(**json.loads(json.dumps(p.to_dict()))) == p  # survives the catalog's JSON
    assert "t_edit_by_label" not in HarvestParams().to_dict()  # older runs keep their identity
    model = {"t_edit": 0.4, "t_edit_by_label": {"hair": 0.5}, "rank": 3}
    assert HarvestParams.from_defaults(model).t_for("hair") == 0.5
    assert HarvestParams.from_defaults(model, rank=None, t_edit=0.3).t_for("hair") == 0.3  # one time for all
    assert HarvestParams.from_defaults(model, rank=None).rank == 3
    from locobank.settings import edit_times  # as reports and the CLI write them

    assert edit_times(p.t_edit, p.t_edit_by_label) == "0.5 (mouth 0.3)"
    assert edit_times(0.3, {"mouth": 0.4, "eyes": 0.3}) == "0.3 (mouth 0.4)" and edit_times(0.6) == "0.6"
    with pytest.raises(InputError, match="'hair' must be a fraction"):
        HarvestParams(t_edit_by_label={"hair": 1.5})
    db = f"sqlite:///{tmp_path / 't.db'}"
    args = ["--model", str(tiny_model), "--images", str(faces), "--labels", "eyes,mouth", *FAST]
    res = _harvest([*args, "--t-edit-for", "mouth=0.3"], db)
    assert res.exit_code == 0 and "mouth at 0.3" in res.output and "done 6, skipped 0" in res.output
    with Catalog.open(db) as cat:
        times = {(d.mask_label, d.t_edit) for d in cat.list_directions()}
    assert times == {("eyes", 500), ("mouth", 300)}
    bad = CliRunner().invoke(cli, ["harvest", *args, "--t-edit-for", "mouth", "--db", db])
    assert bad.exit_code == 2 and "is not LABEL=FRACTION" in bad.output


@pytest.mark.slow
def test_jacobian_at_noised_states(tiny_model, faces, tmp_path):
    """--jacobian-at noised takes each job's Jacobian at sqrt(abar) x + sqrt(1 - abar) eps, with
    eps seeded by the image's hash: checked against find_directions on that state built by hand."""
    import torch

    from locobank import core
    from locobank.errors import InputError
    from locobank.harvest import HarvestParams
    from locobank.harvest.worker import noise_seed
    from locobank.images import load_image, load_mask
    from locobank.models import load_model

    assert "jacobian_at" not in HarvestParams().to_dict()  # older runs keep their identity
    p = HarvestParams(jacobian_at="noised")
    assert HarvestParams(**json.loads(json.dumps(p.to_dict()))) == p
    assert HarvestParams.from_defaults({"jacobian_at": "noised"}).jacobian_at == "noised"
    assert HarvestParams.from_defaults({"jacobian_at": "noised"}, jacobian_at="inverted").jacobian_at == "inverted"
    with pytest.raises(InputError, match="jacobian_at must be one of inverted, noised"):
        HarvestParams(jacobian_at="random")

    db = f"sqlite:///{tmp_path / 'n.db'}"
    args = ["--model", str(tiny_model), "--images", str(faces), "--labels", "mouth", *FAST]
    res = _harvest([*args, "--jacobian-at", "noised"], db)
    assert res.exit_code == 0 and "Jacobian at noised states" in res.output and "done 3, skipped 0" in res.output
    again = _harvest(args, db)  # inverted states: a run of its own
    assert "Jacobian at inverted states" in again.output and "done 3, skipped 0" in again.output
    with Catalog.open(db) as cat:
        every = [d for d in cat.list_directions() if d.rank_index == 0]
        runs = {d.run_id: cat.get_run(d.run_id).params.get("jacobian_at", "inverted") for d in every}
        dirs = [d for d in every if runs[d.run_id] == "noised"]
        inverted = {d.image_sha256: d for d in every if runs[d.run_id] == "inverted"}
        vectors = {d.id: torch.as_tensor(cat.load_vector(d.id)) for d in dirs}
        inv_vectors = {k: torch.as_tensor(cat.load_vector(d.id)) for k, d in inverted.items()}
    assert len(dirs) == 3
    lm = load_model(tiny_model, device="cpu")
    d = dirs[0]
    x = load_image(Path(d.image_uri), lm.resolution, channels=lm.channels)
    image = Path(d.image_uri)
    m = load_mask(image.with_name(f"{image.stem}_mouth.png"), lm.resolution)
    seed = noise_seed(p, d.image_sha256)
    xt = core.noise_to(lm, x[None], d.t_edit, [seed])
    a = lm.denoiser.abar(d.t_edit).item()
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(xt[0], a ** 0.5 * x + (1 - a) ** 0.5 * eps, atol=1e-6)
    found = core.find_directions(lm, xt, d.t_edit, m, rank=2, null_rank=2, iters=4, tol=1e-3, seed=0)
    assert torch.allclose(found.vectors[0].flatten(), vectors[d.id].flatten(), atol=1e-5)
    assert not torch.allclose(vectors[d.id].flatten(), inv_vectors[d.image_sha256].flatten(), atol=1e-3)
    bad = CliRunner().invoke(cli, ["harvest", *args, "--jacobian-at", "sampled", "--db", db])
    assert bad.exit_code == 2 and "'sampled' is not one of" in bad.output


def test_noise_to_is_per_image_and_seeded(tiny_model):
    import torch

    from locobank import core
    from locobank.errors import InputError
    from locobank.models import load_model

    lm = load_model(tiny_model, device="cpu")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    both = core.noise_to(lm, x, 0.4, [7, 8, 9])
    alone = core.noise_to(lm, x[1:2], 0.4, [8])
    assert torch.equal(both[1], alone[0])  # an image's noise does not depend on its batch
    assert not torch.allclose(both[0], core.noise_to(lm, x[:1], 0.4, [1])[0])
    t = core.to_timestep(lm, 0.4)
    a = lm.denoiser.abar(t).item()
    eps = (both - a ** 0.5 * x) / (1 - a) ** 0.5
    assert 0.9 < float(eps.std()) < 1.1 and abs(float(eps.mean())) < 0.1
    with pytest.raises(InputError, match="one seed per image"):
        core.noise_to(lm, x, 0.4, [1])


@pytest.mark.slow
def test_bad_inputs_fail_their_jobs_clearly_and_the_rest_finish(tiny_model, tmp_path):
    expected = _bad_corpus(tmp_path / "bad corpus")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    res = CliRunner().invoke(cli, ["harvest", "--model", str(tiny_model), "--images", str(tmp_path / "bad corpus"),
                                   *FAST, "--db", db])
    assert res.exit_code == 1, res.output
    assert "done 2, skipped 0 (already done), failed 9" in res.output
    with Catalog.open(db) as cat:
        run_id = cat.list_directions()[0].run_id
        failed = {Path(j.image_uri).stem: j.error for j in cat.list_jobs(run_id, "failed")}
        assert set(failed) == set(expected)
        for stem, words in expected.items():
            assert words in failed[stem], (stem, failed[stem])
        assert {Path(d.image_uri).stem for d in cat.list_directions()} == {"good one", "gööd ünicode"}
    again = CliRunner().invoke(cli, ["harvest", "--model", str(tiny_model), "--images", str(tmp_path / "bad corpus"),
                                     *FAST, "--db", db, "--retry-failed"])
    assert "requeued 9 failed jobs" in again.output and again.exit_code == 1


def _count(db):
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        run = dirs[0].run_id if dirs else None
        return cat, dirs, run


@pytest.mark.slow
def test_crash_and_resume_under_sigkill(small_model, tmp_path):
    write_dataset(tmp_path / "faces", 4, 1_000_100)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    cmd = [sys.executable, "-m", "locobank_cli.main", "harvest", "--model", str(small_model), "--images", str(tmp_path / "faces"),
           "--labels", "eyes,mouth", *FAST, "--resize", "--batch", "2", "--lease", "3", "--max-attempts", "20", "--db", db]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(0)
    kills = 0

    def done_jobs() -> int:
        try:
            with Catalog.open(db) as cat:
                return sum(c for status, c in cat.job_counts().items() if status == "done")
        except Exception:  # not created yet, or mid-migration: nothing done
            return 0

    for _ in range(3):
        before = done_jobs()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # Kill mid-run: once this process has finished a job, at a random moment soon after.
        while proc.poll() is None and done_jobs() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()  # the next run takes the dead worker's jobs back at once (its pid is gone)
    assert kills >= 2
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        run_id = dirs[0].run_id
        counts = cat.job_counts(run_id)
        assert counts == {**counts, "done": 8, "failed": 0, "running": 0, "pending": 0}
        assert len(dirs) == 16
        assert len({(d.job_id, d.rank_index) for d in dirs}) == 16
        assert cat.sweep_orphans() == 0
        for d in dirs:
            cat.load_vector(d.id, expected_fingerprint=d.fingerprint)  # hash and fingerprint checked


@pytest.mark.postgres
@pytest.mark.slow
def test_four_worker_processes_share_a_postgres_run(small_model, faces, pg_url):
    res = CliRunner().invoke(cli, ["harvest", "--model", str(small_model), "--images", str(faces), *FAST,
                                   "--resize", "--workers", "4", "--device", "cpu", "--db", pg_url], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with Catalog.open(pg_url) as cat:
        dirs = cat.list_directions()
        n_jobs = sum(cat.job_counts(dirs[0].run_id).values())
        assert n_jobs == len(discover(faces))
        assert len(dirs) == 2 * n_jobs
        assert len({(d.job_id, d.rank_index) for d in dirs}) == len(dirs)
        assert all(j.attempts == 1 for j in cat.list_jobs(dirs[0].run_id))


def test_relative_paths_are_stored_absolute_and_unknown_labels_are_named(tiny_model, faces, tmp_path, monkeypatch):
    """Harvesting from a relative folder stores absolute paths (found again from anywhere), and a
    --labels entry that matches no mask is said, not skipped silently."""
    monkeypatch.chdir(faces.parent)
    db = f"sqlite:///{tmp_path / 'rel.db'}"
    res = CliRunner().invoke(cli, ["harvest", "--model", str(tiny_model), "--images", faces.name, "--labels",
                                   "Mouth, eyes", *FAST, "--db", db])
    assert res.exit_code == 0, res.output
    assert "no mask is labelled 'Mouth'" in res.output and "case-sensitive" in res.output
    with Catalog.open(db) as cat:
        recs = cat.list_directions()
        assert recs and {r.mask_label for r in recs} == {"eyes"}
        job = cat.get_job(recs[0].job_id)
    assert Path(job.image_uri).is_absolute() and Path(job.image_uri).is_file()
    assert Path(job.mask_uri).is_absolute() and Path(job.mask_uri).is_file()


# -- reruns, leases and failure reports (issue 23) ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny8(tmp_path_factory) -> Path:
    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny8", size=8)


def _image(path: Path, size: int, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), np.uint8)).save(path)
    return path


def _mask(path: Path, size: int, fill: str = "block") -> Path:
    m = np.zeros((size, size), np.uint8)
    if fill == "block":
        m[size // 4 : size // 2, size // 4 : 3 * size // 4] = 255
    elif fill == "all":
        m[:] = 255
    Image.fromarray(m).save(path)
    return path


def test_failures_name_the_files_that_failed(tiny8, tmp_path):
    """Copies of one image are one image row (keyed by their bytes) recorded under the first path;
    each failure still names the file of this call that failed, not the first copy."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "a.png", 8, 0)
    for copy in ("b", "d", "e"):
        (folder / f"{copy}.png").write_bytes((folder / "a.png").read_bytes())
    _image(folder / "c.png", 8, 1)
    _mask(folder / "a_eyes.png", 8, "none")  # empty: fails
    _mask(folder / "b_mouth.png", 8, "none")  # empty: fails
    (folder / "e_mouth.png").write_bytes((folder / "b_mouth.png").read_bytes())  # same bytes as b's: one job
    _mask(folder / "d_mouth.png", 8, "all")  # everything: fails (the null space needs pixels outside)
    _mask(folder / "c_mouth.png", 8, "none")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    res = CliRunner().invoke(cli, ["harvest", "--model", str(tiny8), "--images", str(folder), *FAST, "--db", db])
    assert res.exit_code == 1, res.output
    assert "done 0, skipped 0 (already done), failed 4" in res.output
    lines = [line.strip() for line in res.output.splitlines()]
    failed = sorted(line[len("failed: "):] for line in lines if line.startswith("failed:"))
    assert [line.split(":")[0].split(" (")[0] for line in failed] == [
        "a.png [eyes]", "b.png, e.png [mouth]", "c.png [mouth]", "d.png [mouth]"]
    assert "(same bytes as a.png)" in failed[1] and "(same bytes" not in failed[0] + failed[2]
    assert "b_mouth.png is empty" in failed[1] and "covers the whole image" in failed[3]
    assert not any(line.startswith("a.png [mouth]") for line in failed)


@pytest.mark.slow
def test_a_rerun_with_resize_continues_the_run_and_never_stores_twice(tiny8, tmp_path):
    """The case from the issue: jobs fail for their size, the rerun with --resize is the same run
    (no new run, nothing stored twice), and --retry-failed requeues exactly those jobs."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "small.png", 8, 0)
    _mask(folder / "small_mouth.png", 8)
    _image(folder / "big.png", 32, 1)
    _mask(folder / "big_mouth.png", 32)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["harvest", "--model", str(tiny8), "--images", str(folder), *FAST, "--db", db]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 1 and "done 1, skipped 0 (already done), failed 1" in first.output, first.output
    assert "big.png [mouth]" in first.output and "pass --resize" in first.output
    resized = CliRunner().invoke(cli, [*args, "--resize"])
    assert resized.exit_code == 1, resized.output
    assert "run 1 " in resized.output and "done 0, skipped 1 (already done), failed 1, 0 new" in resized.output
    retried = CliRunner().invoke(cli, [*args, "--resize", "--retry-failed"])
    assert retried.exit_code == 0, retried.output
    assert "requeued 1 failed job\n" in retried.output and "run 1 " in retried.output
    assert "done 1, skipped 1 (already done), failed 0, 2 new directions" in retried.output
    with Catalog.open(db) as cat:
        dirs = cat.list_directions()
        assert cat.stats()["runs"] == 1 and len(dirs) == 4
        assert len({(d.image_sha256, d.mask_sha256, d.rank_index) for d in dirs}) == 4
        assert len({d.vector_sha256 for d in dirs}) == 4
        assert "resize" not in cat.get_run(dirs[0].run_id).params


def test_a_run_left_with_jobs_leased_elsewhere_says_so_and_fails(tiny8, tmp_path):
    """Jobs held by a live worker on another machine are its to finish: the run says who holds
    them and that a rerun resumes them, and does not exit 0."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for stem, seed in (("a", 0), ("b", 1)):
        _image(folder / f"{stem}.png", 8, seed)
        _mask(folder / f"{stem}_mouth.png", 8)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["harvest", "--model", str(tiny8), "--images", str(folder), *FAST, "--db", db]
    assert CliRunner().invoke(cli, [*args, "--plan-only"]).exit_code == 0
    with Catalog.open(db) as cat:
        run_id = cat.list_jobs(1)[0].run_id
        assert len(cat.claim_jobs(run_id, "gpu-box-7:4242", n=2, lease_seconds=600)) == 2
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 75, res.output
    said = "run 1 is not finished: 2 jobs still leased by other workers: gpu-box-7:4242 (2 jobs, lease ends"
    assert said in res.output
    assert "rerun this command later to resume" in res.output


@pytest.mark.slow
def test_the_next_harvest_takes_back_a_dead_workers_job_at_once(tiny8, tmp_path):
    """After kill -9 of the only worker, a rerun on the same machine finishes its job now, not after
    the 600 s lease."""
    import socket

    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "a.png", 8, 0)
    _mask(folder / "a_mouth.png", 8)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["harvest", "--model", str(tiny8), "--images", str(folder), *FAST, "--db", db]
    assert CliRunner().invoke(cli, [*args, "--plan-only"]).exit_code == 0
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a real process that is gone: its pid names the killed worker
    with Catalog.open(db) as cat:
        (job,) = cat.claim_jobs(1, f"{socket.gethostname()}:{proc.pid}", lease_seconds=600)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "done 1, skipped 0 (already done), failed 0, 2 new directions" in res.output
    assert "still leased" not in res.output
    with Catalog.open(db) as cat:
        assert cat.get_job(job.id).status == "done" and cat.get_job(job.id).attempts == 2


def test_an_images_masks_share_one_inversion(tiny_model, faces, tmp_path, monkeypatch):
    """A claimed batch brings each image to its edit time once, whatever number of its masks the
    batch holds: 3 faces x 2 masks in batches of 4 invert 2 images, then 1 (not 4 and 2), and every
    job's directions are the same as with one job per batch."""
    from locobank import core
    from locobank.harvest import HarvestParams, plan, work
    from locobank.models import load_model

    model = load_model(tiny_model, device="cpu")
    params = HarvestParams(rank=2, null_rank=2, steps=3, iters=4, t_edit=0.5)
    pairs = discover(faces, labels={"mouth", "hair"})
    inverted, invert = [], core.invert
    monkeypatch.setattr(core, "invert", lambda m, x, *a, **k: inverted.append(len(x)) or invert(m, x, *a, **k))
    found = {}
    for batch in (4, 1):
        inverted.clear()
        with Catalog.open(f"sqlite:///{tmp_path / f'b{batch}.db'}", upgrade=True) as cat:
            run = plan(cat, model, pairs, params)
            assert work(cat, model, run.id, params, batch=batch).done == 6
            found[batch] = {(d.image_sha256, d.mask_label, d.rank_index): np.asarray(cat.load_vector(d.id)).ravel()
                            for d in cat.list_directions()}
        assert inverted == ([2, 1] if batch == 4 else [1] * 6)
    assert found[4].keys() == found[1].keys() and len(found[4]) == 12
    for k, v in found[4].items():
        assert abs(abs(float(v @ found[1][k])) - 1.0) < 1e-4  # unit vectors, the same up to sign
