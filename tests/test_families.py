"""The text-to-image families of issue 34 (SDXL, LCM, DeepFloyd IF stage I) on tiny random pipelines
built from configs: each loads by its ``model_index.json``, binds its condition as its diffusers
pipeline does, and its directions match dense oracles of its own posterior-mean predictor."""

from __future__ import annotations

import pytest
import torch

from locobank import core
from locobank.errors import InputError
from locobank.loco.jacobian import max_principal_angle
from locobank.models import conditioned, load_model

from tiny_families import save_tiny_if, save_tiny_lcm, save_tiny_sdxl

T = 600
BUILDERS = {"sdxl": save_tiny_sdxl, "lcm": save_tiny_lcm, "if": save_tiny_if}
SHAPES = {"sdxl": (4, 8, 8), "lcm": (4, 8, 8), "if": (3, 16, 16)}
GUIDANCE = {"sdxl": 5.0, "lcm": 8.5, "if": 7.0}  # each pipeline's default guidance_scale


@pytest.fixture(scope="module", params=list(BUILDERS))
def family(request, tmp_path_factory):
    folder = BUILDERS[request.param](tmp_path_factory.mktemp(request.param) / request.param)
    return request.param, folder, load_model(folder)


def _mask():
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:10, 3:12] = True
    return m


def _inside():
    return _mask()[None].expand(3, 16, 16).reshape(-1)


def _dense_inside(model, z):
    """The Jacobian of the predictor's masked outputs, (inside pixels) x (state), in float64."""
    fn = model.family.predictor(T)
    rows = _inside()
    J = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(z.shape)).reshape(-1)[rows], z.reshape(-1),
                                           vectorize=True)
    return J.double()


def _state(model, seed=0):
    return torch.randn(model.family.state_shape, generator=torch.Generator().manual_seed(seed))


def test_each_family_loads_from_its_model_index(family):
    kind, _, model = family
    assert model.kind == kind and model.family.state_shape == SHAPES[kind]
    assert model.family.image_shape == (3, 16, 16) and model.resolution == 16 and len(model.fingerprint) == 16
    assert conditioned(model, "a face", guidance=3.0).fingerprint == model.fingerprint
    assert model.family.cond is not None  # every one takes a prompt
    assert model.settings.guidance == GUIDANCE[kind]


@pytest.mark.slow
def test_directions_match_the_dense_svd_of_the_family_predictor(family):
    _, _, sd = family
    model = conditioned(sd, "a smiling face", guidance=4.0)
    z = _state(model)
    _, S, Vh = torch.linalg.svd(_dense_inside(model, z))
    found = core.find_directions(model, z, T, _mask(), rank=3, null_rank=0, iters=100, tol=1e-6)
    angle = max_principal_angle(found.vectors.reshape(3, -1).double(), Vh[:3])
    assert angle < 1e-2, angle
    torch.testing.assert_close(found.singular_values.double(), S[:3], rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_the_text_supervised_direction_is_j_transpose_delta(family):
    _, _, sd = family
    src = conditioned(sd, "a frowning face", guidance=4.0)
    edit = conditioned(sd, "a smiling face with blue eyes", guidance=4.0)
    z = _state(src, 2)
    with torch.no_grad():
        delta = (edit.family.predictor(T)(z) - src.family.predictor(T)(z)).reshape(-1)[_inside()]
    want = _dense_inside(src, z).T @ delta.double()
    want = want / want.norm()
    found = core.find_supervised(src, edit, z, T, _mask(), null_rank=0)
    assert torch.dot(found.vectors.reshape(-1).double(), want) > 1 - 1e-5


@pytest.mark.parametrize("family", ["sdxl"], indirect=True)
def test_sdxl_binds_what_its_pipeline_encodes(family):
    """Both encoders' states, the pooled embedding (zeros for an empty negative prompt, as
    force_zeros_for_empty_prompt says) and the size ids, as StableDiffusionXLPipeline makes them."""
    _, folder, model = family
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folder, add_watermarker=False)
    pos, neg, pooled, neg_pooled = pipe.encode_prompt("a smiling face", device="cpu", do_classifier_free_guidance=True)
    states, ours_pooled, ids = model.family.prompt_embeddings("a smiling face")
    torch.testing.assert_close(states, pos)
    torch.testing.assert_close(ours_pooled, pooled)
    zero_states, zero_pooled, _ = model.family.prompt_embeddings("", negative=True)
    assert torch.equal(zero_states, neg) and torch.equal(zero_pooled, neg_pooled) and not neg.any()
    assert ids.tolist() == [[16, 16, 0, 0, 16, 16]]


@pytest.mark.parametrize("family", ["lcm"], indirect=True)
def test_the_lcm_posterior_mean_is_the_scheduler_denoised_sample(family):
    """net(z, t) is what LCMScheduler.step calls ``denoised``, under the w embedding of guidance - 1."""
    _, folder, model = family
    from diffusers import LatentConsistencyModelPipeline

    pipe = LatentConsistencyModelPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    m = conditioned(model, "a smiling face", guidance=6.0)
    z = _state(m)[None]
    emb = pipe.encode_prompt("a smiling face", "cpu", 1, False)[0]
    w = pipe.get_guidance_scale_embedding(torch.tensor([5.0]), embedding_dim=pipe.unet.config.time_cond_proj_dim)
    with torch.no_grad():
        eps = pipe.unet(z, T, timestep_cond=w, encoder_hidden_states=emb).sample
        pipe.scheduler.set_timesteps(4)
        pipe.scheduler._step_index = 0  # step() needs an index; the denoised sample does not depend on it
        want = pipe.scheduler.step(eps, T, z, return_dict=True).denoised
        got = m.denoiser.pmp(z, T)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert m.settings.steps == 4 and m.settings.guidance == 8.5  # the pipeline's few steps and guidance
    with pytest.raises(InputError, match="no negative prompt"):
        conditioned(model, "a face", negative_prompt="glasses")


@pytest.mark.parametrize("family", ["if"], indirect=True)
def test_if_takes_the_noise_half_under_its_t5_prompt(family):
    """The T5 states are IFPipeline's for the prompt; the network's output is the UNet's first three
    channels (the rest is its variance)."""
    _, folder, model = family
    from diffusers import IFPipeline

    pipe = IFPipeline.from_pretrained(folder, safety_checker=None, feature_extractor=None, watermarker=None,
                                      requires_safety_checker=False)
    pos, _ = pipe.encode_prompt("A Smiling Face", do_classifier_free_guidance=False, device="cpu")
    emb = model.family.embed("A Smiling Face")
    torch.testing.assert_close(emb, pos)
    x = _state(model)[None]
    t = torch.tensor([T])
    with torch.no_grad():
        full = pipe.unet(x, t, encoder_hidden_states=pos).sample
        torch.testing.assert_close(model.family.noise(x, t, (emb,)), full[:, :3])
    assert full.shape[1] == 6 and model.family.clip_sample
    tok = model.family.tokenizer
    assert tok.convert_ids_to_tokens(tok("a smiling face").input_ids) == ["▁a", "▁smiling", "▁face", "</s>"]


@pytest.mark.slow
def test_an_edit_inverts_edits_and_samples_back(family):
    _, _, sd = family
    model = conditioned(sd, "a face", guidance=2.0)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    z = core.invert(model, x, T, 4)
    found = core.find_directions(model, z, T, _mask(), rank=1, null_rank=2, iters=10)
    zero = core.edit(model, x, [(found[0], 0.0)], steps=4)
    torch.testing.assert_close(zero.images, core.sample(model, z, T, 4))
    moved = core.edit(model, x, [(found[0], 3.0)], steps=4, mask=_mask(), spill_passes=1)
    assert moved.images.shape == (1, 3, 16, 16) and (moved.images - zero.images).abs().max() > 1e-4


def test_a_resolution_in_locobank_json_sizes_the_state_and_the_identity(tmp_path):
    """SDXL at another size than its own (1024² for the real one): the state grid, the size ids
    and the fingerprint follow; the family's defaults sit under what locobank.json sets."""
    folder = save_tiny_sdxl(tmp_path / "sdxl")
    own = load_model(folder)
    (folder / "locobank.json").write_text('{"resolution": 32, "steps": 7}')
    big = load_model(folder)
    assert big.family.state_shape == (4, 16, 16) and big.family.image_shape == (3, 32, 32) and big.resolution == 32
    assert big.family.prompt_embeddings("a face")[2].tolist() == [[32, 32, 0, 0, 32, 32]]
    assert big.fingerprint != own.fingerprint and big.settings.steps == 7
    (folder / "locobank.json").write_text('{"resolution": 24}')
    with pytest.raises(Exception, match="multiple of 16"):
        load_model(folder)


def test_a_pipeline_of_no_supported_family_is_refused_by_name(tmp_path):
    from locobank.errors import ModelLoadError

    (tmp_path / "model_index.json").write_text('{"_class_name": "KandinskyPipeline"}')
    with pytest.raises(ModelLoadError, match="KandinskyPipeline; locobank supports .*StableDiffusionXLPipeline"):
        load_model(tmp_path)
