"""Image-aware search (locobank.rank): previews on the user's image are the posterior mean of the
edited state, the ranking follows their combined score, and calibrated strengths reach their size
of change; through the library on the toy pixel model and a tiny latent model, and through
``locobank search --image``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from locobank import core
from locobank.catalog import Catalog
from locobank.clip import load_clip
from locobank.embed import embed_directions
from locobank.harvest import HarvestParams, discover, plan, work
from locobank.images import load_image, load_mask
from locobank.index import build_index, catalog_folder
from locobank.models import load_model, under
from locobank.paths import TOY_DDPM
from locobank.errors import ArgumentError, InputError
from locobank.rank import (BREAK_WEIGHT, CALIBRATION_TOL, STRENGTH_CAP, STRENGTH_FLOOR, calibrated_strengths, candidate_pool, change_size, rank_for_image,
                           rank_pool)
from locobank.search import name_directions, text_direction
from locobank.toyworld import write_dataset
from locobank_cli.main import cli
from tiny import save_tiny_sd, write_sd_inputs


def _fast(model) -> core.EditOptions:
    """The model's edit options with a shorter inversion and a smaller null basis, to keep tests fast."""
    return core.options_for(model, null_rank=8, steps=12)


def _index_beside(cat: Catalog, db_file: Path, clip_id: str) -> Path:
    """Build the index where every command finds it whatever LOCOBANK_HOME is: beside the catalog."""
    folder = catalog_folder(db_file.parent, cat.catalog_id)
    build_index(cat, clip_id, folder=folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def float32_previews():
    """The tests below compare previews with float32 computed densely: pin the previews' precision,
    whatever the machine's bfloat16 (:func:`test_previews_in_bfloat16` tests that path)."""
    from locobank.rank import preview

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(preview, "PREVIEW_PRECISION", "fp32")
        yield


@pytest.fixture(scope="module")
def pixel(tmp_path_factory) -> dict:
    """The toy DDPM's directions of one face's mouth, embedded with the toy CLIP and indexed."""
    root = tmp_path_factory.mktemp("rank-pixel")
    write_dataset(root / "faces", 1, 1_000_000)
    write_dataset(root / "unseen", 1, 1_010_000)
    db_file = root / "catalog.db"
    model = load_model(TOY_DDPM, device="cpu")
    clip = load_clip("toy", device="cpu")
    with Catalog.open(f"sqlite:///{db_file}", upgrade=True) as cat:
        params = HarvestParams.from_defaults(model.settings, rank=3, null_rank=8, steps=8, iters=5)
        work(cat, model, plan(cat, model, discover(root / "faces", labels={"mouth"}), params).id, params)
        embed_directions(cat, clip, n_probes=2, steps=8, device="cpu")
        name_directions(cat, clip)
        index = _index_beside(cat, db_file, clip.clip_id)
    face = root / "unseen" / "face_1010000.png"
    return {"db": f"sqlite:///{db_file}", "index": index, "clip": clip, "model": model, "face": face,
            "mask": root / "unseen" / "face_1010000_mouth.png"}


@pytest.fixture(scope="module")
def ranked_masked(pixel) -> list:
    """'smile' ranked for the unseen face with its mouth mask, at calibrated strengths."""
    with Catalog.open(pixel["db"]) as cat:
        return rank_for_image(cat, pixel["clip"], "smile", pixel["face"], mask=pixel["mask"], device="cpu",
                              index_folder=pixel["index"], options=_fast(pixel["model"]), order="score", refine=0)


def _state(model, face: Path, t: int, steps: int | None = None) -> torch.Tensor:
    """The face's state at timestep t, inverted on the grid an edit with :func:`_fast` uses (or in ``steps``)."""
    from locobank.loco import ddim

    x = load_image(face, model.resolution)[None]
    return core.invert_on(model, x, sorted(set(ddim.timesteps_to(t, steps or _fast(model).steps)) | {t}))


@pytest.mark.parametrize("cap", [None, 5])
def test_preview_is_the_posterior_mean_of_the_edited_state(pixel, cap, monkeypatch):
    """Without a mask, at a given strength: each preview is x0_hat(x_t + s λ v), computed densely here,
    x_t inverted in the edit's steps or PREVIEW_STEPS, the fewer."""
    from locobank.rank import preview

    if cap is not None:
        monkeypatch.setattr(preview, "PREVIEW_STEPS", cap)
    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
        ranked = rank_pool(pool, pixel["clip"], "smile", pixel["face"], strength=3.0, options=_fast(pool.model),
                           refine=0)
    model = pool.model
    by_id = {h.id: d for h, d in zip(pool.hits, pool.directions)}
    x_t = _state(model, pixel["face"], pool.directions[0].t_edit, cap)
    f = model.family.predictor(pool.directions[0].t_edit)
    for h in ranked:
        v = by_id[h.id].vector
        with torch.no_grad():
            want, base = f(x_t[0] + h.sign * 3.0 * v), f(x_t[0])
        assert h.strength == 3.0 and not h.calibrated
        torch.testing.assert_close(h.preview, want, atol=2e-5, rtol=0)
        torch.testing.assert_close(h.unedited, base, atol=2e-5, rtol=0)
        assert h.locality == 1.0  # no mask


def test_previews_in_bfloat16(pixel, monkeypatch):
    """precision "bf16" autocasts the previews' network passes: each preview lies within bfloat16's
    error of the float32 one, its change within 10 %; "auto" picks it only for a float32 pixel
    model on a device that computes bfloat16 natively; an unknown precision is refused."""
    from types import SimpleNamespace

    from locobank.errors import ArgumentError
    from locobank.rank import preview

    model = pixel["model"]
    assert preview.preview_dtype(model, "fp32") is None and preview.preview_dtype(model, "bf16") is torch.bfloat16
    for native, want in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(preview, "_native_bf16", lambda device, native=native: native)
        assert preview.preview_dtype(model, "auto") is want
    latent = SimpleNamespace(dtype=torch.float32, device="cpu", family=SimpleNamespace(bf16_previews=False))
    half = SimpleNamespace(dtype=torch.float16, device="cpu", family=model.family)
    assert preview.preview_dtype(latent, "auto") is None and preview.preview_dtype(half, "bf16") is None
    with pytest.raises(ArgumentError, match="preview precision"):
        preview.preview_dtype(model, "fp8")
    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
        runs = {p: {h.id: h for h in rank_pool(pool, pixel["clip"], "smile", pixel["face"], strength=3.0,
                                               options=_fast(pool.model), refine=0, precision=p)}
                for p in ("fp32", "bf16")}
    for i, h in runs["bf16"].items():
        f = runs["fp32"][i]
        assert 1e-4 < float((h.preview - f.preview).abs().max()) < 0.05  # rounded, not broken
        assert abs(h.change - f.change) < 0.1 * f.change
        # scores are not compared: a faint change's CLIP gain is within bfloat16's noise (docs/image_search.md)


def test_a_preview_in_several_steps_samples_the_edited_state_down_to_an_image(pixel):
    """--preview-steps K: each preview (and the unedited one) is K DDIM steps from x_t + s λ v to
    the image, as core.sample takes them; through the CLI the same ranking comes back as JSON."""
    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
        ranked = rank_pool(pool, pixel["clip"], "smile", pixel["face"], strength=3.0, options=_fast(pool.model),
                           preview_steps=3, refine=0)
    model, t = pool.model, pool.directions[0].t_edit
    by_id = {h.id: d for h, d in zip(pool.hits, pool.directions)}
    x_t = _state(model, pixel["face"], t)
    for h in ranked:
        want = core.sample(model, x_t + h.sign * 3.0 * by_id[h.id].vector, t, 3)[0]
        torch.testing.assert_close(h.preview, want, atol=2e-5, rtol=0)
        torch.testing.assert_close(h.unedited, core.sample(model, x_t, t, 3)[0], atol=2e-5, rtol=0)
    res = CliRunner().invoke(cli, ["search", "smile", "--image", str(pixel["face"]), "--strength", "3",
                                   "--preview-steps", "3", "--refine", "0", "--steps", "12", "--device", "cpu", "--json",
                                   "--db", pixel["db"]])
    assert res.exit_code == 0, res.output
    (entry,) = json.loads(res.output)
    assert [(h["id"], h["score"]) for h in entry["hits"]] == [(h.id, pytest.approx(h.score, abs=1e-5)) for h in ranked]
    with pytest.raises(ArgumentError):
        rank_pool(pool, pixel["clip"], "smile", pixel["face"], preview_steps=0)


@pytest.mark.parametrize("order", ["score", "verify"])
def test_the_first_hits_are_looked_at_again_in_refine_steps(pixel, order):
    """refine N: N hits (the text search's first and the first of the one-step ranking) are
    previewed again, sampled down in REFINE_STEPS DDIM steps from the same inverted state, and
    re-ordered among themselves by those previews; the rest keep their one-step previews and places
    (verify: behind any refined hit whose closer look still shows a gain, and ahead of one whose
    does not)."""
    from locobank.rank import REFINE_STEPS, VERIFY_FLOOR

    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
        args = (pool, pixel["clip"], "smile", pixel["face"])
        one = rank_pool(*args, strength=3.0, options=_fast(pool.model), order=order, refine=0)
        ranked = rank_pool(*args, strength=3.0, options=_fast(pool.model), order=order, refine=2)
        with pytest.raises(ArgumentError):
            rank_pool(*args, refine=-1)
    model, t = pool.model, pool.directions[0].t_edit
    by_id = {h.id: d for h, d in zip(pool.hits, pool.directions)}
    x_t = _state(model, pixel["face"], t)
    refined = [h for h in ranked if h.steps == REFINE_STEPS]
    text = [h.id for h in pool.hits]
    looked = {text[0], next(h.id for h in one if h.id != text[0])}
    assert {h.id for h in refined} == looked
    (rest,) = [h for h in ranked if h.steps == 1]
    (was,) = [h for h in one if h.id not in looked]
    assert rest.id == was.id and rest.score == pytest.approx(was.score, abs=1e-6)
    for h in refined:
        want = core.sample(model, x_t + h.sign * 3.0 * by_id[h.id].vector, t, REFINE_STEPS)[0]
        torch.testing.assert_close(h.preview, want, atol=2e-5, rtol=0)
        torch.testing.assert_close(h.unedited, core.sample(model, x_t, t, REFINE_STEPS)[0], atol=2e-5, rtol=0)
    if order == "score":
        assert ranked[:2] == sorted(refined, key=lambda h: -h.score) and ranked[2] is rest
    else:
        works = [h.score > VERIFY_FLOOR for h in ranked]
        assert works == sorted(works, reverse=True)
        for group in (refined, [rest]):  # within each look, the text order among hits that work alike
            ids = [h.id for h in ranked if h in group]
            assert sorted(ids, key=lambda i: (not {h.id: h.score > VERIFY_FLOOR for h in ranked}[i],
                                              text.index(i))) == ids


def test_masked_preview_is_of_the_relocalised_direction(pixel, ranked_masked):
    """With a mask, the candidates are re-localised as `apply --mask` does (their re-projection
    settled to the previews' own tolerance and stop), then previewed."""
    from locobank.rank.preview import PREVIEW_SETTLE, PREVIEW_TOL

    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
    model, t = pool.model, pool.directions[0].t_edit
    opts = _fast(model)
    x = load_image(pixel["face"], model.resolution)
    mask = load_mask(pixel["mask"], model.resolution)
    x_t = _state(model, pixel["face"], t)
    vectors, _, _ = core.relocalize(model, x_t, t, mask, torch.stack([d.vector for d in pool.directions]),
                                    null_rank=opts.null_rank, max_shift=opts.max_shift, seed=opts.seed, union=mask,
                                    image=x, sources=[d.source for d in pool.directions], tol=PREVIEW_TOL,
                                    settle=PREVIEW_SETTLE)
    by_id = {h.id: v for h, v in zip(pool.hits, vectors)}
    f = model.family.predictor(t)
    for h in ranked_masked:
        with torch.no_grad():
            want = f(x_t[0] + h.sign * h.strength * by_id[h.id])
        torch.testing.assert_close(h.preview, want, atol=2e-5, rtol=0)
        assert h.locality == pytest.approx(core.locality(h.preview - h.unedited, mask), abs=1e-6)


def test_ranking_is_by_the_combined_score(pixel, ranked_masked):
    """Best score first; each score is gain * locality - BREAK_WEIGHT * lost, with gain the
    directional CLIP change against the query's text direction."""
    clip = pixel["clip"]
    scores = [h.score for h in ranked_masked]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    q = torch.as_tensor(text_direction(clip, "smile"))
    for h in ranked_masked:
        e, b = clip.encode_images(torch.stack([h.preview, h.unedited]))
        d = e - b
        assert h.gain == pytest.approx(float(d @ q / d.norm()), abs=1e-4)
        assert h.lost == pytest.approx(max(0.0, 1 - float(e @ b)), abs=1e-4)
        assert h.score == pytest.approx(h.gain * h.locality - BREAK_WEIGHT * h.lost, abs=1e-6)
        assert 0 <= h.locality <= 1


def test_verify_order_keeps_the_text_order_of_the_hits_whose_previews_work(pixel, ranked_masked):
    """The default order: the text search's order, with every hit whose preview does not move the
    image towards the query (score at most VERIFY_FLOOR) behind those whose preview does."""
    from locobank.rank import VERIFY_FLOOR, ordered

    assert ordered([0.3, -0.1, 0.5, 0.0, 0.2], "verify") == [0, 2, 4, 1, 3]
    assert ordered([0.3, -0.1, 0.5, 0.0, 0.2], "score") == [2, 0, 4, 3, 1]
    with pytest.raises(ArgumentError):
        ordered([0.1], "best")
    with Catalog.open(pixel["db"]) as cat:
        verified = rank_for_image(cat, pixel["clip"], "smile", pixel["face"], mask=pixel["mask"], device="cpu",
                                  index_folder=pixel["index"], options=_fast(pixel["model"]), refine=0)
        text = [h.id for h in candidate_pool(cat, pixel["clip"], "smile", index_folder=pixel["index"]).hits]
    score = {h.id: h.score for h in ranked_masked}
    assert [h.id for h in verified] == ([i for i in text if score[i] > VERIFY_FLOOR]
                                        + [i for i in text if score[i] <= VERIFY_FLOOR])


def test_the_second_look_takes_the_text_first_hit_and_the_one_step_ranking_first():
    """The text search's first hit gets its closer look whatever its one-step preview said (a
    one-step preview can be wrong about it), then the one-step ranking's first hits, N in all."""
    from locobank.rank import second_look

    assert second_look([2, 0, 1, 3], 2) == [0, 2]
    assert second_look([0, 3, 1, 2], 2) == [0, 3]
    assert second_look([3, 1, 0, 2], 3) == [0, 1, 3]
    assert second_look([3, 1, 0, 2], 1) == [0]
    assert second_look([3, 1, 0, 2], 0) == []


def test_the_second_look_starts_from_the_posterior_means_the_first_computed(pixel, monkeypatch):
    """The second look's walks start where the one-step previews left off: their first DDIM step
    reuses the posterior means of the same states (unedited, and each hit at its one-step
    strength), so the network sees REFINE_STEPS - 1 passes of them, not REFINE_STEPS."""
    from locobank.rank import REFINE_STEPS

    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
    net, seen = pool.model.denoiser.net, []
    monkeypatch.setattr(pool.model.denoiser, "net", lambda x, t: seen.append(x.shape[0]) or net(x, t))
    rank_pool(pool, pixel["clip"], "smile", pixel["face"], strength=3.0, options=_fast(pool.model), refine=2)
    steps = _fast(pool.model).steps
    assert seen[: min(steps, 25)] == [1] * min(steps, 25)  # the inversion
    assert seen[min(steps, 25):] == [4] + [3] * (REFINE_STEPS - 1)  # unedited + 3 previews; unedited + 2, walked


def test_calibrated_strength_reaches_its_size_of_change(pixel):
    """Each calibrated strength changes the preview inside the mask by the target RMS, or sits at
    the cap when even the cap changes less, or at the floor when even the floor changes more."""
    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
        default = pool.model.strength_for("mouth")
        at_default = rank_pool(pool, pixel["clip"], "smile", pixel["face"], mask=pixel["mask"], strength=default,
                               options=_fast(pool.model))
        target = 1.5 * min(h.change for h in at_default)  # the faintest edit must be raised, within the cap
        ranked = rank_pool(pool, pixel["clip"], "smile", pixel["face"], mask=pixel["mask"], target=target,
                           options=_fast(pool.model))
    mask = load_mask(pixel["mask"], pool.model.resolution)
    reached = 0
    for h in ranked:
        assert h.calibrated and STRENGTH_FLOOR * default - 1e-3 <= h.strength <= STRENGTH_CAP * default + 1e-6
        assert h.change == pytest.approx(float(change_size((h.preview - h.unedited)[None], mask)[0]), rel=1e-4)
        if h.strength < STRENGTH_FLOOR * default + 1e-2:
            assert h.change > target * (1 - CALIBRATION_TOL)
        elif h.strength < STRENGTH_CAP * default - 1e-6:
            assert abs(h.change / target - 1) <= CALIBRATION_TOL
            reached += 1
        else:
            assert h.change < target * (1 + CALIBRATION_TOL)
    assert reached >= 1  # the test exercises the calibration, not only the cap


def test_a_change_already_within_the_tolerance_keeps_its_strength(pixel):
    """A candidate whose change at its default strength is within CALIBRATION_TOL of the target is
    not moved (nor previewed again): its strength stays the default."""
    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=3, index_folder=pixel["index"], device="cpu")
        default = pool.model.strength_for("mouth")
        args = (pool, pixel["clip"], "smile", pixel["face"])
        at_default = rank_pool(*args, mask=pixel["mask"], strength=default, options=_fast(pool.model), refine=0)
        near = at_default[0]
        ranked = rank_pool(*args, mask=pixel["mask"], target=near.change * (1 + CALIBRATION_TOL / 2),
                           options=_fast(pool.model), refine=0)
    (same,) = [h for h in ranked if h.id == near.id]
    assert same.calibrated and same.strength == pytest.approx(default, abs=1e-9)
    assert same.change == pytest.approx(near.change, rel=1e-5)


def test_calibrated_strengths_scale_from_where_the_change_was_measured():
    """Linear from the strength each change was measured at (the defaults, or a coarser look's
    strengths: the second look starts from the one-step ones), within the defaults' floor and cap."""
    d = torch.tensor([8.0, 8.0, 8.0, 8.0], dtype=torch.float64)
    c = torch.tensor([0.3, 0.01, 0.1, 0.2], dtype=torch.float64)
    assert calibrated_strengths(d, c, 0.15).tolist() == pytest.approx([8 * STRENGTH_FLOOR, 8 * STRENGTH_CAP, 12,
                                                                       8 * STRENGTH_FLOOR])
    at = torch.tensor([8.0, 16.0, 12.0, 20.0], dtype=torch.float64)
    assert calibrated_strengths(d, c, 0.15, at=at).tolist() == pytest.approx([8 * STRENGTH_FLOOR, 8 * STRENGTH_CAP,
                                                                               18, 15])


def test_latent_model_ranks_under_a_prompt(tmp_path):
    """A text-to-image model's candidates are previewed under the prompt given, through its family."""
    model_dir = save_tiny_sd(tmp_path / "sd")
    write_sd_inputs(tmp_path)
    (tmp_path / "manifest.jsonl").write_text(json.dumps(
        {"image": "a.png", "prompt": "a smiling face", "masks": {"mouth": "mouth.png"}}))
    db_file = tmp_path / "catalog.db"
    clip = load_clip("toy", device="cpu")
    model = load_model(model_dir, device="cpu")
    with Catalog.open(f"sqlite:///{db_file}", upgrade=True) as cat:
        params = HarvestParams(rank=2, null_rank=1, t_edit=0.3, steps=4, iters=3)
        work(cat, model, plan(cat, model, discover(tmp_path / "manifest.jsonl"), params).id, params)
        embed_directions(cat, clip, n_probes=1, steps=4, device="cpu")
        index = _index_beside(cat, db_file, clip.clip_id)
        pool = candidate_pool(cat, clip, "smile", pool=2, index_folder=index, prompt="a face", device="cpu")
        ranked = rank_pool(pool, clip, "smile", tmp_path / "b.png", mask=tmp_path / "mouth.png", strength=2.0,
                           options=_fast(pool.model), order="score", refine=0)
    assert pool.model.family.cond.prompt == "a face"
    assert len(ranked) == 2 and ranked[0].score >= ranked[1].score
    t = pool.directions[0].t_edit
    bare = under(model, {"prompt": "a face"})
    x_t = _state(bare, tmp_path / "b.png", t)
    with torch.no_grad():
        base = bare.family.predictor(t)(x_t[0])
    torch.testing.assert_close(ranked[0].unedited, base, atol=1e-4, rtol=0)
    assert all(h.preview.shape == (3, 16, 16) and not torch.equal(h.preview, h.unedited) for h in ranked)


def test_cli_search_image_json_and_sheet(pixel, tmp_path):
    res = CliRunner().invoke(cli, ["search", "smile", "--image", str(pixel["face"]), "--mask", str(pixel["mask"]),
                                   "--json", "--sheet", str(tmp_path / "s.png"), "--device", "cpu", "--steps", "12",
                                   "--db", pixel["db"]])
    assert res.exit_code == 0, res.output
    (entry,) = json.loads(res.output)
    assert entry["image"] == str(pixel["face"])
    hits = entry["hits"]
    assert len(hits) == 3
    for h in hits:
        assert {"id", "sign", "predicted_gain", "locality", "strength", "score", "apply", "preview_steps"} <= set(h)
        assert h["strength"] * h["sign"] > 0 and 0 <= h["locality"] <= 1
        assert h["apply"].startswith(f"locobank apply {h['id']}:{h['strength']:+.4g} {pixel['face']} "
                                     f"--mask {pixel['mask']} ")
    works = [h["score"] > 0 for h in hits]  # the default order: hits whose previews work first
    assert works == sorted(works, reverse=True)
    assert sorted(h["preview_steps"] for h in hits) == [1, 5, 5]  # the first 2 looked at again (REFINE_TOP)
    sheet = Image.open(tmp_path / "s.png")
    assert sheet.size[1] > 3 * 128  # a row of tiles per hit


def test_cli_search_image_table_says_which_hits_were_looked_at_again(pixel):
    """The table's steps column: the first --refine hits' previews took 5 DDIM steps, the rest one."""
    res = CliRunner().invoke(cli, ["search", "smile", "--image", str(pixel["face"]), "--refine", "1", "--device", "cpu",
                                   "--steps", "12", "--db", pixel["db"]])
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.output.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 3 and sorted(int(r[5]) for r in rows) == [1, 1, 5]
    assert "the first hits were looked at again in more steps (--refine)" in res.output


def test_refine_help_says_the_librarys_defaults():
    """--refine's help names REFINE_TOP and REFINE_STEPS, and search's the calibration's target
    RANK_TARGET, as literals (the CLI starts without torch): they must say what the library does."""
    from locobank.rank import RANK_TARGET, REFINE_STEPS, REFINE_TOP

    for cmd in (["search", "--help"], ["apply", "--help"]):
        text = " ".join(CliRunner().invoke(cli, cmd).output.split())
        assert f"{REFINE_STEPS} DDIM steps" in text and f"no second look [{REFINE_TOP}]" in text
    assert f"RMS pixel change of {RANK_TARGET:.2f}" in " ".join(CliRunner().invoke(cli, ["search", "--help"]).output.split())


def test_cli_search_image_refuses_what_does_not_fit(pixel, tmp_path):
    run = CliRunner().invoke
    no_file = run(cli, ["search", "smile", "--image", str(pixel["face"]), "--mask", "mouth", "--db", pixel["db"]])
    assert no_file.exit_code == 2 and "--mask" in no_file.output
    prompt_alone = run(cli, ["search", "smile", "--prompt", "a face", "--db", pixel["db"]])
    assert prompt_alone.exit_code == 2 and "--prompt goes with --image" in prompt_alone.output
    walk_alone = run(cli, ["search", "smile", "--preview-steps", "3", "--db", pixel["db"]])
    assert walk_alone.exit_code == 2 and "--preview-steps goes with --image" in walk_alone.output
    no_model = run(cli, ["search", "smile", "--image", str(pixel["face"]), "--model", "2", "--device", "cpu",
                         "--db", pixel["db"]])
    assert no_model.exit_code == 1 and "no direction of the model '2' matches 'smile'" in no_model.output
    refine_alone = run(cli, ["search", "smile", "--refine", "2", "--db", pixel["db"]])
    assert refine_alone.exit_code == 2 and "--refine goes with --image" in refine_alone.output
    precision_alone = run(cli, ["search", "smile", "--preview-precision", "bf16", "--db", pixel["db"]])
    assert precision_alone.exit_code == 2 and "--preview-precision goes with --image" in precision_alone.output
    unknown = run(cli, ["search", "smile", "--image", str(pixel["face"]), "--preview-precision", "fp8", "--db", pixel["db"]])
    assert unknown.exit_code == 2 and "fp8" in unknown.output
    blind = run(cli, ["apply", "--query", "smile", "--blind", "--preview-precision", "fp32", str(pixel["face"]),
                      "--out", str(tmp_path / "o.png"), "--db", pixel["db"]])
    assert blind.exit_code == 2 and "--preview-precision" in blind.output
    pixel_prompt = run(cli, ["search", "smile", "--image", str(pixel["face"]), "--prompt", "a face",
                             "--device", "cpu", "--db", pixel["db"]])
    assert pixel_prompt.exit_code == 1 and "takes no prompt" in pixel_prompt.output


def test_cli_search_image_refuses_a_mask_count_that_fits_no_image(pixel):
    m = str(pixel["mask"])
    res = CliRunner().invoke(cli, ["search", "smile", "--image", str(pixel["face"]), "--image", str(pixel["face"]),
                                   "--image", str(pixel["face"]), "--mask", m, "--mask", m, "--db", pixel["db"]])
    assert res.exit_code == 2 and "--mask must be one for every image, or one per image: 2 masks for 3 images" in res.output


def _ranking(pixel, face: Path, *extra: str) -> list[dict]:
    res = CliRunner().invoke(cli, ["search", "smile", "--image", str(face), "--json", "--device", "cpu",
                                   "--steps", "12", "--db", pixel["db"], *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)[0]["hits"]


def test_cli_apply_query_applies_each_images_top_ranked_hit_at_its_strength(pixel, tmp_path):
    """apply --query ranks the hits on each image as search --image does and applies each image's
    top one at its calibrated strength: the same file as applying that id at that strength."""
    run = CliRunner().invoke
    faces = [pixel["face"], pixel["face"].parent / "face_1010000_copy.png"]
    Image.open(pixel["face"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(faces[1])
    common = ["--device", "cpu", "--steps", "12", "--db", pixel["db"]]
    res = run(cli, ["apply", "--query", "smile", *map(str, faces), "--out", str(tmp_path / "q"), *common])
    assert res.exit_code == 0, res.output
    assert "each image's hits ranked by their previews on it" in res.output
    for face in faces:
        top = _ranking(pixel, face)[0]
        assert f"{face.name}: ranked 3 hits by their previews on it: #{top['id']} " in res.output
        one = run(cli, ["apply", f"{top['id']}:{top['strength']}", str(face), "--out", str(tmp_path / "one.png"),
                        *common])
        assert one.exit_code == 0, one.output
        assert np.array_equal(np.asarray(Image.open(tmp_path / "q" / f"{face.stem}.png")),
                              np.asarray(Image.open(tmp_path / "one.png")))
    blind = run(cli, ["apply", "--query", "smile", "--blind", str(faces[0]), "--out", str(tmp_path / "b.png"), *common])
    assert blind.exit_code == 0 and "query 'smile': direction" in blind.output, blind.output
    given = run(cli, ["apply", "--query", "smile", "--strength", "2", "--candidates", "2", str(faces[0]),
                      "--out", str(tmp_path / "g.png"), *common])
    assert given.exit_code == 0, given.output
    assert given.output.count("(as given)") == 2 and "kept per image: #" in given.output
    too_few = run(cli, ["apply", "--query", "smile", "--candidates", "3", "--pool", "2", str(faces[0]),
                        "--out", str(tmp_path / "x.png"), *common])
    assert too_few.exit_code == 2 and "make --pool at least as large" in too_few.output, too_few.output
    walked = run(cli, ["apply", "--query", "smile", "--preview-steps", "3", str(faces[0]), "--out",
                       str(tmp_path / "w.png"), *common])  # ranked and calibrated on 3-step previews, as search's
    assert walked.exit_code == 0, walked.output
    top = _ranking(pixel, faces[0], "--preview-steps", "3")[0]
    one = run(cli, ["apply", f"{top['id']}:{top['strength']}", str(faces[0]), "--out", str(tmp_path / "one.png"),
                    *common])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "w.png")), np.asarray(Image.open(tmp_path / "one.png")))
    unranked = run(cli, ["apply", "--query", "smile", "--blind", "--preview-steps", "3", str(faces[0]),
                         "--out", str(tmp_path / "u.png"), *common])
    assert unranked.exit_code == 2 and "--preview-steps (at least 1) is for a query" in unranked.output, unranked.output
    blind_refine = run(cli, ["apply", "--query", "smile", "--blind", "--refine", "2", str(faces[0]),
                             "--out", str(tmp_path / "u.png"), *common])
    assert blind_refine.exit_code == 2 and "--refine (0 or more) is for a query" in blind_refine.output


@pytest.mark.slow
def test_cli_apply_query_with_a_mask_pattern_ranks_each_image_on_its_own_mask(pixel, tmp_path):
    """apply --query over several images with --mask 'DIR/{stem}_mouth.png': each image ranked and
    edited on its own mask, the same file as the query on that image alone with its mask."""
    run = CliRunner().invoke
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(pixel["face"]).save(folder / "a.png")
    Image.open(pixel["mask"]).save(folder / "a_mouth.png")
    Image.open(pixel["face"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "b.png")
    Image.open(pixel["mask"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "b_mouth.png")
    common = ["--device", "cpu", "--steps", "8", "--refine", "0", "--db", pixel["db"]]
    res = run(cli, ["apply", "--query", "smile", str(folder / "a.png"), str(folder / "b.png"), "--mask",
                    str(folder / "{stem}_mouth.png"), "--out", str(tmp_path / "q"), *common])
    assert res.exit_code == 0, res.output
    for name in ("a", "b"):
        one = run(cli, ["apply", "--query", "smile", str(folder / f"{name}.png"), "--mask",
                        str(folder / f"{name}_mouth.png"), "--out", str(tmp_path / f"{name}.png"), *common])
        assert one.exit_code == 0, one.output
        assert np.array_equal(np.asarray(Image.open(tmp_path / "q" / f"{name}.png")),
                              np.asarray(Image.open(tmp_path / f"{name}.png")))


def test_cli_apply_query_with_a_mask_edits_from_its_rankings_inversion(pixel, tmp_path, monkeypatch):
    """apply --query --mask inverts the image once: the edit (or with --candidates N, the full
    edits) starts from the state its ranking inverted on the same grid, and the file is the same
    as applying the top hit with the mask (as choosing among the full edits that invert it again)."""
    from locobank.loco import ddim

    run = CliRunner().invoke
    common = ["--device", "cpu", "--steps", "8", "--refine", "0", "--db", pixel["db"]]
    masked = ["--mask", str(pixel["mask"])]
    found = run(cli, ["search", "smile", "--image", str(pixel["face"]), "--json", *masked, *common])
    assert found.exit_code == 0, found.output
    top = json.loads(found.output)[0]["hits"][0]
    inversions = []
    real = ddim.invert
    monkeypatch.setattr(ddim, "invert", lambda *a, **k: inversions.append(k.get("grid")) or real(*a, **k))
    res = run(cli, ["apply", "--query", "smile", str(pixel["face"]), *masked, "--out", str(tmp_path / "q.png"),
                    *common])
    assert res.exit_code == 0, res.output
    assert f"ranked 3 hits by their previews on it: #{top['id']} " in res.output
    assert len(inversions) == 1, inversions  # the ranking's; before, the edit inverted the image again
    one = run(cli, ["apply", f"{top['id']}:{top['strength']}", str(pixel["face"]), *masked,
                    "--out", str(tmp_path / "one.png"), *common])
    assert one.exit_code == 0, one.output
    assert inversions[1] == inversions[0]  # the plain apply inverts itself, on the same grid
    assert np.array_equal(np.asarray(Image.open(tmp_path / "q.png")), np.asarray(Image.open(tmp_path / "one.png")))
    del inversions[:]
    best = ["apply", "--query", "smile", str(pixel["face"]), *masked, "--candidates", "2", *common]
    shared = run(cli, [*best, "--out", str(tmp_path / "b.png")])  # the full edits start from it too
    assert shared.exit_code == 0 and "kept per image: #" in shared.output, shared.output
    assert len(inversions) == 1, inversions
    monkeypatch.setattr("locobank.apply.run._ranked_inversion", lambda req, cands: None)  # the path before
    alone = run(cli, [*best, "--out", str(tmp_path / "b0.png")])
    assert alone.exit_code == 0 and len(inversions) == 3, inversions
    a, b = (np.asarray(Image.open(tmp_path / f), dtype=np.int16) for f in ("b.png", "b0.png"))
    assert np.abs(a - b).max() <= 1  # the same edit to rounding (bitwise in a fresh process; here, after other calls, within a level)


def test_edit_masked_starts_from_given_states_only_on_its_own_grid(pixel):
    """core.edit_masked uses an image's given inversion when it lies on the edit's grid at its time
    (the same result as inverting), and inverts the image itself when the grid differs."""
    from locobank.loco import ddim

    m = pixel["model"]
    opts = _fast(m)
    x = load_image(pixel["face"], m.resolution)[None]
    mask = load_mask(pixel["mask"], m.resolution)
    t = core.to_timestep(m, m.settings.t_edit)
    v = torch.randn(1, *m.family.state_shape, generator=torch.Generator().manual_seed(0))
    direction = core.Direction(v[0] / v.norm(), t, m.fingerprint)
    grid = sorted(set(ddim.timesteps_to(t, opts.steps)) | {t})
    x_t = core.invert_on(m, x, grid)
    plain = core.edit_masked(m, x, [(direction, 2.0)], [mask], options=opts)[0]
    given = core.edit_masked(m, x, [(direction, 2.0)], [mask], options=opts, at=[core.Inverted(grid, {t: x_t})])[0]
    # the same state; the images to rounding (a process's first Jacobian products time the J v modes)
    assert torch.equal(given.x_t, plain.x_t) and torch.allclose(given.images, plain.images, atol=1e-5)
    wrong = core.edit_masked(m, x, [(direction, 2.0)], [mask], options=opts,
                             at=[core.Inverted(grid[1:], {t: torch.zeros_like(x_t)})])[0]  # another grid: not used
    assert torch.equal(wrong.x_t, plain.x_t) and torch.allclose(wrong.images, plain.images, atol=1e-5)
    with pytest.raises(InputError, match="one inverted state"):
        core.edit_masked(m, x, [(direction, 2.0)], [mask], options=opts, at=[None, None])


def test_toy_aware_evaluation_compares_each_faces_ranked_hit_with_the_blind_one(pixel):
    """The toy world's image-aware figures: per face, the blind top hit at its part's default
    strength and the face's own ranked top hit at its calibrated strength, each measured by the
    probe, its change inside the part mask and its locality."""
    from locobank.toyworld.data.faces import batch
    from locobank.toyworld.evaluation.aware import aware_row, spread

    seeds = [1_010_003, 1_010_004]
    with Catalog.open(pixel["db"]) as cat:
        row = aware_row(cat, pixel["clip"], pixel["model"], "smile", seeds, index_folder=pixel["index"], steps=12)
        first = rank_pool(candidate_pool(cat, pixel["clip"], "smile", index_folder=pixel["index"], device="cpu"),
                          pixel["clip"], "smile", torch.from_numpy(batch(seeds[:1]))[0],
                          options=core.options_for(pixel["model"], steps=12), order="score")[0]
        blind = candidate_pool(cat, pixel["clip"], "smile", pool=1, index_folder=pixel["index"], device="cpu")
    assert row.faces == seeds and len(row.aware.gains) == len(row.blind.gains) == 2
    assert row.aware.hits[0] == first.id and row.aware.strengths[0] == pytest.approx(first.signed_strength, abs=1e-4)
    assert row.blind.hits == [blind.hits[0].id] * 2
    assert row.blind.strengths == [pytest.approx(blind.hits[0].sign * blind.defaults[0])] * 2
    for way in (row.blind, row.aware):
        assert all(c > 0 for c in way.changes) and all(0 <= x <= 1 for x in way.localities)
        assert way.moved == sum(g > 0 for g in way.gains)
    assert spread([row], "aware") >= 0 and set(row.to_dict()) >= {"blind_moved", "score_moved"}


@pytest.mark.slow
def test_own_direction_is_the_images_own_and_the_best_previewed(pixel):
    """--own: the image's own LOCO directions in its mask at the hit's time (warm-started from the hit,
    the same subspace as from random vectors), of which the one whose preview scores best is applied."""
    from locobank.rank.own import choose_own, own_basis
    from locobank.rank.preview import posterior_images

    with Catalog.open(pixel["db"]) as cat:
        pool = candidate_pool(cat, pixel["clip"], "smile", pool=1, index_folder=pixel["index"], device="cpu")
    model, hit = pool.model, pool.directions[0]
    opts = _fast(model)
    x = load_image(pixel["face"], model.resolution)
    mask = load_mask(pixel["mask"], model.resolution)
    x_t = core.invert(model, x[None], hit.t_edit, opts.steps)  # as own_direction does (apply --own: the CLI test)
    warm, moved = own_basis(model, x[None], x_t, hit, mask)
    own = choose_own(model, pixel["clip"], "smile", x_t, warm, moved, hit, 4.0, mask, sign=pool.hits[0].sign)
    cold = core.find_directions(model, x_t, hit.t_edit, mask, rank=warm.shape[0],
                                constrained=model.settings.basis == "constrained").vectors
    overlap = torch.linalg.svdvals(warm.flatten(1).double() @ cold.flatten(1).double().T)
    assert overlap.min() > 0.999  # warm or cold, the same subspace (measured: 1 - 1e-6)
    v = own.direction.vector
    assert abs(float(v.norm()) - 1) < 1e-5 and own.direction.source is None and own.direction.t_edit == hit.t_edit
    sign = pool.hits[0].sign
    if own.is_hit:  # the hit itself, registered onto the mask, with its sign
        torch.testing.assert_close(v, sign * moved / moved.norm())
    else:  # one of the image's own directions
        assert float(torch.linalg.norm(warm.flatten(1) @ v.flatten())) == pytest.approx(1.0, abs=1e-4)
    with torch.no_grad():
        want = posterior_images(model, x_t, hit.t_edit, 4.0 * v[None])[0]
    torch.testing.assert_close(own.preview, want.cpu(), atol=2e-5, rtol=0)
    alone = choose_own(model, pixel["clip"], "smile", x_t, warm, moved, hit, 4.0, mask, with_hit=False)
    assert own.score >= alone.score - 1e-6 and not alone.is_hit  # the hit only competes: it never lowers the pick
    assert own.is_hit or torch.equal(alone.direction.vector, v)


@pytest.mark.slow
def test_apply_own_through_the_cli(pixel, tmp_path):
    args = ["apply", "--query", "smile", str(pixel["face"]), "--mask", str(pixel["mask"]), "--own", "--clip", "toy",
            "--steps", "8", "--pool", "2", "--spill-passes", "0", "--db", pixel["db"], "--out", str(tmp_path / "own.png")]
    res = CliRunner().invoke(cli, args, env={"LOCOBANK_HOME": str(tmp_path)})
    assert res.exit_code == 0, res.output
    assert ("the image's own direction in the mask, pointed to by #" in res.output or "itself (" in res.output)
    assert "made on this image's own mask (--own), so not registered again" in res.output
    assert "not registered (the mask it was harvested with" not in res.output
    assert (tmp_path / "own.png").exists()
    bare = CliRunner().invoke(cli, [a for a in args if a not in ("--mask", str(pixel["mask"]))])
    assert bare.exit_code == 2 and "own finds the image's own directions" in bare.output
