"""Tiny seeded models for tests: a UNet2DModel with an attention block, saved like a Hub model."""

from __future__ import annotations

from pathlib import Path

import torch


def tiny_unet(size: int = 8, seed: int = 0):
    """A random UNet2DModel with an attention block, small enough for a dense Jacobian."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8,
    )
    return unet.eval().requires_grad_(False)


def save_tiny_pipeline(folder: Path, size: int = 8, seed: int = 0) -> Path:
    """Write a DDPMPipeline folder, the same layout as google/ddpm-cifar10-32."""
    from diffusers import DDPMPipeline, DDPMScheduler

    pipe = DDPMPipeline(unet=tiny_unet(size, seed), scheduler=DDPMScheduler(num_train_timesteps=1000))
    pipe.save_pretrained(folder)
    return folder


TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1, "mlp_ratio": 2.0},
}


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random open_clip model in the local-dir layout (open_clip_config.json + safetensors)."""
    import json

    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_CLIP_CFG,
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder
