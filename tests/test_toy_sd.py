"""The shipped toy latent text-to-image model: it loads through the user's path (a real
StableDiffusionPipeline folder), and its quality bars hold at a reduced size."""

from __future__ import annotations

import pytest
import torch

from locobank.models import conditioned, load_model
from locobank.paths import TOY_SD
from locobank.toyworld import HELD_OUT_SEED
from locobank.toyworld.evaluation import latent as E


@pytest.fixture(scope="module")
def sd():
    return load_model(TOY_SD, device="cpu")


def test_the_shipped_pipeline_loads_as_a_user_checkpoint_would(sd):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(TOY_SD), safety_checker=None, requires_safety_checker=False)
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel" and type(pipe.tokenizer).__name__ == "CLIPTokenizer"
    assert sd.kind == "latent" and sd.family.image_shape == (3, 32, 32) and sd.family.state_shape == (4, 16, 16)
    assert sd.settings.guidance == 7.5 and sd.settings.basis == "constrained"
    # the mouth is edited later than the eyes and hair: it transfers better there (docs/latent.md)
    assert (sd.settings.t_edit_for("mouth"), sd.settings.t_edit_for("eyes"), sd.settings.t_edit) == (0.4, 0.3, 0.3)
    size = sum(p.stat().st_size for p in TOY_SD.rglob("*.safetensors"))
    assert size < 30e6, size
    from locobank.paths import resolve_model

    assert resolve_model("toy-sd") == str(TOY_SD)  # `--model toy-sd`


def test_vae_reconstructs_held_out_faces(sd):
    psnr = E.vae_psnr(sd, range(HELD_OUT_SEED, HELD_OUT_SEED + 20))
    assert sum(psnr) / len(psnr) > 30, psnr


@pytest.mark.slow
def test_round_trip_under_the_caption(sd):
    psnr = E.round_trip(sd, range(HELD_OUT_SEED, HELD_OUT_SEED + 2), 0.4, 10)
    assert min(psnr) > 25, psnr


@pytest.mark.slow
def test_the_models_defaults_make_a_mouth_edit_local_where_locos_do_not(sd):
    """The toy model's locobank.json (its edit time, null rank 20, constrained basis, its spill
    passes) against LOCO's defaults (0.6 T, null rank 5, projected) on the same faces: see
    docs/latent.md."""
    st = sd.settings
    assert (st.null_rank, st.basis) == (20, "constrained")
    ours = E.locality_summary(sd, "mouth", 4, 0, t_edit=st.t_edit_for("mouth"), strength=8.0, null_rank=st.null_rank,
                              constrained=True, steps=20, iters=6, passes=st.spill_passes)
    loco = E.locality_summary(sd, "mouth", 4, 0, t_edit=0.6, strength=8.0, null_rank=5, steps=20, iters=6, passes=0)
    assert ours["source"]["n"] == 8 and ours["rms_change"] > 0.01, ours
    # 4 faces, +-8, 6 subspace iterations (measured 2026-12-07: medians 0.43 against LOCO's 0.15, 0.79
    # with the spill passes; 10 and 50 gave the same margins), 20 DDIM steps: with 10 DDIM
    # steps the UNet at step 22,000 fell inside the margin (0.42 against 0.34). The full study: docs/latent.md
    assert ours["source"]["median"] > loco["source"]["median"] + 0.15, (ours, loco)
    # apply --mask's spill passes make it more local still: the spill, carried to the latent
    # through the encoder about the unedited image (about a grey image it made locality 0.03).
    assert ours["source_spill"]["median"] > ours["source"]["median"] + 0.05, ours


@pytest.mark.slow
def test_a_faces_own_caption_undoes_a_text_supervised_edit_that_the_edit_caption_keeps(sd):
    """On a frowning face, "smile" sampled on under the face's caption moves the mouth less than the
    same edit sampled on under the edit caption; the spill passes keep the latter local."""
    r = E.supervised_study(sd, "smile", 1, t_edit=sd.settings.t_edit_for("mouth"), strength=8.0, null_rank=20, passes=2)
    assert r["n"] == 1 and r["moved_right_way_under_edit_caption"] == 1, r
    assert r["gain_median_under_edit_caption"] > r["gain_median"], r
    assert r["locality_under_edit_caption"]["median"] > 0.85 > r["locality"]["median"], r


@pytest.mark.slow
def test_captions_steer_the_samples(sd):
    seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + 8))
    from locobank.clip import load_clip

    imgs = E.generate_from_captions(sd, seeds, guidance=7.5, steps=10)
    acc = E.adherence(load_clip("toy"), imgs, seeds)
    assert acc["hair colour"]["accuracy"] >= 0.5 and acc["smile vs frown"]["accuracy"] >= 0.5, acc
    plain = conditioned(sd, "")
    assert plain.family.cond.prompt == "" and not torch.equal(imgs[0], imgs[1])


def test_quality_faces_are_inverted_and_sampled_under_their_own_captions(sd):
    """The search bars' faces for a text-to-image model: each under its caption, as a user edits."""
    from locobank import core
    from locobank.toyworld.data.faces import batch, caption, face
    from locobank.toyworld.evaluation.quality import Faces

    seeds, t = [HELD_OUT_SEED, HELD_OUT_SEED + 1], core.to_timestep(sd, 0.4)
    fs = Faces.invert(sd, seeds, t, 6)
    assert [m.family.cond.prompt for m in fs.captioned] == [caption(face(s).attrs) for s in seeds]
    own = conditioned(sd, caption(face(seeds[1]).attrs))
    alone = core.invert(own, torch.from_numpy(batch(seeds[1:])), t, 6)
    torch.testing.assert_close(fs.x_t[1:], alone)
    torch.testing.assert_close(fs.sample(sd, fs.x_t, 6), fs.ref)
    assert (core.invert(sd, torch.from_numpy(batch(seeds[1:])), t, 6) - alone).abs().max() > 1e-3  # the caption matters


@pytest.mark.slow
def test_eval_sd_measures_each_part_at_its_own_edit_time():
    """`locobank toy eval-sd` edits each part at the time the model's locobank.json gives it (the
    mouth's differs from the others')."""
    from locobank.toyworld.reports.latent import eval_report

    report = eval_report(faces=1, adherence_faces=1, parts=("mouth",), queries=("blue eyes",), steps=2)
    assert report["t_edit_by_part"] == {"mouth": 0.4, "eyes": 0.3}
    assert report["locality"]["mouth"]["source"]["n"] == 2 and report["supervised"]["blue eyes"]["n"] == 1
