"""Benchmark: direction finding for the families of issue 34 (SDXL, LCM, DeepFloyd IF stage I) at their
real architectures with random weights, through ``bench_latent``'s measurement (the same phases,
forward-pass equivalents and peak memory; see its docstring).

- ``sdxl``: stable-diffusion-xl-base-1.0's UNet (2.6B parameters: text_time conditions, transformer
  depths 1/2/10, cross-attention 2048), its VAE, CLIP ViT-L and OpenCLIP bigG text encoders.
- ``lcm``: LCM_Dreamshaper_v7, i.e. SD 1.5's UNet with a 256-wide guidance embedding
  (``time_cond_proj_dim``), SD 1.5's VAE and CLIP ViT-L, an LCMScheduler.
- ``if``: IF stage I's UNet layout (ResNet down/up sampling blocks, simple cross-attention blocks,
  4096-wide T5 input, 6 output channels for noise and variance) at widths 256-1024 (IF-I-M's scale;
  not a published config: IF-I-XL's 4.3B parameters do not fit the CPU here), T5-XXL's width.

``--small-text`` builds the text encoders with one layer (their width kept): they run once per
condition, never inside a JVP, so the per-iteration figures do not change; it keeps the build in a
shared machine's memory. Run, e.g.:

    OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_families.py --family lcm --device cpu --size 64 \\
        --rank 1 --null-rank 1 --chunk 2 --iters 1 --small-text
    .venv/bin/python tests/bench/bench_families.py --family sdxl --size 1024     # on a GPU
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the local T5 tokenizer

import bench_latent as bl  # noqa: E402

from locobank.models import conditioned, load_model  # noqa: E402

SDXL_UNET = dict(in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, norm_num_groups=32)
BIGG_TEXT = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                 max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
IF_UNET = dict(in_channels=3, out_channels=6, layers_per_block=3, block_out_channels=(256, 512, 768, 1024),
               down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
               up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
               mid_block_type="UNetMidBlock2DSimpleCrossAttn", attention_head_dim=64, cross_attention_dim=1024,
               encoder_hid_dim=4096, addition_embed_type="text", addition_embed_type_num_heads=64,
               resnet_time_scale_shift="scale_shift", act_fn="gelu", norm_num_groups=32)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu")
EULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
             steps_offset=1, timestep_spacing="leading")  # SDXL base's scheduler
ARCH = {"sdxl": "SDXL base architecture", "lcm": "LCM (SD 1.5 + guidance embedding) architecture",
        "if": "IF stage-I layout at IF-I-M scale"}


def _clip(size: int, small: bool, text: dict, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from locobank.toyworld.training.text_encoder import write_tokenizer

    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(Path(tempfile.mkdtemp()), bl.CLIP_MERGES, 77)))
    cfg = CLIPTextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **dict(text, num_hidden_layers=1 if small else
                                                               text["num_hidden_layers"]))
    return tok, (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()


def save_family(family: str, folder: Path, size: int, small: bool) -> None:
    """Write a random-weight pipeline folder of ``family`` for ``size``-pixel images."""
    import diffusers as d

    torch.manual_seed(0)
    sched = dict(bl.SCHEDULER)
    sched.pop("skip_prk_steps")
    if family in ("sdxl", "lcm"):
        vae = d.AutoencoderKL(sample_size=size, **dict(bl.SD15_VAE, scaling_factor=0.13025 if family == "sdxl"
                                                        else 0.18215)).eval()
        tok, te = _clip(size, small, bl.SD15_TEXT)
    if family == "sdxl":
        _, te2 = _clip(size, small, BIGG_TEXT, with_projection=True)
        unet = d.UNet2DConditionModel(sample_size=size // 8, **SDXL_UNET).eval()
        pipe = d.StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok,
                                           tokenizer_2=tok, unet=unet, scheduler=d.EulerDiscreteScheduler(**EULER),
                                           add_watermarker=False)
    elif family == "lcm":
        unet = d.UNet2DConditionModel(sample_size=size // 8, time_cond_proj_dim=256, **bl.SD15_UNET).eval()
        pipe = d.LatentConsistencyModelPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                                scheduler=d.LCMScheduler(**sched), safety_checker=None,
                                                feature_extractor=None, image_encoder=None,
                                                requires_safety_checker=False)
    else:
        pipe = _if_pipeline(size, small)
    pipe.save_pretrained(folder, max_shard_size="2GB")


def _if_pipeline(size: int, small: bool):
    import diffusers as d
    from transformers import T5Config, T5EncoderModel

    from tiny_families import write_t5_tokenizer

    tok = write_t5_tokenizer(Path(tempfile.mkdtemp()))
    te = T5EncoderModel(T5Config(vocab_size=len(tok), pad_token_id=0, eos_token_id=1,
                                 **dict(T5_XXL, num_layers=1 if small else T5_XXL["num_layers"]))).eval()
    unet = d.UNet2DConditionModel(sample_size=size, **IF_UNET).eval()
    sched = d.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                            thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.5)
    return d.IFPipeline(tokenizer=tok, text_encoder=te, unet=unet, scheduler=sched, safety_checker=None,
                        feature_extractor=None, watermarker=None, requires_safety_checker=False)


def main(argv: list[str] | None = None) -> dict:
    """Build the family's pipeline in a child process, load it as a user would, and measure."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--family", choices=sorted(ARCH), required=True)
    ap.add_argument("--small-text", action="store_true")
    own, rest = ap.parse_known_args(argv)
    args = bl.parse(rest)
    if args.save_to is not None:
        bl._quiet()
        save_family(own.family, args.save_to, args.size, own.small_text)
        return {}
    bl._quiet()
    args.arch = ARCH[own.family] + (" (one-layer text encoders)" if own.small_text else "")
    with tempfile.TemporaryDirectory(prefix=f"bench-{own.family}-") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--family", own.family, "--save-to",
               str(Path(tmp) / own.family), "--size", str(args.size)] + (["--small-text"] if own.small_text else [])
        subprocess.run(cmd, check=True)
        model = load_model(Path(tmp) / own.family, device=args.device, dtype=args.dtype)
        model = conditioned(model, bl.PROMPT, guidance=args.guidance)
    return bl.measure(model, args)


if __name__ == "__main__":
    main()
