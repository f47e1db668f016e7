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


def save_tiny_sd(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A random StableDiffusionPipeline (16x16 images, 8x8x4 latents) with a CLIPTokenizer written
    from local vocab.json/merges.txt, as diffusers' own tests build theirs: no download."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from locobank.toyworld.training.text_encoder import write_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=4, sample_size=16)
    tok_dir = write_tokenizer(Path(folder) / "_tokenizer_src", 2000, 16)
    tok = CLIPTokenizer.from_pretrained(str(tok_dir))
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=16, bos_token_id=512 + 2000,
                                      eos_token_id=513 + 2000, pad_token_id=513 + 2000))
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=te.eval(), tokenizer=tok, unet=unet.eval(),
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    import shutil

    shutil.rmtree(Path(folder) / "_tokenizer_src")
    return Path(folder)


def write_sd_inputs(root: Path) -> None:
    """Two random 16 x 16 images (``a.png``, ``b.png``) and one mouth mask (``mouth.png``) for the
    tiny text-to-image pipeline's manifests."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 3:12] = 255
    Image.fromarray(mask).save(root / "mouth.png")
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"{name}.png")


def load_bench(name: str):
    """A benchmark script under tests/bench/ loaded as a module, so a test can run its ``main``."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "bench" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench
