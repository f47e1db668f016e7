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
from locobank.loco.jacobian import max_principal_angle
from locobank.models import conditioned, load_model

from tiny_flow import save_tiny_flux

T = 700


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return load_model(save_tiny_flux(tmp_path_factory.mktemp("tiny-flux") / "dev"))


@pytest.fixture(scope="module")
def schnell(tmp_path_factory):
    return load_model(save_tiny_flux(tmp_path_factory.mktemp("tiny-schnell") / "schnell", guidance=False))


def _mask():
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:10, 3:12] = True
    return m


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


def _dense(fn, z):
    J = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(z.shape)).reshape(-1), z.reshape(-1))
    return J.double()


def _state(model, seed=0):
    return torch.randn(model.family.state_shape, generator=torch.Generator().manual_seed(seed))


def test_flux_folders_load_as_the_flux_family_with_their_guidance(dev, schnell):
    for m in (dev, schnell):
        assert m.kind == "flux" and m.family.state_shape == (4, 8, 8) and m.family.image_shape == (3, 16, 16)
    assert dev.settings.guidance == 3.5 and schnell.settings.guidance == 0.0  # the pipelines' defaults
    assert dev.fingerprint != schnell.fingerprint
    z = _state(dev)
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
    z = _state(model, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.family.predictor(T)(z), oracle_pmp(model, T)(z), atol=1e-5, rtol=1e-4)


def test_inversion_round_trips_on_the_flow_schedule_with_first_order_error(dev):
    """The error falls like 1/steps (Euler); this random transformer's constant is larger than SD3's."""
    model = conditioned(dev, "a smiling face", guidance=3.5)
    z0 = model.family.encode(torch.rand(1, 3, 16, 16) * 2 - 1)
    errs = []
    for steps in (20, 80):
        back = ddim.sample(model.denoiser, ddim.invert(model.denoiser, z0, T, steps), T, steps)
        errs.append(float((back - z0).norm() / z0.norm()))
    assert errs[1] < 0.1 and errs[1] < errs[0] / 3, errs


@pytest.mark.slow
def test_flux_directions_match_the_dense_svd_of_the_decoded_predictor(dev):
    model = conditioned(dev, "a smiling face", guidance=3.5)
    z = _state(model)
    J = _dense(oracle_pmp(model, T), z)
    inside = _mask()[None].expand(3, 16, 16).reshape(-1)
    _, S, Vh = torch.linalg.svd(J[inside])
    found = core.find_directions(model, z, T, _mask(), rank=3, null_rank=0, iters=300, tol=1e-9)
    angle = max_principal_angle(found.vectors.reshape(3, -1).double(), Vh[:3])
    assert angle < 1e-2, angle
    torch.testing.assert_close(found.singular_values.double(), S[:3], rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_the_flux_text_supervised_direction_is_j_transpose_delta(dev):
    src = conditioned(dev, "a frowning face", guidance=3.5)
    edit = conditioned(dev, "a smiling face", guidance=3.5)
    z = _state(src, 2)
    inside = _mask()[None].expand(3, 16, 16)
    with torch.no_grad():
        delta = (oracle_pmp(edit, T)(z) - oracle_pmp(src, T)(z)) * inside
    want = _dense(oracle_pmp(src, T), z).T @ delta.reshape(-1).double()
    want = want / want.norm()
    found = core.find_supervised(src, edit, z, T, _mask(), null_rank=0)
    assert torch.dot(found.vectors.reshape(-1).double(), want) > 1 - 1e-5
