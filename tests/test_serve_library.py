"""The library hooks `locobank serve` stands on: an image settled once for many strengths, and a
catalog opened read-only. Tiny seeded models, fast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from locobank import core
from locobank.apply import Prepared, edit_settled, settle, sweep
from locobank.catalog import Catalog
from locobank.errors import CatalogError, InputError
from locobank.models import load_model
from tiny import save_tiny_pipeline

pytest_plugins = ["catalog_support"]  # fixtures: sqlite_migrated_url, ...


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    model = load_model(save_tiny_pipeline(tmp_path_factory.mktemp("m") / "tiny", size=8))
    g = torch.Generator().manual_seed(0)
    t = core.to_timestep(model, 0.5)
    dirs = []
    for i in range(2):
        v = torch.randn(3, 8, 8, generator=g)
        dirs.append(core.Direction(v / v.norm(), t, model.fingerprint, name=f"d{i}"))
    return Prepared(model, dirs, [3.0, -2.0])


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "face.png")
    m = np.zeros((8, 8), np.uint8)
    m[2:5, 3:7] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    return tmp_path / "face.png", tmp_path / "mask.png"


@pytest.mark.parametrize("masked", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_settled_image_edits_as_a_sweep_does_at_every_strength(prep, files, masked):
    image, mask = files
    kw = dict(options=_options(prep, spill_passes=1), mask=mask if masked else None)
    settled = settle(prep, image, **kw)
    assert settled.inverted and settled.nbytes() > 0
    for s in (4.0, -6.0):
        expected = sweep(prep, image, [s], **kw)[0]  # settled afresh
        got = edit_settled(settled, prep, [s] + prep.strengths[1:])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert not torch.equal(edit_settled(settled, prep, [4.0, -2.0]), edit_settled(settled, prep, [8.0, -2.0]))


def test_a_sweep_edits_as_apply_does_at_each_strength(prep, files):
    """The one sweep (settle once, then each strength) against a fresh edit per strength."""
    from locobank.apply import apply_to_images

    image, _ = files
    opts = _options(prep)
    strip = sweep(prep, image, [4.0, -6.0], options=opts)
    for s, got in zip((4.0, -6.0), strip):
        (expected,) = apply_to_images(Prepared(prep.model, prep.directions, [s] + prep.strengths[1:]), [image],
                                      options=opts)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def _options(prep, **given):
    """Few steps and a small null rank, for speed."""
    return prep.model.settings.edit_options(steps=4, null_rank=3, **given)


@pytest.mark.slow
def test_a_settled_image_does_not_invert_again(prep, files, monkeypatch):
    image, mask = files
    settled = settle(prep, image, options=_options(prep, spill_passes=0), mask=mask)
    calls = []
    real = core.invert
    monkeypatch.setattr(core, "invert", lambda *a, **k: calls.append(1) or real(*a, **k))
    from locobank.loco import ddim

    real_ddim = ddim.invert
    monkeypatch.setattr(ddim, "invert", lambda *a, **k: calls.append(1) or real_ddim(*a, **k))
    edit_settled(settled, prep, [5.0, 1.0])
    assert calls == []
    with pytest.raises(InputError, match="one strength per direction"):
        edit_settled(settled, prep, [5.0])


def test_a_read_only_catalog_reads_and_refuses_every_write(sqlite_migrated_url):
    with Catalog.open(sqlite_migrated_url) as cat:
        cat.get_or_create_model("m", fingerprint="0123456789abcdef", resolution=8, channels=3)
    with Catalog.open(sqlite_migrated_url, read_only=True) as cat:
        assert cat.get_model("0123456789abcdef").model_id == "m"
        with pytest.raises(CatalogError, match="readonly|read-only|read only"):
            cat.get_or_create_model("n", fingerprint="fedcba9876543210", resolution=8, channels=3)
        assert cat.stats()["directions"] == 0
    with pytest.raises(InputError, match="cannot be upgraded"):
        Catalog.open(sqlite_migrated_url, read_only=True, upgrade=True)


@pytest.mark.slow
def test_a_second_strength_reuses_the_unedited_sample(prep, files, monkeypatch):
    from locobank.loco import ddim

    image, mask = files
    settled = settle(prep, image, options=_options(prep, spill_passes=1), mask=mask)
    walks = []
    real = ddim.sample
    monkeypatch.setattr(ddim, "sample", lambda *a, **k: walks.append(1) or real(*a, **k))
    first = edit_settled(settled, prep, [4.0, 1.0])
    n_first, walks[:] = len(walks), []
    again = edit_settled(settled, prep, [4.0, 1.0])
    assert n_first == 3 and len(walks) == 2  # reference, edit, one pass; then edit and pass only
    torch.testing.assert_close(again, first, rtol=0, atol=0)
