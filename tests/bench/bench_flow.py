"""Benchmark: LOCO direction finding on the flow-matching transformers, SD3 (medium) and FLUX.1-dev,
at their real widths with random weights.

The transformer is built from the model's own config (written out below; no download) with
``--layers`` of its blocks (SD3: joint blocks, 24 in SD3 medium; FLUX: that many double blocks and
twice as many single blocks, 19 + 38 in FLUX.1), the VAE at full size, and the text encoders at
their real output widths but one narrow layer each (they run once per prompt, outside the
Jacobian; T5's sequence length is ``--text-tokens``). The folder is written by a child process and
loaded through ``locobank.models.load_model``; then ``core.find_directions`` runs under the
model's guidance with a mask, ``tol=0``, and :func:`bench_latent.measure` prints one forward pass
(the predictor ``x0_hat(z)``, no grad), seconds per subspace iteration, forward-pass equivalents
and peak memory, from the same run. Run:

    OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_flow.py --family flux --device cpu   # 128 px, 1 layer
    .venv/bin/python tests/bench/bench_flow.py --family flux --layers 19 --size 1024 --text-tokens 512 --dtype bf16
    .venv/bin/python tests/bench/bench_flow.py --family sd3 --tiny                          # toy widths, seconds

Seconds per iteration scale about linearly with ``--layers`` at a fixed size (the VAE decode is
the rest); the printed figures are for the depth given, never extrapolated here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_latent  # noqa: E402
from locobank.models import conditioned, load_model  # noqa: E402

# stabilityai/stable-diffusion-3-medium-diffusers and black-forest-labs/FLUX.1-dev: transformer/,
# vae/ and scheduler/ configs, less the depth (--layers).
SD3 = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, attention_head_dim=64,
           num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
           pos_embed_max_size=192)
FLUX = dict(patch_size=1, in_channels=64, attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
            pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))
VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2,
           norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False)
VAE_SCALE = {"sd3": dict(scaling_factor=1.5305, shift_factor=0.0609), "flux": dict(scaling_factor=0.3611, shift_factor=0.1159)}
SCHEDULER = {"sd3": dict(shift=3.0), "flux": dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                  base_image_seq_len=256, max_image_seq_len=4096)}
CLIP_WIDTHS = {"clip_l": 768, "clip_g": 1280}
TINY_SD3 = dict(SD3, in_channels=4, out_channels=4, attention_head_dim=4, num_attention_heads=2, joint_attention_dim=16,
                caption_projection_dim=8, pooled_projection_dim=16, sample_size=8, pos_embed_max_size=32)
TINY_FLUX = dict(FLUX, in_channels=16, attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                 pooled_projection_dim=8, axes_dims_rope=(2, 2, 4))
TINY_VAE = dict(VAE, latent_channels=4, block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4)
GUIDANCE = {"sd3": 7.0, "flux": 3.5}
PROMPT = "a photo of a smiling face"


def text_parts(folder: Path, args: argparse.Namespace) -> dict:
    """The tokenizers and one-layer text encoders at the real output widths (toy ones with --tiny)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from locobank.toyworld.training.text_encoder import write_tokenizer
    from tiny_flow import t5_tokenizer, tiny_t5

    out = {}
    for i, (name, width) in enumerate(CLIP_WIDTHS.items()):
        width = 8 if args.tiny else width
        tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(folder / name, 2000, 77)))
        cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=77, projection_dim=width,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        out[name] = (tok, (CLIPTextModelWithProjection if args.family == "sd3" else CLIPTextModel)(cfg).eval())
    t5tok = t5_tokenizer(folder / "t5", length=args.text_tokens)
    out["t5"] = (t5tok, tiny_t5(t5tok, 16 if args.tiny else 4096, 3))
    return out


def save(folder: Path, args: argparse.Namespace) -> None:
    """Write the random-weight pipeline folder for ``args.family`` at ``args.size`` px."""
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel,
                           SD3Transformer2DModel, StableDiffusion3Pipeline)

    bench_latent._quiet()
    text = text_parts(folder.parent / "text-src", args)
    torch.manual_seed(0)
    vae = AutoencoderKL(sample_size=args.size, **(TINY_VAE if args.tiny else VAE), **VAE_SCALE[args.family]).eval()
    sched = FlowMatchEulerDiscreteScheduler(**SCHEDULER[args.family])
    if args.family == "sd3":
        net = SD3Transformer2DModel(num_layers=args.layers, **(TINY_SD3 if args.tiny else SD3)).eval()
        (tok, te), (tok2, te2), (tok3, te3) = text["clip_l"], text["clip_g"], text["t5"]
        pipe = StableDiffusion3Pipeline(transformer=net, vae=vae, scheduler=sched, text_encoder=te, tokenizer=tok,
                                        text_encoder_2=te2, tokenizer_2=tok2, text_encoder_3=te3, tokenizer_3=tok3)
    else:
        net = FluxTransformer2DModel(num_layers=args.layers, num_single_layers=2 * args.layers,
                                     **(TINY_FLUX if args.tiny else FLUX)).eval()
        (tok, te), (tok2, te2) = text["clip_l"], text["t5"]
        pipe = FluxPipeline(transformer=net, vae=vae, scheduler=sched, text_encoder=te, tokenizer=tok,
                            text_encoder_2=te2, tokenizer_2=tok2)
    pipe.save_pretrained(folder, max_shard_size="2GB")
    (folder / "locobank.json").write_text(json.dumps({"resolution": args.size}))
    shutil.rmtree(folder.parent / "text-src")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=("sd3", "flux"), default="flux")
    ap.add_argument("--layers", type=int, default=1, help="transformer depth (SD3 medium 24; FLUX.1 19 (+38 single))")
    ap.add_argument("--size", type=int, default=None, help="image side; default 1024 on cuda, 128 on CPU, 16 --tiny")
    ap.add_argument("--text-tokens", type=int, default=None, help="T5 tokens (SD3 256, FLUX.1-dev 512; 64 on CPU)")
    ap.add_argument("--rank", type=int, default=5)
    ap.add_argument("--null-rank", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=2, help="vectors per batched JVP/VJP call (bounds memory)")
    ap.add_argument("--iters", type=int, nargs="+", default=[1])
    ap.add_argument("--t", type=int, default=700)
    ap.add_argument("--guidance", type=float, default=None, help="default: the pipeline's (SD3 7.0, FLUX.1-dev 3.5)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="fp32 (default), bf16, fp16 (not on CPU)")
    ap.add_argument("--offload-text", action="store_true", help="text encoders on the CPU (locobank.json offload_text)")
    ap.add_argument("--tiny", action="store_true", help="toy widths of the same layout (smoke test)")
    ap.add_argument("--save-to", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.size = args.size or (16 if args.tiny else 1024 if cuda else 128)
    args.text_tokens = args.text_tokens or (16 if args.tiny else 64 if not cuda else 512 if args.family == "flux" else 256)
    args.guidance = GUIDANCE[args.family] if args.guidance is None else args.guidance
    args.arch = (f"{'SD3 medium' if args.family == 'sd3' else 'FLUX.1-dev'} widths, {args.layers} layer(s), "
                 f"{args.text_tokens} T5 tokens")
    args.passes = "guided transformer x2" if args.family == "sd3" else "transformer, guidance embedded"
    if args.size % 16 or min(args.iters) < 1 or args.layers < 1:
        ap.error("--size must be a multiple of 16, --iters and --layers at least 1")
    return args


def build(folder: Path, argv: list[str]) -> None:
    """Write the folder in a child process, so its build never counts in this one's peak memory."""
    subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--save-to", str(folder)], check=True)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print it; returns the figures."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.save_to is not None:
        save(args.save_to, args)
        return {}
    bench_latent._quiet()
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.family}-") as tmp:
        build(Path(tmp) / args.family, argv)
        if args.offload_text:
            cfg = Path(tmp) / args.family / "locobank.json"
            cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "offload_text": True}))
        model = conditioned(load_model(Path(tmp) / args.family, device=args.device, dtype=args.dtype), PROMPT,
                            guidance=args.guidance)
    return bench_latent.measure(model, args)


if __name__ == "__main__":
    main()
