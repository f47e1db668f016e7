"""The model-family seam: a test double of a latent family (a state that is a smaller latent, a
predictor whose output is decoded pixels) runs through the same edit core as pixel models, with
nothing in the core but the adapter changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from locobank import core
from locobank.errors import FingerprintMismatch
from locobank.loco.denoiser import Denoiser
from locobank.loco.jacobian import max_principal_angle
from locobank.models import LoadedModel


class LatentDouble:
    """A latent family in miniature: images 3 x 8 x 8, states 2 x 4 x 4; the "VAE" pools and
    mixes channels, the "decoder" mixes back and upsamples."""

    name = "latent-double"
    clip_sample = False
    cond = None  # takes no prompt

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.enc = torch.randn(2, 3, generator=g) / 2
        self.dec = torch.linalg.pinv(self.enc)  # (3, 2)
        w = torch.randn(2, 2, 3, 3, generator=g) / 4
        acp = torch.linspace(0.9999, 0.02, 1000, dtype=torch.float64)
        self.denoiser = Denoiser(net=lambda z, t: torch.tanh(F.conv2d(z, w, padding=1)) + 0.3 * z,
                                 alphas_cumprod=acp)
        self.state_shape = (2, 4, 4)
        self.image_shape = (3, 8, 8)

    def encode(self, images):
        return torch.einsum("oc,bchw->bohw", self.enc, F.avg_pool2d(images, 2))

    def decode(self, states):
        return F.interpolate(torch.einsum("co,bohw->bchw", self.dec, states), scale_factor=2, mode="nearest")

    def predictor(self, t):
        return lambda z: self.decode(self.denoiser.pmp(z[None], t))[0]

    def state_change(self, image_change, at):
        return self.encode(at + image_change) - self.encode(at)  # linear here: the same as encode(image_change)

    def state_mask(self, mask):
        return F.max_pool2d(mask.float()[None, None], 2)[0, 0].bool()


@pytest.fixture()
def model():
    fam = LatentDouble()
    return LoadedModel(unet=None, scheduler=None, denoiser=fam.denoiser, model_id="double", revision="0",
                       fingerprint="d0", resolution=8, channels=3, device=torch.device("cpu"), dtype=torch.float32,
                       family=fam)


def _mask():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:6, 1:5] = True
    return m


@pytest.mark.slow
def test_directions_of_a_latent_family_are_the_dense_svd_of_the_decoded_predictor(model):
    """find_directions on states, with the mask on decoded pixels, against a dense Jacobian SVD."""
    torch.manual_seed(1)
    z = torch.randn(2, 4, 4)
    t = 500
    fn = model.family.predictor(t)
    J = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(2, 4, 4)).reshape(-1), z.reshape(-1))
    inside = _mask()[None].expand(3, 8, 8).reshape(-1)
    _, S, Vh = torch.linalg.svd(J[inside].double())
    found = core.find_directions(model, z, t, _mask(), rank=3, null_rank=0, iters=200, tol=1e-8)
    assert found.vectors.shape == (3, 2, 4, 4)
    assert max_principal_angle(found.vectors.reshape(3, -1).double(), Vh[:3]) < 1e-2
    torch.testing.assert_close(found.singular_values.double(), S[:3], rtol=1e-3, atol=1e-6)


def test_null_projection_and_edit_run_unchanged_on_a_latent_family(model):
    """Projected directions are orthogonal to the outside basis; edit() inverts, adds the
    direction on the latent and decodes; a zero edit is the reconstruction; masks stay pixels."""
    torch.manual_seed(2)
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    t = 400
    xt = core.invert(model, x, t, 10)
    assert xt.shape == (1, 2, 4, 4)
    found = core.find_directions(model, xt, t, _mask(), rank=2, null_rank=3, iters=100)
    assert torch.allclose(found.vectors.reshape(2, -1).norm(dim=1), torch.ones(2), atol=1e-4)
    zero = core.edit(model, x, [(found[0], 0.0)], steps=10)
    torch.testing.assert_close(zero.images, core.sample(model, xt, t, 10))
    res = core.edit(model, x, [(found[0], 2.0)], steps=10)
    assert res.images.shape == (1, 3, 8, 8) and (res.images - zero.images).abs().max() > 1e-3
    masked = core.edit(model, x, [(found[0], 2.0)], steps=10, mask=_mask(), null_rank=3, spill_passes=1)
    assert masked.images.shape == (1, 3, 8, 8) and torch.isfinite(masked.images).all()


def test_a_pixel_shaped_direction_is_refused_by_a_latent_family(model):
    pixel = core.Direction(torch.randn(3, 8, 8), 400, "d0")
    with pytest.raises(FingerprintMismatch, match="different resolution or model family"):
        core.edit(model, torch.zeros(1, 3, 8, 8), [(pixel, 1.0)], steps=5)


def test_the_edit_core_never_asks_which_family_it_holds():
    """No module of the core names a family or reads its name: a new family is only an adapter."""
    core_dir = Path(core.__file__).parent
    for path in core_dir.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"family\.name|\.kind\b|PixelFamily|UNet2D|diffusers", text), path.name


# A branch on which family a model is: its name or kind compared, a family class tested, a family
# name compared as a string. Reading them into a message or a record is fine; deciding on them is not.
_FAMILY_BRANCH = re.compile(
    r"(?:family\.name|(?<!dtype)\.kind)\s*(?:[!=]=|\bnot\s+in\b|\bin\b)"
    r"|(?:[!=]=|\bin\b)\s*[(\[{]?\s*[\"'](?:pixel|latent)[\"']"
    r"|[\"'](?:pixel|latent)[\"']\s*[!=]="
    r"|isinstance\([^)]*(?:Pixel|Latent)Family")


def _outside_the_family_seam() -> list[Path]:
    """Every module of locobank but models/ (where the families live), and the CLI's."""
    root = Path(core.__file__).parents[2]
    pkg = root / "locobank"
    mods = [p for p in pkg.rglob("*.py") if (pkg / "models") not in p.parents]
    return sorted(mods + list((root / "cli").glob("*.py")))


def test_the_family_branch_check_catches_a_branch():
    """The pattern finds branches as they were written before the seam closed, and nothing else."""
    for line in ('if model.family.name != "latent":', 'if model.kind == "pixel":', "if lm.kind in ('pixel',):",
                 "if isinstance(model.family, LatentFamily):", 'ok = "latent" == fam.name'):
        assert _FAMILY_BRANCH.search(line), line
    for line in ("kind=model.kind, revision=model.revision", 'if a.dtype.kind not in "fiu":',
                 'MODEL_KINDS = ("pixel", "latent")', 'f"an unconditional {model.kind} model"',
                 "if model.family.cond is None:"):
        assert not _FAMILY_BRANCH.search(line), line


def test_nothing_outside_models_branches_on_the_family():
    """A family says what it does (``family.cond``: its condition, None for none); only
    :mod:`locobank.models` may know which family it is."""
    root = Path(core.__file__).parents[2]
    found = {p.relative_to(root).as_posix(): m.group(0) for p in _outside_the_family_seam()
             for m in [_FAMILY_BRANCH.search(p.read_text())] if m}
    assert found == {}
