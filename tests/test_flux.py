"""The FLUX.1 family on tiny random FluxPipelines (dev with its guidance embedding, and schnell
without) built from configs, with a CLIP and a T5 tokenizer made locally: the flow seen as a DDIM
denoiser against diffusers' own pipeline, and LOCO's directions against dense oracles of
x0_hat = x - s v written from the pipeline's parts (its own packing of 2x2 patches into tokens)."""

from __future__ import annotations

import pytest
import torch

from locobank import core
from locobank.errors import InputError
from locobank.loco import ddim
from locobank.models import conditioned, load_model

from flow_oracles import (assert_directions_match_dense_svd, assert_supervised_is_j_transpose_delta,
                          round_trip_errors, state)
from tiny_flow import save_tiny_flux

T = 700


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return load_model(save_tiny_flux(tmp_path_factory.mktemp("tiny-flux") / "dev"))


@pytest.fixture(scope="module")
def schnell(tmp_path_factory):
    return load_model(save_tiny_flux(tmp_path_factory.mktemp("tiny-schnell") / "schnell", guidance=False))



def pipeline_sigma(pipe, t: int) -> float:
    """The noise level of timestep ``t`` as FluxPipeline's scheduler shifts it (dynamic: by the
    image's token count)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    cfg = pipe.scheduler.config
    mu = calculate_shift(16, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    pipe.scheduler.set_timesteps(sigmas=[(t + 1) / 1000], mu=mu)
    return float(pipe.scheduler.sigmas[0])


def oracle_pmp(model, t: int):
    """x0_hat(z) = decode(x - s v(x, s)), x = r z, from FluxPipeline's encode_prompt, packing,
    image ids, transformer and VAE."""
    pipe, cond = model.family.parts.pipe, model.family.cond
    text, pooled, text_ids = pipe.encode_prompt(cond.prompt, None, device="cpu", max_sequence_length=16)
    s = pipeline_sigma(pipe, t)
    r = ((1 - s) ** 2 + s**2) ** 0.5
    ids = pipe._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32)
    g = torch.full([1], cond.guidance) if pipe.transformer.config.guidance_embeds else None
    vae = pipe.vae

    def fn(z):
        x = (z * r)[None]
        v = pipe.transformer(hidden_states=pipe._pack_latents(x, 1, 4, 8, 8), timestep=torch.tensor([s]), guidance=g,
                             pooled_projections=pooled, encoder_hidden_states=text, txt_ids=text_ids, img_ids=ids,
                             return_dict=False)[0]
        x0 = x - s * pipe._unpack_latents(v, 16, 16, 2)
        return vae.decode(x0 / vae.config.scaling_factor + vae.config.shift_factor).sample[0]

    return fn




def test_flux_folders_load_as_the_flux_family_with_their_guidance(dev, schnell):
    for m in (dev, schnell):
        assert m.kind == "flux" and m.family.state_shape == (4, 8, 8) and m.family.image_shape == (3, 16, 16)
    assert dev.settings.guidance == 3.5 and schnell.settings.guidance == 0.0  # the pipelines' defaults
    assert dev.fingerprint != schnell.fingerprint
    z = state(dev)
    with torch.no_grad():
        a, b = (conditioned(dev, "a face", guidance=g).family.predictor(T)(z) for g in (1.0, 5.0))
        assert (a - b).abs().max() > 1e-4  # dev embeds the guidance
        a, b = (conditioned(schnell, "a face", guidance=g).family.predictor(T)(z) for g in (1.0, 5.0))
        torch.testing.assert_close(a, b)  # schnell takes none
    with pytest.raises(InputError, match="no negative prompt"):
        conditioned(dev, "a face", "glasses")


@pytest.mark.parametrize("which", ["dev", "schnell"])
def test_ddim_on_the_vp_view_is_the_pipelines_flow_euler_sampler(dev, schnell, which):
    """Generating on the DDIM seam equals FluxPipeline's own sampler from the same (packed) noise
    over the same sigmas, dynamic shift included."""
    model = conditioned({"dev": dev, "schnell": schnell}[which], "a smiling face", guidance=4.0)
    grid = ddim.timesteps_to(999, 5)
    noise = core.noise_for(model, [3])
    ours = ddim.sample(model.denoiser, noise, 999, grid=grid)
    pipe = model.family.parts.pipe
    theirs = pipe("a smiling face", latents=pipe._pack_latents(noise, 1, 4, 8, 8), guidance_scale=4.0, height=16,
                  width=16, max_sequence_length=16, sigmas=[(t + 1) / 1000 for t in reversed(grid)],
                  output_type="latent").images
    torch.testing.assert_close(ours, pipe._unpack_latents(theirs, 16, 16, 2), atol=1e-4, rtol=1e-4)
    assert ours.abs().max() > 0.1


def test_the_predictor_is_the_decoded_flow_posterior_mean(dev):
    model = conditioned(dev, "a face", guidance=4.0)
    z = state(model, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.family.predictor(T)(z), oracle_pmp(model, T)(z), atol=1e-5, rtol=1e-4)


def test_inversion_round_trips_on_the_flow_schedule_with_first_order_error(dev):
    """Deterministic inversion then sampling on the flow's own schedule returns the clean latent,
    with an error that falls like 1/steps (Euler); this random transformer's constant is larger than SD3's."""
    errs = round_trip_errors(conditioned(dev, "a smiling face", guidance=3.5), T)
    assert errs[1] < 0.1 and errs[1] < errs[0] / 3, errs


@pytest.mark.slow
def test_flux_directions_match_the_dense_svd_of_the_decoded_predictor(dev):
    model = conditioned(dev, "a smiling face", guidance=3.5)
    assert_directions_match_dense_svd(model, oracle_pmp(model, T), T)


@pytest.mark.slow
def test_the_flux_text_supervised_direction_is_j_transpose_delta(dev):
    src = conditioned(dev, "a frowning face", guidance=3.5)
    edit = conditioned(dev, "a smiling face", guidance=3.5)
    assert_supervised_is_j_transpose_delta(src, edit, oracle_pmp(src, T), oracle_pmp(edit, T), T)


def test_locobank_json_loads_flux_in_bf16_with_its_text_encoders_on_the_cpu(tmp_path):
    """The memory options a user sets beside the weights: the dtype and offload_text."""
    import json

    folder = save_tiny_flux(tmp_path / "flux")
    plain = load_model(folder)
    (folder / "locobank.json").write_text(json.dumps({"resolution": 16, "dtype": "bf16", "offload_text": True}))
    half = load_model(folder)
    assert half.dtype == torch.bfloat16 and half.family.unet.dtype == torch.bfloat16
    assert half.family.parts.text_device == torch.device("cpu")
    z = state(plain, 4)
    with torch.no_grad():
        want = conditioned(plain, "a face").family.predictor(T)(z)
        got = conditioned(half, "a face").family.predictor(T)(z)
    assert got.dtype == torch.float32 and float((got - want).norm() / want.norm()) < 0.05
