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
