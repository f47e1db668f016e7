"""The edit core (`locobank.core`: find_directions, DDIM inversion/sampling, edits, transfer, spill passes,
edit_each) and the loader it runs on, on a tiny random model saved like a Hub model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from locobank import core
from locobank.loco.align import shift
from locobank.errors import FingerprintMismatch, InputError, ModelLoadError
from locobank.images import load_image, load_mask
from locobank.loco import ddim
from locobank.loco.denoiser import Denoiser
from locobank.loco.register import PartPrint, profiles
from locobank.models import load_model
from tiny import save_tiny_pipeline


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = save_tiny_pipeline(tmp_path_factory.mktemp("m") / "tiny-ddpm", size=16)
    return load_model(folder, device="cpu")


@pytest.fixture()
def image():
    g = torch.Generator().manual_seed(3)
    return torch.rand(3, 16, 16, generator=g) * 2 - 1


@pytest.fixture()
def mask():
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[9:13, 4:12] = True
    return m


@pytest.mark.slow
def test_loader_reads_pipeline_and_unet_folders(tmp_path, model):
    assert model.resolution == 16 and model.channels == 3
    assert len(model.fingerprint) == 16
    again = load_model(model.source)  # the pipeline folder the fixture loaded, loaded again
    # The UNet-folder layout (config.json + scheduler_config.json side by side) loads too.
    model.unet.save_pretrained(tmp_path / "flat")
    model.scheduler.save_pretrained(tmp_path / "flat")
    flat = load_model(tmp_path / "flat")
    assert flat.resolution == 16
    assert again.fingerprint == model.fingerprint


def test_fingerprint_is_stable_and_tracks_weights(tmp_path):
    a = load_model(save_tiny_pipeline(tmp_path / "a" / "same", size=8, seed=0))
    b = load_model(save_tiny_pipeline(tmp_path / "b" / "same", size=8, seed=0))
    c = load_model(save_tiny_pipeline(tmp_path / "c" / "same", size=8, seed=1))
    assert a.fingerprint == b.fingerprint  # same name, weights and configs, different place
    assert a.fingerprint != c.fingerprint  # other weights


def test_loader_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="fp16"):
        load_model(tmp_path / "empty", dtype="fp16", device="cpu")


def test_inversion_is_exact_for_a_state_independent_noise_field():
    torch.manual_seed(0)
    field = torch.randn(1, 3, 8, 8)
    den = Denoiser(net=lambda x, t: field.expand_as(x), alphas_cumprod=torch.linspace(0.9999, 0.01, 1000, dtype=torch.float64))
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    xt = ddim.invert(den, x0, 600, 10)
    torch.testing.assert_close(ddim.sample(den, xt, 600, 10), x0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_sampling_from_a_known_posterior_mean_skips_one_pass_and_lands_alike(kind):
    """``x0_first``: the first DDIM step takes the posterior mean it is given (and the noise it
    implies) instead of a network pass, and the sample is the same."""
    torch.manual_seed(0)
    w = torch.randn(3, 3) * 0.3
    calls = []

    def net(x, t):
        calls.append(x.shape[0])
        return torch.tanh(torch.einsum("ij,bjhw->bihw", w, x)) * (1 + t[:, None, None, None] / 1000)

    den = Denoiser(net=net, alphas_cumprod=torch.linspace(0.9999, 0.01, 1000, dtype=torch.float64), prediction_type=kind)
    x = torch.randn(2, 3, 8, 8)
    plain = ddim.sample(den, x, 600, 5)
    assert len(calls) == 5
    first = den.pmp(x, 600)
    calls.clear()
    torch.testing.assert_close(ddim.sample(den, x, 600, 5, x0_first=first), plain, rtol=1e-5, atol=1e-5)
    assert len(calls) == 4


@pytest.mark.slow
def test_inversion_then_sampling_reconstructs_on_the_tiny_model(model, image):
    def psnr(steps):
        xt = core.invert(model, image, 0.6, steps)
        mse = (core.sample(model, xt, 0.6, steps) - image).pow(2).mean()
        return float(10 * torch.log10(4 / mse))

    # A random UNet is far rougher than a trained one; it still reconstructs, better with more steps.
    coarse, fine = psnr(20), psnr(100)
    assert fine >= 20.0
    assert fine > coarse + 5


@pytest.mark.slow
def test_find_directions_returns_unit_local_directions(model, image, mask):
    xt = core.invert(model, image, 0.6, 10)
    d = core.find_directions(model, xt, 0.6, mask, rank=3, null_rank=3)
    assert d.vectors.shape == (3, 3, 16, 16)
    torch.testing.assert_close(d.vectors.flatten(1).norm(dim=1), torch.ones(3))
    assert torch.all(d.singular_values[:-1] >= d.singular_values[1:])
    diag = d.diagnostics
    assert diag["iterations"] >= 2 and diag["seconds"] > 0
    assert diag["krylov_block"] == 4 and diag["krylov_widths"] == [2, 2]  # how the bases grew: 2 of 5 a round
    assert len(diag["outside_residual"]) == 3 and all(0 <= r <= 1 for r in diag["outside_residual"])
    assert d.t_edit == 600 and d.fingerprint == model.fingerprint


@pytest.mark.slow
def test_null_space_projection_reduces_change_outside_the_mask(model, image, mask):
    xt = core.invert(model, image, 0.6, 10)
    plain = core.find_directions(model, xt, 0.6, mask, rank=2, null_rank=0)
    local = core.find_directions(model, xt, 0.6, mask, rank=2, null_rank=6)
    assert local.diagnostics["outside_residual"][0] < plain.diagnostics["outside_residual"][0]


@pytest.mark.slow
def test_edit_is_deterministic_with_a_seed(model, image, mask):
    xt = core.invert(model, image, 0.6, 10)
    d = core.find_directions(model, xt, 0.6, mask, rank=1, null_rank=2)
    a = core.edit(model, image, [(d[0], 4.0)], steps=10, seed=7, eta_tail=1.0)
    b = core.edit(model, image, [(d[0], 4.0)], steps=10, seed=7, eta_tail=1.0)
    c = core.edit(model, image, [(d[0], 4.0)], steps=10, seed=8, eta_tail=1.0)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


@pytest.mark.slow
def test_transfer_compose_and_zero_strength(model, image, mask):
    other = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    d = core.find_directions(model, core.invert(model, image, 0.6, 10), 0.6, mask, rank=2, null_rank=2)
    solo = core.edit(model, other, [(d[0], 3.0)], steps=10)
    with_zero = core.edit(model, other, [(d[0], 3.0), (d[1], 0.0)], steps=10)
    torch.testing.assert_close(solo.images, with_zero.images)
    both = core.edit(model, other, [(d[0], 3.0), (d[1], 3.0)], steps=10)
    torch.testing.assert_close(both.x_t_edited - both.x_t, 3.0 * (d.vectors[0] + d.vectors[1])[None])
    local = core.edit(model, other, [(d[0], 3.0)], steps=10, mask=mask, null_rank=2)
    assert local.images.shape == (1, 3, 16, 16)
    ortho = core.edit(model, other, [(d[0], 1.0), (d.vectors[0] * 0.5 + d.vectors[1] * 0.5, 1.0)], steps=10, orthogonalize=True)
    assert ortho.images.shape == (1, 3, 16, 16)


def test_directions_of_different_edit_times_compose_exactly():
    """With a state-independent noise field DDIM is affine, and a change d added at timestep t
    reaches the clean image as d / sqrt(abar_t): the exact answer for a multi-time edit."""
    from locobank.models import LoadedModel

    torch.manual_seed(0)
    field = torch.randn(1, 3, 8, 8)
    acp = torch.linspace(0.9999, 0.01, 1000, dtype=torch.float64)
    den = Denoiser(net=lambda x, t: field.expand_as(x), alphas_cumprod=acp)
    lm = LoadedModel(unet=None, scheduler=None, denoiser=den, model_id="field", revision="0", fingerprint="f",
                     resolution=8, channels=3, device=torch.device("cpu"), dtype=torch.float32)
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    v = torch.nn.functional.normalize(torch.randn(2, 3 * 8 * 8), dim=1).reshape(2, 3, 8, 8)
    a, b = core.Direction(v[0], 400, "f"), core.Direction(v[1], 637, "f")
    out = core.edit(lm, x0, [(a, 2.0), (b, -3.0)], steps=7)
    want = x0 + 2.0 * v[0] / acp[400].sqrt().float() - 3.0 * v[1] / acp[637].sqrt().float()
    torch.testing.assert_close(out.images, want, rtol=1e-4, atol=1e-4)
    assert out.t_edit == 637
    swapped = core.edit(lm, x0, [(b, -3.0), (a, 2.0)], steps=7)
    torch.testing.assert_close(swapped.images, out.images)
    zero = core.edit(lm, x0, [(a, 0.0), (b, 0.0)], steps=7)
    torch.testing.assert_close(zero.images, x0, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="clean images"):
        core.edit(lm, out.x_t, [(a, 1.0), (b, 1.0)], inverted=True)


@pytest.mark.slow
def test_multi_time_edit_on_the_tiny_model(model, image, mask):
    d5 = core.find_directions(model, core.invert(model, image, 0.5, 10), 0.5, mask, rank=1, null_rank=2)
    d6 = core.find_directions(model, core.invert(model, image, 0.6, 10), 0.6, mask, rank=1, null_rank=2)
    zero = core.edit(model, image, [(d5[0], 0.0), (d6[0], 0.0)], steps=100)
    plain = core.sample(model, core.invert(model, image, 0.6, 100), 0.6, 100)
    def psnr(y):
        return float(10 * torch.log10(4 / (y - image).pow(2).mean()))

    # With zero strengths it is a reconstruction, as good as the one-time path on the same model.
    assert psnr(zero.images) > max(18.0, psnr(plain) - 1.0)
    both = core.edit(model, image, [(d5[0], 3.0), (d6[0], 3.0)], steps=20, mask=mask, null_rank=2)
    assert both.images.shape == (1, 3, 16, 16) and not torch.allclose(both.images, zero.images)


@pytest.mark.slow
def test_constrained_basis_matches_a_dense_oracle(model, image, mask):
    """basis="constrained": the top right singular vectors of J_M (I - N^T N), N the outside basis."""
    from locobank.loco.jacobian import max_principal_angle

    xt = core.invert(model, image, 0.6, 10)
    t = core.to_timestep(model, 0.6)
    d = core.find_directions(model, xt, t, mask, rank=2, null_rank=4, constrained=True, tol=1e-5, null_tol=1e-6,
                               iters=200)
    assert d.diagnostics["basis"] == "constrained"
    f = model.family.predictor(t)
    J = torch.autograd.functional.jacobian(lambda z: f(z).reshape(-1), xt[0]).reshape(768, 768).double()
    inside = mask[None].expand(3, -1, -1).reshape(-1, 1).double()
    _, _, Vh_out = torch.linalg.svd(J * (1 - inside))
    N = Vh_out[:4]
    P = torch.eye(768, dtype=torch.float64) - N.T @ N
    _, _, Vh = torch.linalg.svd((J * inside) @ P)
    V = d.vectors.flatten(1).double()
    assert (N @ V.T).abs().max() < 1e-5
    assert max_principal_angle(Vh[:2], V) < 1e-2
    plain = core.find_directions(model, xt, t, mask, rank=2, null_rank=4)
    assert plain.diagnostics["basis"] == "projected"


@pytest.mark.slow
def test_reproject_removes_the_targets_outside_null_basis(model, image, mask):
    """Against a dense oracle: after re-projection, a direction has no component along the top
    right singular vectors of the *target's* outside-mask Jacobian, and edit(mask=) uses it."""
    other = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    d = core.find_directions(model, core.invert(model, image, 0.6, 10), 0.6, mask, rank=2, null_rank=2)
    xt = core.invert(model, other, 0.6, 10)
    t = core.to_timestep(model, 0.6)
    V = core.reproject(model, xt, t, mask, d.vectors, null_rank=3, settle="projection")
    assert V.shape == d.vectors.shape
    torch.testing.assert_close(V.flatten(1).norm(dim=1), torch.ones(2))
    f = model.family.predictor(t)
    J = torch.autograd.functional.jacobian(lambda z: f(z).reshape(-1), xt[0]).reshape(3 * 256, 3 * 256)
    outside = (~mask)[None].expand(3, -1, -1).reshape(-1)
    _, _, Vh = torch.linalg.svd(J * outside[:, None].float())
    assert (Vh[:3] @ V.flatten(1).T).abs().max() < 1e-2  # the null basis is found to tolerance 1e-2
    assert (Vh[:3] @ d.vectors.flatten(1).T).abs().max() > 1e-2  # the raw transfer did have such a component

    def spill(W):  # each vector's share of change outside the mask
        JW = W.flatten(1) @ J.T
        return JW[:, outside].pow(2).sum(1) / JW.pow(2).sum(1)

    exact = d.vectors.flatten(1) - (d.vectors.flatten(1) @ Vh[:3].T) @ Vh[:3]
    by_share = core.reproject(model, xt, t, mask, d.vectors, null_rank=3)  # the default: the share settles
    assert (spill(by_share) - spill(exact)).abs().max() < 1e-2 < (spill(d.vectors) - spill(exact)).abs().max()
    a = core.edit(model, xt, [(d[0], 3.0)], steps=10, mask=mask, null_rank=3, inverted=True, max_shift=0,
                    spill_passes=0)
    b = core.edit(model, xt, [(by_share[0], 3.0)], t_edit=t, steps=10, inverted=True)
    torch.testing.assert_close(a.images, b.images)
    assert a.shifts == [(0, 0)]


@pytest.mark.slow
def test_edit_with_a_mask_shifts_then_reprojects(model, image, mask):
    """edit(mask=) is relocalize: the direction shifted onto the mask, then re-projected; a
    direction moved off the mask by (2, -3) comes back by (-2, +3)."""
    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(4)) * mask
    off = shift(v / v.norm(), 2, -3)
    xt = core.invert(model, image, 0.6, 10)
    t = core.to_timestep(model, 0.6)
    moved, shifts = core.align(model, off[None], mask, max_shift=4)
    assert shifts == [(-2, 3)]
    assert torch.isclose(moved[0].norm(), off.norm())
    V, moves, _ = core.relocalize(model, xt, t, mask, off[None], null_rank=3, max_shift=4)
    assert moves == [(-2, 3)]
    a = core.edit(model, xt, [(off, 3.0)], t_edit=t, steps=10, mask=mask, null_rank=3, inverted=True, max_shift=4,
                    spill_passes=0)
    b = core.edit(model, xt, [(V[0], 3.0)], t_edit=t, steps=10, inverted=True)
    torch.testing.assert_close(a.images, b.images)
    assert a.shifts == [(-2, 3)]
    with pytest.raises(InputError, match="one per direction"):
        core.edit(model, xt, [(off, 3.0)], t_edit=t, steps=2, mask=[mask, mask, mask], inverted=True)


@pytest.mark.slow
def test_edit_registers_a_direction_from_its_source_part(model, image, mask):
    """A direction found on a part 2 px higher and 1 px to the right comes down by (+2, -1)
    before the re-projection; with ``register=False`` it stays where it is; a None source is
    left alone and a source mask of the wrong size is refused."""
    smask = shift(mask.float()[None], -2, 1)[0].bool()
    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(7)) * smask
    v = v / v.norm()
    xt = core.invert(model, image, 0.6, 10)
    t = core.to_timestep(model, 0.6)
    d = core.Direction(v, t, source=PartPrint(smask))
    V, moves, sizes = core.relocalize(model, xt, t, mask, v[None], null_rank=3, sources=[d.source])
    assert moves == [(2.0, -1.0)] and sizes == [(1.0, 1.0)]
    W, _, _ = core.relocalize(model, xt, t, mask, shift(v, 2, -1)[None], null_rank=3)
    torch.testing.assert_close(V, W)
    a = core.edit(model, xt, [(d, 3.0)], steps=10, mask=mask, null_rank=3, inverted=True, spill_passes=0)
    b = core.edit(model, xt, [(W[0], 3.0)], t_edit=t, steps=10, inverted=True)
    torch.testing.assert_close(a.images, b.images)
    assert a.shifts == [(2.0, -1.0)]
    off = core.edit(model, xt, [(d, 3.0)], steps=10, mask=mask, null_rank=3, inverted=True, spill_passes=0,
                      register=False)
    assert off.shifts == [(0.0, 0.0)] and not torch.allclose(off.images, a.images)
    same, moves, _ = core.register(model, v[None], [None], mask)
    assert moves == [(0.0, 0.0)] and torch.equal(same, v[None])
    with pytest.raises(InputError, match="source mask 1"):
        core.register(model, v[None], [PartPrint(torch.ones(8, 8, dtype=torch.bool))], mask)


@pytest.mark.slow
def test_edit_of_a_clean_image_fits_the_part_size_from_its_profiles(model, mask):
    """With the source's profiles and a clean target image, the direction is also scaled: a
    target "mouth" bar 5 px wide against the source's 8 gives a horizontal scale near 5/8."""
    def face_with_bar(x0: int, width: int) -> torch.Tensor:
        img = torch.full((3, 16, 16), 0.3)
        img[:, 10, x0 : x0 + width] = -0.9
        return img

    src, tgt = face_with_bar(4, 8), face_with_bar(5, 5)  # centres 7.5 and 7: a 5/8 part, moved left 0.5
    cols, rows = profiles(src, mask)
    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(8)) * mask
    d = core.Direction(v / v.norm(), core.to_timestep(model, 0.6), source=PartPrint(mask, cols, rows))
    r = core.edit(model, tgt, [(d, 2.0)], steps=6, mask=mask, null_rank=2, spill_passes=0)
    (dy, dx), (sy, sx) = r.shifts[0], r.scales[0]
    assert dy == 0.0 and sy == 1.0 and abs(sx - 0.625) <= 0.05 and abs(dx + 0.5) <= 0.25, (r.shifts, r.scales)
    inv = core.edit(model, core.invert(model, tgt, 0.6, 6), [(d, 2.0)], steps=6, mask=mask, null_rank=2,
                      spill_passes=0, inverted=True)
    assert inv.scales == [(1.0, 1.0)]  # no clean image to fit on: the masks' shift alone


@pytest.mark.slow
def test_a_spill_pass_subtracts_the_sampled_change_outside_the_mask(model, image, mask):
    """By hand: one pass samples the re-projected edit and the unedited reference, subtracts
    sqrt(abar_t) times their difference outside the mask from the edit, and samples again."""
    xt = core.invert(model, image, 0.6, 10)
    t = core.to_timestep(model, 0.6)
    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(5))
    V, _, _ = core.relocalize(model, xt, t, mask, (v / v.norm())[None], null_rank=3, max_shift=0)
    den = model.denoiser
    ref = ddim.sample(den, xt, t, 10)
    first = ddim.sample(den, xt + 3.0 * V[0], t, 10)
    outside = (~mask).float()
    corrected = 3.0 * V[0] - float(den.abar(t)) ** 0.5 * outside * (first - ref)[0]
    want = ddim.sample(den, xt + corrected, t, 10)
    got = core.edit(model, xt, [(v / v.norm(), 3.0)], t_edit=t, steps=10, mask=mask, null_rank=3, inverted=True,
                      max_shift=0, spill_passes=1)
    torch.testing.assert_close(got.images, want)
    torch.testing.assert_close(got.x_t_edited, xt + corrected)


def test_spill_passes_leave_a_zero_edit_alone_and_refuse_a_negative_count(model, image, mask):
    """A zero-strength edit stays a plain reconstruction whatever the passes (the toy model's
    test checks that the passes cut the change outside the mask)."""
    xt = core.invert(model, image, 0.6, 10)
    t = core.to_timestep(model, 0.6)
    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(6))
    ref = ddim.sample(model.denoiser, xt, t, 10)
    zero = core.edit(model, xt, [(v / v.norm(), 0.0)], t_edit=t, steps=10, mask=mask, null_rank=3, inverted=True,
                       spill_passes=2)
    torch.testing.assert_close(zero.images, ref)
    with pytest.raises(InputError, match="spill_passes"):
        core.edit(model, xt, [(v / v.norm(), 1.0)], t_edit=t, steps=2, mask=mask, inverted=True, spill_passes=-1)


def test_bad_masks_are_refused_clearly(model, image):
    xt = core.invert(model, image, 0.6, 5)
    with pytest.raises(InputError, match="empty"):
        core.find_directions(model, xt, 0.6, torch.zeros(16, 16, dtype=torch.bool))
    with pytest.raises(InputError, match="whole image"):
        core.find_directions(model, xt, 0.6, torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(InputError, match="8x8 but the image is 16x16"):
        core.find_directions(model, xt, 0.6, torch.ones(8, 8, dtype=torch.bool))


def test_bad_images_and_directions_are_refused_clearly(model, image, mask):
    with pytest.raises(InputError, match="channels"):
        core.invert(model, image[:1], 0.6, 5)
    with pytest.raises(InputError, match="resize"):
        core.invert(model, torch.zeros(3, 32, 32), 0.6, 5)
    foreign = core.Direction(torch.randn(3, 16, 16), 600, fingerprint="0123456789abcdef")
    with pytest.raises(FingerprintMismatch, match="fingerprint"):
        core.edit(model, image, [(foreign, 1.0)])
    wrong_res = core.Direction(torch.randn(3, 32, 32), 600, fingerprint=model.fingerprint)
    with pytest.raises(FingerprintMismatch, match="resolution"):
        core.edit(model, image, [(wrong_res, 1.0)])
    ok = core.Direction(torch.randn(3, 16, 16), 600, fingerprint=model.fingerprint)
    with pytest.raises(InputError, match="numbers"):
        core.edit(model, image, [(ok, "strong")])
    with pytest.raises(InputError, match="t_edit"):
        core.to_timestep(model, 1.5)


def test_image_files_give_clear_errors(tmp_path):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.zeros((16, 16, 4), np.uint8)).save(tmp_path / "rgba.png")
    noise = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "ok.png")
    Image.fromarray(np.zeros((8, 8), np.uint8) + 255).save(tmp_path / "small_mask.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="1 channel"):
        load_image(tmp_path / "gray.png", 16)
    with pytest.raises(InputError, match="4 channels"):
        load_image(tmp_path / "rgba.png", 16)
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "junk.png", 16)
    with pytest.raises(InputError, match="truncated"):
        load_image(tmp_path / "cut.png", 16)
    with pytest.raises(InputError, match="--resize"):
        load_image(tmp_path / "ok.png", 32)
    assert load_image(tmp_path / "ok.png", 32, resize=True).shape == (3, 32, 32)
    with pytest.raises(InputError, match="--resize"):
        load_mask(tmp_path / "small_mask.png", 16)
    assert load_mask(tmp_path / "small_mask.png", 16, resize=True).all()


@pytest.mark.slow
def test_edit_each_gives_each_directions_own_edit(model, image, mask):
    """edit_each against one edit() per direction: three directions at two edit times (one of
    them with a source part to register from), plain and with a mask and spill passes, batched
    in chunks and, with tail noise, one at a time. Without a mask it is the same computation.
    With one the re-projection is shared, iterated until every direction's projection has
    settled rather than each one's alone, so the edits agree to the re-projection's tolerance
    (on this random model the registered one moved by 0.3 %, the others by 1e-7)."""
    g = torch.Generator().manual_seed(5)
    vs = [torch.nn.functional.normalize(torch.randn(3 * 16 * 16, generator=g), dim=0).reshape(3, 16, 16)
          for _ in range(3)]
    src = torch.zeros(16, 16, dtype=torch.bool)
    src[8:12, 3:11] = True  # the mask one step up and to the left
    t5, t6 = core.to_timestep(model, 0.5), core.to_timestep(model, 0.6)
    dirs = [core.Direction(vs[0], t6, model.fingerprint, name="a", source=PartPrint(src)),
            core.Direction(vs[1], t5, model.fingerprint, name="b"),
            core.Direction(vs[2], t6, model.fingerprint, name="c")]
    strengths = [3.0, -2.0, 4.0]
    two = torch.stack([image, image.flip(-1)])
    seen: list[int] = []
    got = dict(core.edit_each(model, two, dirs, strengths, steps=6, progress=seen.append))
    assert sorted(got) == [0, 1, 2] and seen == [2, 2, 2]
    for i, (d, s) in enumerate(zip(dirs, strengths)):
        want = core.edit(model, two, [(d, s)], steps=6)
        assert torch.equal(got[i].images, want.images) and got[i].t_edit == d.t_edit
    tol = core.REPROJECT_TOL
    for options in ({"batch": 2, "spill_passes": 0}, {"batch": 2, "spill_passes": 1},
                    {"batch": 16, "eta_tail": 0.5, "seed": 3, "spill_passes": 1}):
        seen = []
        got = dict(core.edit_each(model, image, dirs, strengths, steps=6, mask=mask, null_rank=3,
                                    progress=seen.append, **options))
        assert seen == [1, 1, 1]
        for i, (d, s) in enumerate(zip(dirs, strengths)):
            kw = {k: v for k, v in options.items() if k != "batch"}
            want = core.edit(model, image, [(d, s)], steps=6, mask=mask, null_rank=3, **kw)
            plain = core.edit(model, image, [(d, 0.0)], steps=6, **kw).images

            def rel(a, b):
                return float((a - b).norm() / b.norm())

            if not options["spill_passes"]:  # the edit at t is the re-projected direction itself
                assert rel(got[i].x_t_edited - got[i].x_t, want.x_t_edited - want.x_t) < 2 * tol
            assert rel(got[i].images - plain, want.images - plain) < 5 * tol
            assert got[i].shifts == want.shifts and got[i].scales == want.scales
    assert got[0].shifts == [(1.0, 1.0)]  # a was registered onto the mask
    with pytest.raises(InputError, match="one image at a time"):
        list(core.edit_each(model, two, dirs, strengths, steps=2, mask=mask))
    with pytest.raises(InputError, match="one strength per direction"):
        list(core.edit_each(model, image, dirs, strengths[:2], steps=2))


def test_edit_masked_edits_each_image_on_its_own_mask_as_one_by_one(model, image, mask):
    """Several images, each with its own mask, edited together (one batch through the model) give
    what editing each alone with its mask gives: the same registration moves, the same images to
    float rounding, the same unedited references; with tail noise each gets the noise it would
    alone. Refusals: a count of masks that does not match the images."""
    g = torch.Generator().manual_seed(11)
    images = torch.stack([image, torch.rand(3, 16, 16, generator=g) * 2 - 1, torch.rand(3, 16, 16, generator=g) * 2 - 1])
    masks = [mask, shift(mask.float()[None], 1, 2)[0].bool(), shift(mask.float()[None], -3, -1)[0].bool()]
    smask = shift(mask.float()[None], -2, 1)[0].bool()
    v = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(7)) * smask
    d = core.Direction(v / v.norm(), core.to_timestep(model, 0.6), source=PartPrint(smask))
    opts = dict(steps=6, null_rank=3, spill_passes=1)
    together = core.edit_masked(model, images, [(d, 3.0)], masks, **opts)
    alone = [core.edit(model, images[i : i + 1], [(d, 3.0)], mask=masks[i], **opts) for i in range(3)]
    assert len(together) == 3
    for a, b in zip(together, alone):
        assert a.images.shape == b.images.shape == (1, 3, 16, 16)
        torch.testing.assert_close(a.images, b.images, atol=1e-4, rtol=0)  # batched convolutions round differently
        torch.testing.assert_close(a.reference, b.reference, atol=1e-4, rtol=0)
        assert a.shifts == b.shifts and a.scales == b.scales
    assert together[1].shifts != together[2].shifts  # each registered onto its own part
    noisy = core.edit_masked(model, images[:2], [(d, 3.0)], masks[:2], eta_tail=0.5, **opts)
    one = core.edit(model, images[1:2], [(d, 3.0)], mask=masks[1], eta_tail=0.5, **opts)
    torch.testing.assert_close(noisy[1].images, one.images, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="for each image: 2 for 3 images"):
        core.edit_masked(model, images, [(d, 3.0)], masks[:2], **opts)
    with pytest.raises(InputError, match="edit_masked"):
        core.edit(model, images[:2], [(d, 3.0)], mask=mask, **opts)


def test_shared_at_re_localises_in_the_dtype_asked_and_inverts_in_the_models(model, image, mask):
    """``shared_at(autocast=bfloat16)`` (the masked previews on a device with native bfloat16) runs
    the re-projection's network passes in bfloat16: vectors close to float32's but not the same,
    returned in float32; the inversion is the model's either way (the same state to the bit)."""
    v = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * mask
    t = core.to_timestep(model, 0.6)
    dirs = [core.Direction(u / u.norm(), t) for u in v]
    opts = core.options_for(model, steps=6, null_rank=3)
    full = core.shared_at(model, image[None], t, dirs, opts, mask, tol=1e-3)
    half = core.shared_at(model, image[None], t, dirs, opts, mask, tol=1e-3, autocast=torch.bfloat16)
    assert torch.equal(full.x_t, half.x_t)
    assert half.vectors.dtype == torch.float32 and not torch.equal(full.vectors, half.vectors)
    cos = torch.nn.functional.cosine_similarity(full.vectors.flatten(1), half.vectors.flatten(1))
    assert bool((cos > 0.98).all()), cos
