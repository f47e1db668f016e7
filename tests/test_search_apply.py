"""Effects, naming, search and apply on tiny random models: the whole path users take, fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from locobank_cli.main import cli
from locobank.catalog import Catalog
from locobank.clip import load_clip
from locobank.embed import embed_directions
from locobank.harvest import HarvestParams, discover, plan, work
from locobank.index import build_index
from locobank.models import load_model
from locobank.search import name_directions
from locobank.search import search, text_direction
from locobank.toyworld import write_dataset
from tiny import save_tiny_clip, save_tiny_pipeline

PARAMS = HarvestParams(rank=2, null_rank=2, t_edit=0.5, steps=3, iters=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    model_dir = save_tiny_pipeline(root / "tiny32", size=32)
    (model_dir / "locobank.json").write_text(json.dumps({"strength": 8.0, "strength_by_label": {"hair": 5.0}}))
    clip_dir = save_tiny_clip(root / "tinyclip")
    write_dataset(root / "faces", 3, 1_000_000)
    write_dataset(root / "unseen", 2, 1_010_000)
    db = f"sqlite:///{root / 'c.db'}"
    model = load_model(model_dir)
    clip = load_clip(str(clip_dir))
    with Catalog.open(db, upgrade=True) as cat:
        run = plan(cat, model, discover(root / "faces", labels={"mouth", "hair"}), PARAMS)
        work(cat, model, run.id, PARAMS)
        embed_directions(cat, clip, n_probes=2, steps=3)
        name_directions(cat, clip, extra=["purple hat"])
        build_index(cat, clip.clip_id)
    return {"root": root, "db": db, "model": model_dir, "clip": clip_dir, "clip_model": clip}


@pytest.fixture(autouse=True)
def _same_home(world, monkeypatch):
    """The index lives under LOCOBANK_HOME: keep the one the module fixture built into."""
    monkeypatch.setenv("LOCOBANK_HOME", str(world["root"] / "home"))


@pytest.fixture(scope="module", autouse=True)
def _module_home(tmp_path_factory):
    import os

    home = tmp_path_factory.getbasetemp() / "world0" / "home"
    old = os.environ.get("LOCOBANK_HOME")
    os.environ["LOCOBANK_HOME"] = str(home)
    yield
    if old is None:
        os.environ.pop("LOCOBANK_HOME", None)
    else:
        os.environ["LOCOBANK_HOME"] = old


@pytest.mark.slow
def test_every_direction_has_an_effect_a_preview_and_a_name(world):
    with Catalog.open(world["db"]) as cat:
        dirs = cat.list_directions()
        assert len(dirs) == 12
        ids, vecs = cat.effects_for(world["clip_model"].clip_id)
        assert sorted(ids.tolist()) == sorted(d.id for d in dirs)
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
        for d in dirs:
            png = cat.get_preview(d.id)
            assert png and Image.open(__import__("io").BytesIO(png)).size == (3 * 128, 128)
            assert d.label is not None and d.label_sign in (1, -1)
            eff = cat.effect_of(d.id, world["clip_model"].clip_id)
            assert -1.0 <= eff.consistency <= 1.0 and eff.n_images == 3


def test_preview_locality_is_measured_on_the_rendered_source_edit(world):
    """The locality on each card is the share of the rendered change inside the direction's mask."""
    import torch

    from locobank import core
    from locobank.images import load_image, load_mask
    from locobank.loco import ddim

    model = load_model(world["model"])
    with Catalog.open(world["db"]) as cat:
        d = cat.list_directions()[0]
        job = cat.get_job(d.job_id)
        strength = cat.effect_of(d.id, world["clip_model"].clip_id).strength
        x = load_image(Path(d.image_uri), 32)[None]
        xt = ddim.invert(model.denoiser, x, d.t_edit, 3)
        v = cat.load_vector(d.id).float()
        out = ddim.sample(model.denoiser, torch.cat([xt + strength * v, xt - strength * v, xt]), d.t_edit, 3)
        expected = core.locality(torch.cat([out[0] - out[2], out[1] - out[2]]), load_mask(Path(job.mask_uri), 32))
        assert cat.preview_locality(d.id) == pytest.approx(expected, abs=1e-4)
        locs = [cat.preview_locality(r.id) for r in cat.list_directions()]
        assert all(0.0 <= x <= 1.0 for x in locs) and len(set(locs)) > 1


def test_default_strength_follows_the_mask_label(world):
    from locobank.apply import DirectionSpec, prepare

    with Catalog.open(world["db"]) as cat:
        recs = cat.list_directions()
        by_label = {r.mask_label: r for r in recs}
        assert set(by_label) == {"mouth", "hair"}
        for r in recs:  # effects and previews were rendered at the label's strength
            assert cat.effect_of(r.id, world["clip_model"].clip_id).strength == {"hair": 5.0, "mouth": 8.0}[r.mask_label]
        prep = prepare(cat, [DirectionSpec(by_label["hair"].id), DirectionSpec(by_label["mouth"].id),
                             DirectionSpec(by_label["hair"].id, -2.0)])
        assert prep.strengths == [5.0, 8.0, -2.0]
        assert prepare(cat, [DirectionSpec(by_label["hair"].id)], default_strength=3.0).strengths == [3.0]
    model = load_model(world["model"])
    assert (model.strength_for("hair"), model.strength_for("eyes"), model.strength_for(None)) == (5.0, 8.0, 8.0)


def test_effect_vectors_are_deterministic(world):
    clip = world["clip_model"]
    with Catalog.open(world["db"]) as cat:
        ids, before = cat.effects_for(clip.clip_id)
        embed_directions(cat, clip, ids=[int(i) for i in ids[:3]], n_probes=2, steps=3)
        _, after = cat.effects_for(clip.clip_id)
    np.testing.assert_allclose(before, after, atol=1e-6)


def test_negated_query_returns_the_same_directions_with_opposite_signs(world):
    clip = world["clip_model"]
    with Catalog.open(world["db"]) as cat:
        fwd = search(cat, clip, "frown -> smile", k=5)
        back = search(cat, clip, "smile -> frown", k=5)
    assert [h.id for h in fwd] == [h.id for h in back]
    assert [h.sign for h in fwd] == [-h.sign for h in back]
    np.testing.assert_allclose([h.score for h in fwd], [h.score for h in back], rtol=1e-5)
    np.testing.assert_allclose(text_direction(clip, "frown -> smile"), -text_direction(clip, "smile -> frown"), atol=1e-6)


def test_search_cli_json_schema_and_filters(world, tmp_path):
    res = CliRunner().invoke(cli, ["search", "blond hair", "-k", "4", "--clip", str(world["clip"]), "--json",
                                   "--db", world["db"], "--sheet", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    assert 1 <= len(hits) <= 4
    for h in hits:
        assert set(h) == {"id", "score", "match", "transfer", "sign", "strength", "label", "label_sign", "mask_label",
                          "model_id", "fingerprint", "singular_value", "t_edit", "condition", "unit", "limit", "apply"}
        assert h["unit"] > 0 and h["limit"] > 0  # the card's strength scale, measured when indexed
        assert h["sign"] in (1, -1) and isinstance(h["score"], float)
        # the strength carries the sign that does the edit, and the command is ready to run
        assert h["strength"] * h["sign"] > 0 and h["apply"].startswith(f"locobank apply {h['id']}:{h['strength']:+g} ")
        assert isinstance(h["transfer"], float) and -1 <= h["transfer"] <= 1
        assert h["match"] <= h["score"] + 1e-6
    assert [h["match"] for h in hits] == sorted((h["match"] for h in hits), reverse=True)
    assert (tmp_path / "s.png").exists()
    text = CliRunner().invoke(cli, ["search", "blond hair", "-k", "1", "--clip", str(world["clip"]), "--db", world["db"]])
    assert f"{hits[0]['unit']:6.3g}  {hits[0]['limit']:6.3g}  locobank apply" in text.output
    only_mouth = json.loads(CliRunner().invoke(cli, ["search", "smile", "--clip", str(world["clip"]), "--json",
                                                     "--mask", "mouth", "--db", world["db"]]).output)
    assert only_mouth and {h["mask_label"] for h in only_mouth} == {"mouth"}


def test_list_by_label(world):
    with Catalog.open(world["db"]) as cat:
        some = cat.list_directions()[0]
    res = CliRunner().invoke(cli, ["list", "--label", some.label, "--json", "--db", world["db"]])
    assert res.exit_code == 0
    assert some.id in {d["id"] for d in json.loads(res.output)}


def _apply(world, *args):
    return CliRunner().invoke(cli, ["apply", *args, "--db", world["db"]])


@pytest.mark.slow
def test_apply_writes_what_it_promises_and_is_seeded(world, tmp_path):
    unseen = sorted(p for p in (world["root"] / "unseen").glob("face_*.png") if p.stem.count("_") == 1)
    a = _apply(world, "1:3", str(unseen[0]), "--out", str(tmp_path / "a.png"), "--steps", "3", "--seed", "5")
    b = _apply(world, "1:3", str(unseen[0]), "--out", str(tmp_path / "b.png"), "--steps", "3", "--seed", "5")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert Image.open(tmp_path / "a.png").size == (32, 32)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    many = _apply(world, "1:3", "2:-2", str(world["root"] / "unseen"), "--out", str(tmp_path / "many"), "--steps", "3",
                  "--orthogonalize")
    assert many.exit_code == 0, many.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(p.name for p in unseen)
    sweep = _apply(world, "1", str(unseen[0]), "--sweep", "-4,0,4", "--out", str(tmp_path / "sw.png"), "--steps", "3")
    assert sweep.exit_code == 0, sweep.output
    assert Image.open(tmp_path / "sw.png").size == (96, 32)
    masked = _apply(world, "1:3", str(unseen[0]), "--mask", str(unseen[0]).replace(".png", "_mouth.png"),
                    "--out", str(tmp_path / "m.png"), "--steps", "3")
    assert masked.exit_code == 0, masked.output
    assert "re-localised on the mask: moved #1 by (" in masked.output  # registered onto this face's mouth
    assert "(height, width); then re-projected, 2 spill passes" in masked.output
    bare = _apply(world, "1:3", str(unseen[0]), "--mask", str(unseen[0]).replace(".png", "_mouth.png"),
                  "--out", str(tmp_path / "m0.png"), "--steps", "3", "--spill-passes", "0")
    assert bare.exit_code == 0 and bare.output.rstrip().endswith("then re-projected"), bare.output
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "m0.png")), np.asarray(Image.open(tmp_path / "m.png")))
    unreg = _apply(world, "1:3", str(unseen[0]), "--mask", str(unseen[0]).replace(".png", "_mouth.png"),
                   "--out", str(tmp_path / "m00.png"), "--steps", "3", "--spill-passes", "0", "--no-register")
    assert unreg.exit_code == 0 and unreg.output.rstrip().endswith("re-localised on the mask: re-projected"), unreg.output
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "m00.png")), np.asarray(Image.open(tmp_path / "m0.png")))
    mouth, hair = (str(unseen[0]).replace(".png", f"_{part}.png") for part in ("mouth", "hair"))
    two = _apply(world, "1:3", "2:3", str(unseen[0]), "--mask", mouth, "--mask", hair, "--out", str(tmp_path / "m2.png"),
                 "--steps", "3", "--max-shift", "1")
    assert two.exit_code == 0, two.output
    assert "re-localised on the mask" in two.output
    msweep = _apply(world, "1", str(unseen[0]), "--sweep", "-4,0,4", "--mask", mouth, "--out", str(tmp_path / "ms.png"),
                    "--steps", "3")
    assert msweep.exit_code == 0, msweep.output
    assert Image.open(tmp_path / "ms.png").size == (96, 32)
    moved = masked.output[masked.output.index("re-localised on the mask: moved"):].splitlines()[0]
    assert moved in msweep.output  # the sweep registers #1 on this face as apply does
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "ms.png")), np.asarray(Image.open(tmp_path / "sw.png")))
    q = _apply(world, "--blind", "--query", "smile", "--clip", str(world["clip"]), str(unseen[0]), "--out", str(tmp_path / "q.png"),
               "--steps", "3")
    assert q.exit_code == 0 and "query 'smile': direction" in q.output


@pytest.mark.slow
def test_apply_with_a_mask_pattern_edits_each_image_on_its_own_mask(world, tmp_path):
    """``--mask 'DIR/{stem}_mouth.png'`` gives each image of a folder its own mask; the folder is
    edited together and each file comes out as that image edited alone with its mask (to one grey
    level: batched convolutions round differently); a sweep with a pattern runs image by image."""
    unseen = sorted(p for p in (world["root"] / "unseen").glob("face_*.png") if p.stem.count("_") == 1)
    pattern = str(world["root"] / "unseen" / "{stem}_mouth.png")
    many = _apply(world, "1:3", str(world["root"] / "unseen"), "--mask", pattern, "--out", str(tmp_path / "many"),
                  "--steps", "3")
    assert many.exit_code == 0, many.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(p.name for p in unseen)
    assert "re-localised on the mask" in many.output
    for img in unseen:
        one = _apply(world, "1:3", str(img), "--mask", str(img).replace(".png", "_mouth.png"),
                     "--out", str(tmp_path / f"one_{img.name}"), "--steps", "3")
        assert one.exit_code == 0, one.output
        a = np.asarray(Image.open(tmp_path / "many" / img.name), dtype=int)
        b = np.asarray(Image.open(tmp_path / f"one_{img.name}"), dtype=int)
        assert np.abs(a - b).max() <= 1
    sweep = _apply(world, "1", str(world["root"] / "unseen"), "--sweep", "-4,4", "--mask", pattern,
                   "--out", str(tmp_path / "sweeps"), "--steps", "3")
    assert sweep.exit_code == 0, sweep.output
    assert sorted(p.name for p in (tmp_path / "sweeps").iterdir()) == sorted(f"{p.stem}_sweep.png" for p in unseen)


@pytest.mark.slow
def test_best_of_keeps_each_images_edit_that_clip_sees_furthest_along_the_text(world):
    """apply_best_of against its definition: every candidate applied on its own (masked too), and
    per image the edit with the largest CLIP(edited) . text kept, with its moves. Plain it is the
    same computation; with a mask the candidates share one re-projection, so the edits agree
    to its tolerance."""
    import torch

    from locobank.apply import DirectionSpec, Prepared, apply_best_of, apply_to_images, choose, prepare
    from locobank.core import REPROJECT_TOL

    clip = world["clip_model"]
    faces = [p for d in ("unseen", "faces") for p in sorted((world["root"] / d).glob("face_*.png"))
             if p.stem.count("_") == 1][:2]
    with Catalog.open(world["db"]) as cat:
        prep = prepare(cat, [DirectionSpec(r.id) for r in cat.list_directions()[:3]])
    cands = [Prepared(prep.model, [d], [s]) for d in prep.directions for s in (6.0, -6.0)]
    text = torch.from_numpy(text_direction(clip, "blond hair"))
    steps3 = prep.model.settings.edit_options(steps=3)
    plain = apply_to_images(Prepared(prep.model, prep.directions[:1], [0.0]), faces, options=steps3)  # unedited
    for options in ({"options": steps3},
                    {"mask": Path(str(faces[0]).replace(".png", "_hair.png")), "options": steps3.but(spill_passes=1)}):
        masked = "mask" in options
        moves = [[] for _ in cands]
        alone = [torch.stack(apply_to_images(c, faces, batch=2, shifts=m, **options))
                 for c, m in zip(cands, moves)]
        emb = torch.stack([clip.encode_images(o) for o in alone])  # (candidates, images, dim)
        expected = (emb @ text).argmax(0).tolist()
        got_moves: list = []
        edited, picks = apply_best_of(cands, clip, text, faces, batch=2, shifts=got_moves, **options)
        assert picks == expected == choose(alone, clip, text)
        for i, (img, j) in enumerate(zip(edited, picks)):
            if masked:  # the candidates share one re-projection: the same edit to its tolerance
                change = alone[j][i] - plain[i]
                assert float((img - alone[j][i]).norm() / change.norm()) < 5 * REPROJECT_TOL
            else:
                assert torch.equal(img, alone[j][i])
        assert got_moves == ([moves[j][i] for i, j in enumerate(picks)] if masked else [])
        for j in (1, 4):  # aim the text at candidate j's own edit of image 0: nothing beats it there
            assert choose(alone, clip, emb[j, 0])[0] == j
            assert apply_best_of(cands, clip, emb[j, 0], faces[:1], **options)[1] == [j]


@pytest.mark.slow
def test_apply_query_with_candidates_applies_each_images_pick(world, tmp_path):
    unseen = sorted(p for p in (world["root"] / "unseen").glob("face_*.png") if p.stem.count("_") == 1)
    res = _apply(world, "--blind", "--query", "smile", "--candidates", "3", "--clip", str(world["clip"]), str(unseen[0]),
                 "--out", str(tmp_path / "p.png"), "--steps", "3")
    assert res.exit_code == 0, res.output
    assert "query 'smile': 3 candidates: #" in res.output and "kept per image: #" in res.output
    chosen = int(res.output.split("kept per image: #")[1].split()[0])
    listed = res.output.split("candidates: ")[1].splitlines()[0]
    sign = listed.split(f"#{chosen} (")[1][0]
    with Catalog.open(world["db"]) as cat:
        strength = load_model(world["model"]).strength_for(cat.get_direction(chosen).mask_label)
    same = _apply(world, f"{chosen}:{'-' if sign == '-' else ''}{strength}", str(unseen[0]),
                  "--out", str(tmp_path / "same.png"), "--steps", "3")
    assert same.exit_code == 0, same.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p.png")), np.asarray(Image.open(tmp_path / "same.png")))
    many = _apply(world, "--blind", "--query", "smile", "--candidates", "2", "--clip", str(world["clip"]),
                  str(world["root"] / "unseen"), "--out", str(tmp_path / "many"), "--steps", "3",
                  "--batch", "1")  # an image's edit is then bit-exact with its own run
    assert many.exit_code == 0, many.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == sorted(p.name for p in unseen)
    counts = many.output.split("kept per image: ")[1].splitlines()[0]
    assert sum(int(part.split(" on ")[1].split()[0]) for part in counts.split(", ")) == len(unseen)
    for p in unseen:  # each file is that image's own pick
        one = _apply(world, "--blind", "--query", "smile", "--candidates", "2", "--clip", str(world["clip"]), str(p),
                     "--out", str(tmp_path / "one.png"), "--steps", "3")
        assert one.exit_code == 0, one.output
        assert np.array_equal(np.asarray(Image.open(tmp_path / "many" / p.name)), np.asarray(Image.open(tmp_path / "one.png")))
    swept = _apply(world, "--blind", "--query", "frown", "--candidates", "3", "--clip", str(world["clip"]), str(unseen[0]),
                   "--sweep", "0,4", "--out", str(tmp_path / "qs.png"), "--steps", "3")
    assert swept.exit_code == 0, swept.output
    kept = swept.output.split("kept per image: #")[1].split()
    ref = _apply(world, kept[0], str(unseen[0]), "--sweep", "0,-4" if kept[1] == "(-v)" else "0,4",
                 "--out", str(tmp_path / "ref.png"), "--steps", "3")  # the kept hit, swept with its sign
    assert ref.exit_code == 0, ref.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "qs.png")), np.asarray(Image.open(tmp_path / "ref.png")))
    signs = set()
    for q in ("frown -> smile", "smile -> frown"):  # the same top hit with opposite signs: one sweeps -v
        top = _apply(world, "--blind", "--query", q, "--clip", str(world["clip"]), str(unseen[0]), "--sweep", "0,4",
                     "--out", str(tmp_path / "ts.png"), "--steps", "3")
        assert top.exit_code == 0, top.output
        hid, sign = top.output.split("direction ")[1].split()[0], top.output.split("sign ")[1][0]
        signs.add(sign)
        ref = _apply(world, hid, str(unseen[0]), "--sweep", "0,-4" if sign == "-" else "0,4",
                     "--out", str(tmp_path / "ref.png"), "--steps", "3")
        assert np.array_equal(np.asarray(Image.open(tmp_path / "ts.png")), np.asarray(Image.open(tmp_path / "ref.png")))
    assert signs == {"+", "-"}
    alone = _apply(world, "1", str(unseen[0]), "--candidates", "2", "--out", str(tmp_path / "x.png"))
    assert alone.exit_code == 2 and "--candidates chooses among the hits of --query" in alone.output
    mouth = str(unseen[0]).replace(".png", "_mouth.png")
    two = _apply(world, "--blind", "--query", "smile", str(unseen[0]), "--mask", mouth, "--mask", mouth, "--out", str(tmp_path / "x.png"))
    assert two.exit_code == 2 and "give one --mask" in two.output


def test_apply_refusals_are_clear(world, tmp_path):
    img = next(p for p in (world["root"] / "unseen").glob("face_*.png") if p.stem.count("_") == 1)
    unknown = _apply(world, "999", str(img), "--out", str(tmp_path / "x.png"))
    assert unknown.exit_code == 1 and "999" in unknown.output
    bad = _apply(world, "1:strong", str(img), "--out", str(tmp_path / "x.png"))
    assert bad.exit_code == 1 and "not a number" in bad.output
    other = save_tiny_pipeline(tmp_path / "other", size=32, seed=3)
    wrong = _apply(world, "1", str(img), "--out", str(tmp_path / "x.png"), "--model", str(other))
    assert wrong.exit_code == 1 and "fingerprint" in wrong.output
    mouth = str(img).replace(".png", "_mouth.png")
    masks = _apply(world, "1", str(img), "--mask", mouth, "--mask", mouth, "--mask", mouth, "--out", str(tmp_path / "x.png"))
    assert masks.exit_code == 1 and "one per direction: 3 masks for 1 directions" in masks.output
    big = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(big)
    refused = _apply(world, "1", str(big), "--out", str(tmp_path / "x.png"))
    assert refused.exit_code == 1 and "--resize" in refused.output
    resized = _apply(world, "1", str(big), "--out", str(tmp_path / "x.png"), "--resize", "--steps", "3")
    assert resized.exit_code == 0, resized.output
    # Bad input is refused before the catalog, CLIP and the model load: no search runs here.
    folder = _apply(world, "--blind", "--query", "smile", "--clip", str(tmp_path / "no-clip"), str(img), "--out", str(tmp_path / "x"))
    assert folder.exit_code == 2 and "--out must end in .png" in folder.output and "query 'smile'" not in folder.output
    missing = _apply(world, "--blind", "--query", "smile", "--clip", str(tmp_path / "no-clip"), str(tmp_path / "nope.png"),
                     "--out", str(tmp_path / "x.png"))
    assert missing.exit_code != 0 and "nope.png" in missing.output and "direction" not in missing.output


@pytest.mark.slow
def test_quality_figures_follow_from_search_edits_and_probes(world):
    """The toy-world quality table is what search + core.edit + the pixel probes give."""
    import torch

    from locobank import core
    from locobank.apply import choose
    from locobank.images import to_uint8
    from locobank.toyworld import batch, face
    from locobank.toyworld.data.probes import attribute_score
    from locobank.toyworld.evaluation import quality as Q

    model = load_model(world["model"])
    clip = world["clip_model"]
    seeds = [1_010_000, 1_010_001]
    with Catalog.open(world["db"]) as cat:
        rows = Q.search_quality(cat, clip, model, seeds, queries=("smile", "blond hair"), strength=3.0, steps=3)
        assert [r.query for r in rows] == ["smile", "blond hair"] and [r.part for r in rows] == ["mouth", "hair"]
        for r in rows[:1]:  # one query recomputed in full (the second takes the same path)
            hits = search(cat, clip, r.query, k=5)
            assert (r.top_id, r.sign, r.top_mask) == (hits[0].id, hits[0].sign, hits[0].mask_label)
            assert r.precision_at_5 == sum(h.mask_label == r.part for h in hits) / 5
            v = cat.load_vector(r.top_id).float()
            x = torch.from_numpy(batch(seeds))
            t = hits[0].t_edit
            edited = core.edit(model, x, [(v, r.sign * 3.0)], t_edit=t, steps=3).images
            plain = core.edit(model, x, [(v, 0.0)], t_edit=t, steps=3).images
            gain = [attribute_score(r.query, to_uint8(e), face(s).attrs) - attribute_score(r.query, to_uint8(p), face(s).attrs)
                    for s, e, p in zip(seeds, edited, plain)]
            assert r.success == sum(g > 0 for g in gain) and r.tried == 2
            assert r.mean_gain == pytest.approx(float(np.mean(gain)), abs=1e-6)
            outs = [core.edit(model, x, [(cat.load_vector(h.id).float(), h.sign * 3.0)], t_edit=t, steps=3).images
                    for h in hits if h.t_edit == t]
            G = np.array([[attribute_score(r.query, to_uint8(e), face(s).attrs)
                           - attribute_score(r.query, to_uint8(p), face(s).attrs)
                           for s, e, p in zip(seeds, o, plain)] for o in outs])
            picks = choose(outs, clip, torch.from_numpy(text_direction(clip, r.query)))
            assert r.picked_success == sum(G[j, i] > 0 for i, j in enumerate(picks))
            assert r.picked_gain == pytest.approx(float(np.mean([G[j, i] for i, j in enumerate(picks)])), abs=1e-6)
            assert r.best_success == int((G.max(0) > 0).sum()) >= max(r.success, r.picked_success)
        rep = Q.apply_quality(cat, clip, model, seeds, strength=3.0, steps=3, null_rank=2,
                              locality_queries=("smile", "blond hair"), lacking_seed0=seeds[0])
    for q in ("smile", "blond hair"):
        s = rep.locality[q]
        assert 0.0 <= s["worst"] <= s["mean"] <= 1.0 and s["n"] == 2 and s["part"] == Q.part_for(q)
    assert rep.linearity["n"] == 2 and len(rep.linearity["probe_mean"]) == len(Q.SWEEP)
    li = rep.linearity["lacking"]  # the sweep again on faces that frown
    assert li["seeds"] == rep.locality["smile"]["lacking"]["seeds"] == Q.targets_for("smile", 2, seeds[0])
    curves = np.array(li["per_face"])
    assert curves.shape == (2, len(Q.SWEEP)) and all(face(s).attrs.smile < 0 for s in li["seeds"])
    assert li["monotone"] == int(Q.monotone(curves).sum())
    c = rep.composition
    assert c["ids"] == [rep.locality["smile"]["id"], rep.locality["blond hair"]["id"]]
    assert 0.0 <= c["locality_union_worst"] <= c["locality_union_mean"] <= 1.0
    assert set(c["per_query"]) == {"smile", "blond hair"}
    for q, v in c["per_query"].items():
        assert len(v["solo_gain"]) == len(v["both_gain"]) == 2
        assert v["solo_mean_gain"] == pytest.approx(np.mean(v["solo_gain"]), abs=1e-3)
        assert v["within_20pct"] == sum(abs(b / a - 1) <= 0.2 for a, b in zip(v["solo_gain"], v["both_gain"]) if a)
    la = c["lacking"]
    assert la["seeds"] == Q.targets_for(("smile", "blond hair"), 2, seeds[0]) and la["n"] == 2
    assert all(face(s).attrs.smile < 0 and face(s).attrs.hair != "blond" for s in la["seeds"])


def test_toy_quality_reuse_needs_a_run(tmp_path):
    r = CliRunner().invoke(cli, ["toy", "quality", "--reuse", "--out", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no run in" in r.output


@pytest.mark.slow
def test_cards_record_their_strength_scale_and_apply_reads_units(world, tmp_path):
    from locobank.embed import EffectRenderer, probe_images, source_mask
    from locobank.rank.linear import strength_range
    from locobank.ranges import measure_ranges

    with Catalog.open(world["db"]) as cat:
        dirs = cat.list_directions()
        ranges = cat.strength_ranges([d.id for d in dirs])
        assert sorted(ranges) == sorted(d.id for d in dirs) and all(u > 0 and lim > 0 for u, lim in ranges.values())
        d = dirs[0]
        model = load_model(world["model"])
        r = EffectRenderer(cat, None, model, probe_images(cat, d.fingerprint, 2), 2, 3, None)
        # measured again, on the images index rendered it on
        again = strength_range(model, _states(r, d), d.t_edit, cat.load_vector(d.id).float(),
                               source_mask(cat, d, model), model.strength_for(d.mask_label))
        assert (again.unit, again.limit) == ranges[d.id]
        hit = search(cat, world["clip_model"], "smile", k=1)[0]
        assert (hit.unit, hit.limit) == ranges[hit.id]
        # a card indexed before revision 0008 gets its scale from measure_ranges (`index build`)
        cat.put_preview(d.id, cat.get_preview(d.id), cat.preview_strength(d.id), cat.preview_locality(d.id))
        assert cat.directions_without_range() == [d.id]
        got = measure_ranges(cat, n_probes=2, steps=3)
        assert got.measured == 1 and cat.strength_ranges([d.id]) == {d.id: ranges[d.id]}
    unit = ranges[d.id][0]
    img = next(p for p in (world["root"] / "unseen").glob("face_*.png") if p.stem.count("_") == 1)
    a = _apply(world, f"{d.id}:-1.5x", str(img), "--out", str(tmp_path / "a.png"), "--steps", "3")
    b = _apply(world, f"{d.id}:{-1.5 * unit!r}", str(img), "--out", str(tmp_path / "b.png"), "--steps", "3")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))


def _states(renderer, d):
    from locobank.embed import StateCache

    return StateCache(renderer.model, renderer.steps).states(renderer.uris(d), d.t_edit)
