"""The SD3 family on a tiny random StableDiffusion3Pipeline built from configs: the flow seen as a
DDIM denoiser against diffusers' own pipeline, and LOCO's directions against dense oracles of the
guided, decoded posterior-mean predictor x0_hat = x - s v, written here from the pipeline's parts."""

from __future__ import annotations

import pytest
import torch

from locobank import core
from locobank.loco import ddim
from locobank.models import conditioned, load_model

from flow_oracles import (assert_directions_match_dense_svd, assert_supervised_is_j_transpose_delta, mask16,
                          round_trip_errors, state)
from tiny_flow import save_tiny_sd3

T = 700


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return load_model(save_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3") / "sd3"))



def oracle_pmp(model, t: int):
    """x0_hat(z) = decode(x - s v(x, s)) with x = r z, from the pipeline's own encode_prompt,
    transformer and VAE: classifier-free guidance in two passes, as StableDiffusion3Pipeline does."""
    pipe, cond = model.family.parts.pipe, model.family.cond
    pos, neg, pooled, neg_pooled = pipe.encode_prompt(cond.prompt, None, None, do_classifier_free_guidance=True,
                                                      negative_prompt=cond.negative_prompt, device="cpu")
    s = float(pipe.scheduler.config.shift * ((t + 1) / 1000) / (1 + (pipe.scheduler.config.shift - 1) * (t + 1) / 1000))
    r = ((1 - s) ** 2 + s**2) ** 0.5
    vae = pipe.vae

    def fn(z):
        x = (z * r)[None]
        ts = torch.tensor([s * 1000] * 2, dtype=torch.float32)
        both = pipe.transformer(hidden_states=torch.cat([x, x]), timestep=ts, encoder_hidden_states=torch.cat([neg, pos]),
                                pooled_projections=torch.cat([neg_pooled, pooled]), return_dict=False)[0]
        u, c = both.chunk(2)
        x0 = x - s * (u + cond.guidance * (c - u))
        return vae.decode(x0 / vae.config.scaling_factor + vae.config.shift_factor).sample[0]

    return fn




def test_an_sd3_folder_loads_as_the_sd3_family(sd3):
    assert sd3.kind == "sd3" and sd3.family.state_shape == (4, 8, 8) and sd3.family.image_shape == (3, 16, 16)
    assert sd3.settings.guidance == 7.0 and sd3.family.cond.guidance == 7.0  # the pipeline's default
    assert conditioned(sd3, "a face", guidance=3.0).fingerprint == sd3.fingerprint
    s = sd3.family.parts.sigmas
    assert s[-1] == 1 and bool((s[1:] > s[:-1]).all())  # shifted, increasing, pure noise at T


@pytest.mark.parametrize("t5", [False, True])
def test_ddim_on_the_vp_view_is_the_pipelines_flow_euler_sampler(sd3, tmp_path, t5):
    """Generating on the DDIM seam equals StableDiffusion3Pipeline's own sampler (Euler on the flow,
    CFG in two passes) from the same noise over the same sigmas, with or without the T5 encoder."""
    base = load_model(save_tiny_sd3(tmp_path / "sd3-t5", t5=True)) if t5 else sd3
    model = conditioned(base, "a smiling face", "glasses", guidance=5.0)
    grid = ddim.timesteps_to(999, 5)
    noise = core.noise_for(model, [3])
    ours = ddim.sample(model.denoiser, noise, 999, grid=grid)
    pipe = model.family.parts.pipe
    assert (pipe.text_encoder_3 is not None) == t5
    theirs = pipe("a smiling face", negative_prompt="glasses", latents=noise, guidance_scale=5.0, height=16,
                  width=16, sigmas=[(t + 1) / 1000 for t in reversed(grid)], max_sequence_length=16 if t5 else 256,
                  output_type="latent").images
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert ours.abs().max() > 0.1


def test_the_predictor_is_the_decoded_flow_posterior_mean(sd3):
    model = conditioned(sd3, "a face", "glasses", guidance=4.0)
    z = state(model, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.family.predictor(T)(z), oracle_pmp(model, T)(z), atol=1e-5, rtol=1e-4)


def test_inversion_round_trips_on_the_flow_schedule_with_first_order_error(sd3):
    """Deterministic inversion then sampling on the flow's own schedule returns the clean latent,
    with an error that falls like 1/steps (Euler)."""
    errs = round_trip_errors(conditioned(sd3, "a smiling face", guidance=5.0), T)
    assert errs[1] < 0.03 and errs[1] < errs[0] / 3, errs


@pytest.mark.slow
def test_sd3_directions_match_the_dense_svd_of_the_decoded_predictor(sd3):
    model = conditioned(sd3, "a smiling face", guidance=7.0)
    assert_directions_match_dense_svd(model, oracle_pmp(model, T), T)


@pytest.mark.slow
def test_the_sd3_text_supervised_direction_is_j_transpose_delta(sd3):
    src = conditioned(sd3, "a frowning face", guidance=4.0)
    edit = conditioned(sd3, "a smiling face", guidance=4.0)
    assert_supervised_is_j_transpose_delta(src, edit, oracle_pmp(src, T), oracle_pmp(edit, T), T)


@pytest.mark.slow
def test_an_sd3_edit_inverts_edits_and_decodes(sd3):
    model = conditioned(sd3, "a face", guidance=2.0)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    z = core.invert(model, x, T, 8)
    found = core.find_directions(model, z, T, mask16(), rank=1, null_rank=2, iters=20)
    zero = core.edit(model, x, [(found[0], 0.0)], steps=8)
    torch.testing.assert_close(zero.images, core.sample(model, z, T, 8))
    moved = core.edit(model, x, [(found[0], 3.0)], steps=8, mask=mask16(), spill_passes=1)
    assert moved.images.shape == (1, 3, 16, 16) and (moved.images - zero.images).abs().max() > 1e-4
