"""The latent text-to-image family (T-LOCO) on a tiny random StableDiffusionPipeline built from
configs, against dense oracles of the guided, decoded posterior-mean predictor."""

from __future__ import annotations

import pytest
import torch

from locobank import core
from locobank.errors import FingerprintMismatch, InputError
from locobank.loco.jacobian import max_principal_angle
from locobank.models import conditioned, load_model

from tiny import save_tiny_pipeline, save_tiny_sd

T = 700


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    folder = save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")
    return load_model(folder)


def _mask():
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4:10, 3:12] = True
    return m


def _dense(model, z):
    fn = model.family.predictor(T)
    J = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(z.shape)).reshape(-1), z.reshape(-1),
                                           vectorize=True)
    return J.double()


def _state(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(model.family.state_shape, generator=g)


def test_a_pipeline_folder_loads_as_the_latent_family(sd):
    assert sd.kind == "latent" and sd.family.state_shape == (4, 8, 8) and sd.family.image_shape == (3, 16, 16)
    assert sd.resolution == 16 and len(sd.fingerprint) == 16
    assert conditioned(sd, "a face", guidance=3.0).fingerprint == sd.fingerprint


@pytest.mark.slow
def test_latent_directions_match_the_dense_svd_of_the_guided_decoded_predictor(sd):
    model = conditioned(sd, "a smiling face", negative_prompt="", guidance=7.5)
    z = _state(model)
    J = _dense(model, z)
    inside = _mask()[None].expand(3, 16, 16).reshape(-1)
    _, S, Vh = torch.linalg.svd(J[inside])
    found = core.find_directions(model, z, T, _mask(), rank=3, null_rank=0, iters=100, tol=1e-6)
    angle = max_principal_angle(found.vectors.reshape(3, -1).double(), Vh[:3])
    assert angle < 1e-2, angle
    torch.testing.assert_close(found.singular_values.double(), S[:3], rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_projected_latent_directions_are_orthogonal_to_the_dense_null_basis(sd):
    model = conditioned(sd, "a face", guidance=4.0)
    z = _state(model, 1)
    J = _dense(model, z)
    outside = (~_mask())[None].expand(3, 16, 16).reshape(-1)
    N = torch.linalg.svd(J[outside])[2][:3]
    found = core.find_directions(model, z, T, _mask(), rank=2, null_rank=3, iters=100, tol=1e-6, null_tol=1e-6)
    residual = (found.vectors.reshape(2, -1).double() @ N.T).abs().max()
    assert residual < 1e-2, residual


@pytest.mark.slow
def test_the_text_supervised_direction_is_j_transpose_delta(sd):
    """v = J^T P_M (x0_hat(z, edit) - x0_hat(z, source)), normalised (no null projection here)."""
    src = conditioned(sd, "a frowning face", guidance=4.0)
    edit = conditioned(sd, "a smiling face", guidance=4.0)
    z = _state(src, 2)
    inside = _mask()[None].expand(3, 16, 16)
    with torch.no_grad():
        delta = (edit.family.predictor(T)(z) - src.family.predictor(T)(z)) * inside
    want = _dense(src, z).T @ delta.reshape(-1).double()
    want = want / want.norm()
    found = core.find_supervised(src, edit, z, T, _mask(), null_rank=0)
    got = found.vectors.reshape(-1).double()
    assert torch.dot(got, want) > 1 - 1e-5
    projected = core.find_supervised(src, edit, z, T, _mask(), null_rank=3, iters=100, null_tol=1e-6)
    assert torch.dot(projected.vectors.reshape(-1).double(), got) < 1.0  # the null projection moved it


@pytest.mark.slow
def test_a_latent_edit_inverts_edits_and_decodes(sd):
    model = conditioned(sd, "a face", guidance=2.0)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    z = core.invert(model, x, T, 8)
    found = core.find_directions(model, z, T, _mask(), rank=1, null_rank=2, iters=20)
    zero = core.edit(model, x, [(found[0], 0.0)], steps=8)
    torch.testing.assert_close(zero.images, core.sample(model, z, T, 8))
    moved = core.edit(model, x, [(found[0], 3.0)], steps=8, mask=_mask(), spill_passes=1)
    assert moved.images.shape == (1, 3, 16, 16) and (moved.images - zero.images).abs().max() > 1e-4


def test_pixel_directions_and_prompts_are_refused_across_families(sd, tmp_path):
    pixel = load_model(save_tiny_pipeline(tmp_path / "pixel", size=16))
    with pytest.raises(FingerprintMismatch, match="model family"):
        core.edit(sd, torch.zeros(1, 3, 16, 16), [(torch.randn(3, 16, 16), 1.0)], t_edit=T, steps=4)
    with pytest.raises(InputError, match="takes no prompt"):
        conditioned(pixel, "a smile")


def test_a_prompt_longer_than_the_tokenizer_takes_is_truncated_and_said(sd, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="locobank.models.latent"):
        conditioned(sd, "a smiling face " * 20)
    assert any("truncated" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="locobank.models.latent"):
        conditioned(sd, "a face")
    assert not caplog.records


def test_an_edit_prompt_that_changes_nothing_is_refused(sd):
    """Equal prompts leave only float noise in delta; J^T of noise would be a random direction."""
    src = conditioned(sd, "a frowning face", guidance=4.0)
    z = _state(src, 2)
    same = conditioned(sd, "a frowning face", guidance=4.0)
    with pytest.raises(InputError, match="edit_prompt changes nothing inside the mask"):
        core.find_supervised(src, same, z, T, _mask(), null_rank=0)
    found = core.find_supervised(src, conditioned(sd, "a smiling face", guidance=4.0), z, T, _mask(), null_rank=0)
    assert torch.isfinite(found.vectors).all() and found.vectors.norm() == pytest.approx(1.0, abs=1e-5)
    assert found.diagnostics["delta_norm"] > 0


def test_each_candidate_with_a_mask_takes_spill_passes_on_a_latent_model(sd):
    """edit_each shares one unedited reference among a batch of masked edits: the latent family's
    state_change needs it as a batch (it crashed in the VAE's encoder with a single image), and
    each candidate's result must equal its own lone edit."""
    model = conditioned(sd, "a face", guidance=2.0)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    z = core.invert(model, x, T, 4)
    found = core.find_directions(model, z, T, _mask(), rank=2, null_rank=2, iters=8)
    opts = dict(steps=4, null_rank=2, spill_passes=1)
    each = dict(core.edit_each(model, x, [found[0], found[1]], [3.0, -3.0], mask=_mask(), **opts))
    assert sorted(each) == [0, 1]
    alone = core.edit(model, x, [(found[1], -3.0)], mask=_mask(), **opts)
    torch.testing.assert_close(each[1].images, alone.images, atol=2e-3, rtol=0)
