"""The toy latent model's trainer resumes from a checkpoint to the same state as an unbroken run,
and rebuilds a lost UNet state from its exported pipeline."""

from __future__ import annotations

import pytest
import torch

from locobank.paths import DATA
from locobank.toyworld.training import latent as T
from locobank.toyworld.training.dataset import training_faces
from locobank.toyworld.training.state import read_step



def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_vae_and_unet_resume_to_the_state_of_an_unbroken_run(tmp_path):
    kw = dict(n_faces=48, batch_size=4, save_every=2)
    straight, _ = T.train_vae(tmp_path / "a" / "vae.safetensors", steps=4, **kw)
    T.train_vae(tmp_path / "b" / "vae.safetensors", steps=2, **kw)
    assert read_step(tmp_path / "b" / "vae.safetensors") == 2
    resumed, meta = T.train_vae(tmp_path / "b" / "vae.safetensors", steps=4, **kw)
    assert meta["step"] == 4 and _same(straight, resumed)

    tok, te = T.build_text(tmp_path / "text", DATA / "models" / "toyfaces-clip")
    lat = T.encode_faces(straight, training_faces(48, tmp_path / "a"))
    unet_a, _ = T.train_unet(tmp_path / "a" / "unet.safetensors", lat, 1.0, tok, te, steps=4, **kw)
    T.train_unet(tmp_path / "b" / "unet.safetensors", lat, 1.0, tok, te, steps=2, **kw)
    unet_b, meta = T.train_unet(tmp_path / "b" / "unet.safetensors", lat, 1.0, tok, te, steps=4, **kw)
    assert meta["step"] == 4 and _same(unet_a, unet_b)


@pytest.mark.slow
def test_a_lost_unet_state_is_rebuilt_from_the_export(tmp_path):
    import json

    from diffusers import UNet2DConditionModel

    out = tmp_path / "pipe"
    (out / "unet").mkdir(parents=True)
    unet = UNet2DConditionModel(**T.UNET_CONFIG)
    unet.save_pretrained(str(out / "unet"))
    (out / "training.json").write_text(json.dumps({"unet": {"step": 7, "seconds": 1.0, "hardware": []}}))
    state = tmp_path / "state" / "unet.safetensors"
    T._unet_from_export(out, state)
    assert read_step(state) == 7
    again, meta = T.train_unet(state, (torch.zeros(8, 4, 16, 16), torch.ones(8, 4, 16, 16)), 1.0,
                               *T.build_text(tmp_path / "text", DATA / "models" / "toyfaces-clip"), steps=7,
                               n_faces=8, batch_size=2)
    assert meta["warm_from"] == 7 and _same(again, unet)
