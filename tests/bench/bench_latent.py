"""Benchmark: T-LOCO direction finding at the Stable Diffusion 1.5 architecture, random weights.

The UNet, VAE and CLIP text encoder are built from SD 1.5's own configs (written out below; no
download), saved as a StableDiffusionPipeline folder by a child process (so its memory stays out
of this process's peak) and loaded through ``locobank.models.load_model``, the user's path. Then
``core.find_directions`` runs on a guided (7.5) latent state with a mask, ``tol=0`` so it runs
exactly ``--iters`` iterations of whole Krylov blocks. From the same run it prints one guided forward pass plus decode
(the predictor ``x0_hat(z)``, no grad), seconds per subspace iteration, that time in
forward-pass equivalents, and peak memory. Run:

    .venv/bin/python tests/bench/bench_latent.py                 # cuda: 512x512 (latent 64x64)
    OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_latent.py --device cpu --size 256 --chunk 2 --iters 1
    .venv/bin/python tests/bench/bench_latent.py --tiny          # toy-sized configs, seconds

Seconds per iteration come from the phase times of each run (total minus the linearisation and
the final check of the directions, divided by the iterations); with two or more ``--iters`` values
the difference of the totals is printed beside it as a cross-check.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank import core  # noqa: E402
from locobank.loco import jacobian  # noqa: E402
from locobank.loco.jacobian import Linearization, math_attention  # noqa: E402
from locobank.models import LoadedModel, conditioned, load_model  # noqa: E402

# SD 1.5's configs (stable-diffusion-v1-5: unet/, vae/, text_encoder/ config.json), less the
# sample sizes, which follow --size. The tiny ones keep the layout at toy width.
SD15_UNET = dict(in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
                 attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True,
                 freq_shift=0, downsample_padding=1, mid_block_scale_factor=1, center_input_sample=False)
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, norm_num_groups=32, act_fn="silu", scaling_factor=0.18215)
SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, layer_norm_eps=1e-5)
TINY_UNET = dict(SD15_UNET, layers_per_block=1, block_out_channels=(8, 16), cross_attention_dim=16,
                 attention_head_dim=2, norm_num_groups=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
TINY_VAE = dict(SD15_VAE, block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4)
TINY_TEXT = dict(SD15_TEXT, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=16, projection_dim=16)
CLIP_MERGES = 48894  # CLIP's full BPE: 512 byte tokens + 48,894 merges + 2 specials = 49,408 ids
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
PROMPT = "a photo of a smiling face"


def save_sd(folder: Path, size: int, tiny: bool, seed: int = 0) -> Path:
    """Write a random-weight StableDiffusionPipeline folder at SD 1.5's architecture (or the tiny
    one) for ``size``-pixel images, with a CLIPTokenizer written from local vocab/merges files."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from locobank.toyworld.training.text_encoder import write_tokenizer

    _quiet()
    text = TINY_TEXT if tiny else SD15_TEXT
    tok_dir = write_tokenizer(Path(folder).parent / "tokenizer-src", 2000 if tiny else CLIP_MERGES,
                              text["max_position_embeddings"])
    tok = CLIPTokenizer.from_pretrained(str(tok_dir))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=size // 8, **(TINY_UNET if tiny else SD15_UNET))
    vae = AutoencoderKL(sample_size=size, **(TINY_VAE if tiny else SD15_VAE))
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **text))
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=te.eval(), tokenizer=tok, unet=unet.eval(),
                                   scheduler=PNDMScheduler(**SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, max_shard_size="1GB")
    return folder


def _quiet() -> None:
    """No progress bars from diffusers and transformers while saving and loading."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_seconds(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, reps: int,
                    math: bool = False) -> float:
    """Mean seconds of ``fn(z)`` under no grad (after one warm-up call); ``math``: on the math SDPA
    kernel that forward-mode AD runs on."""
    ctx = math_attention() if math else torch.no_grad()
    with torch.no_grad(), ctx:
        fn(z)
        _sync(z.device)
        start = time.perf_counter()
        for _ in range(reps):
            fn(z)
        _sync(z.device)
    return (time.perf_counter() - start) / reps


class TimedLinearization(Linearization):
    """locobank's Linearization, recording how long its set-up and each JVP/VJP batch take."""

    runs: list["TimedLinearization"] = []

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 16, **given):
        start = time.perf_counter()
        super().__init__(fn, x, chunk=chunk, **given)
        _sync(x.device)
        self.setup = time.perf_counter() - start
        self.calls: list[tuple[str, int, float]] = []
        TimedLinearization.runs.append(self)

    def _timed(self, kind: str, f: Callable[[torch.Tensor], torch.Tensor], T: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = f(T)
        _sync(T.device)
        self.calls.append((kind, int(T.shape[0]), time.perf_counter() - start))
        return out

    def jvp(self, V: torch.Tensor) -> torch.Tensor:
        return self._timed("jvp", super().jvp, V)

    def vjp(self, U: torch.Tensor) -> torch.Tensor:
        return self._timed("vjp", super().vjp, U)


@contextmanager
def timed_linearization() -> Iterator[list[TimedLinearization]]:
    """find_directions builds a :class:`TimedLinearization` instead of the plain one, unchanged otherwise."""
    find = sys.modules["locobank.core.find"]
    TimedLinearization.runs = []
    find.Linearization = TimedLinearization
    try:
        yield TimedLinearization.runs
    finally:
        find.Linearization = Linearization


def time_find(model: LoadedModel, z: torch.Tensor, t: int, mask: torch.Tensor, args: argparse.Namespace,
              iters: int) -> dict:
    """One ``find_directions`` run of exactly ``iters`` iterations, split into its phases."""
    _sync(z.device)
    start = time.perf_counter()
    # Whole Krylov blocks: one iteration pushes every vector of both bases (2 more than each rank), as
    # in the figures of docs/performance.md; the shipped smaller blocks change how many iterations a
    # job takes, not what one vector costs (printed per vector below).
    with timed_linearization() as runs, jacobian.krylov_block(0):
        found = core.find_directions(model, z, t, mask, rank=args.rank, null_rank=args.null_rank, iters=iters,
                                     tol=0.0, null_tol=0.0, chunk=args.chunk, seed=0)
    _sync(z.device)
    total = time.perf_counter() - start
    (lin,) = runs
    check = lin.calls[-1][2]  # the last JVP: find_directions' check of the finished directions
    d = found.diagnostics
    calls = lin.calls[:-1]
    jvps, vjps = (sum(n for k, n, _ in calls if k == kind) for kind in ("jvp", "vjp"))
    jvp_s, vjp_s = (sum(s for k, _, s in calls if k == kind) for kind in ("jvp", "vjp"))
    return {"iters": iters, "total": total, "setup": lin.setup, "check": check,
            "per_iter": (total - lin.setup - check) / iters, "done": (d["iterations"], d["null_iterations"]),
            "jvps": jvps, "vjps": vjps, "jvp_s": jvp_s / max(jvps, 1), "vjp_s": vjp_s / max(vjps, 1)}


def peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak GiB so far: allocated on the GPU, or the process's RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "GPU allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process RSS"


def build(folder: Path, args: argparse.Namespace) -> None:
    """Write the pipeline folder in a child process, so its build and save never count in this one's peak."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--save-to", str(folder), "--size", str(args.size)]
    subprocess.run(cmd + (["--tiny"] if args.tiny else []), check=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=None, help="image size (latent size/8); default 512 on cuda, "
                    "256 on CPU, 64 with --tiny")
    ap.add_argument("--rank", type=int, default=5)
    ap.add_argument("--null-rank", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=4, help="vectors per batched JVP/VJP call (bounds memory)")
    ap.add_argument("--iters", type=int, nargs="+", default=None,
                    help="iteration counts, one find_directions run each (default: 1 2 on cuda, 1 on CPU)")
    ap.add_argument("--t", type=int, default=700, help="edit timestep (T-LOCO's default: 0.7T)")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--reps", type=int, default=2, help="timed forward passes (after a warm-up)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="fp32 (default), bf16, fp16 (not on CPU)")
    ap.add_argument("--tiny", action="store_true", help="toy-sized configs of the same layout (smoke test)")
    ap.add_argument("--save-to", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.size = args.size or (64 if args.tiny else 512 if cuda else 256)
    args.iters = args.iters or ([1, 2] if cuda else [1])
    if args.size % 8 or min(args.iters) < 1:
        ap.error("--size must be a multiple of 8 and --iters at least 1")
    return args


def _mask(size: int, device: torch.device) -> torch.Tensor:
    """A mouth-like box in the lower middle of the image."""
    m = torch.zeros(size, size, dtype=torch.bool, device=device)
    m[size * 9 // 16 : size * 13 // 16, size // 4 : size * 3 // 4] = True
    return m


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print it; returns the figures."""
    args = parse(argv)
    if args.save_to is not None:
        save_sd(args.save_to, args.size, args.tiny)
        return {}
    _quiet()
    with tempfile.TemporaryDirectory(prefix="bench-sd15-") as tmp:
        build(Path(tmp) / "sd", args)
        model = conditioned(load_model(Path(tmp) / "sd", device=args.device, dtype=args.dtype), PROMPT,
                            negative_prompt="", guidance=args.guidance)
    return measure(model, args)


def measure(model: LoadedModel, args: argparse.Namespace) -> dict:
    """The forward pass, the find_directions runs and the memory, printed and returned."""
    dev = model.device
    hw = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    fam = model.family
    nets = (getattr(fam, name, None) for name in ("unet", "vae", "text_encoder", "text_encoder_2"))
    params = sum(p.numel() for m in nets if m is not None for p in m.parameters()) / 1e6
    arch = getattr(args, "arch", None) or ("tiny layout" if args.tiny else "SD 1.5 architecture")
    print(f"model: {arch} ({params:.4g}M params), random weights, "
          f"{model.dtype}\ndevice: {hw}\nsize: {args.size}x{args.size} (latent {tuple(fam.state_shape)}), rank "
          f"{args.rank} + null rank {args.null_rank}, t={args.t}, guidance {args.guidance}, chunk {args.chunk}",
          flush=True)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(fam.state_shape, generator=g).to(dev)
    mask = _mask(args.size, dev)
    t = core.to_timestep(model, args.t)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    fwd = forward_seconds(fam.predictor(t), z, args.reps)
    fwd_math = forward_seconds(fam.predictor(t), z, args.reps, math=True)
    inference, _ = peak_memory(dev)  # weights (touched by now) plus the forward passes' working set
    print(f"forward ({getattr(args, 'passes', None) or 'the predictor x0_hat(z): guided network + decode'}, no grad): {fwd:.3f} s; on the math SDPA kernel {fwd_math:.3f} s",
          flush=True)
    runs = [time_find(model, z, t, mask, args, n) for n in args.iters]
    for r in runs:
        print(f"find_directions, {r['iters']} iteration(s) (ran {r['done'][0]}/{r['done'][1]} edit/null): "
              f"{r['total']:.2f} s = linearisation {r['setup']:.2f} s + iterations "
              f"{r['per_iter'] * r['iters']:.2f} s + final check {r['check']:.2f} s; "
              f"{r['jvps'] // r['iters']} JVPs + {r['vjps'] // r['iters']} VJPs per iteration, "
              f"{r['jvp_s']:.2f} s per JVP, {r['vjp_s']:.2f} s per VJP", flush=True)
    per_iter = runs[-1]["per_iter"]
    print(f"seconds per iteration: {per_iter:.3f} s (phase split, {runs[-1]['iters']}-iteration run)")
    if len(runs) > 1:
        a, b = runs[0], runs[-1]
        print(f"seconds per iteration from the totals ({b['iters']} - {a['iters']} iterations): "
              f"{(b['total'] - a['total']) / (b['iters'] - a['iters']):.3f} s")
    peak, kind = peak_memory(dev)
    vectors = runs[-1]["jvps"] // runs[-1]["iters"]
    print(f"one iteration = {per_iter / fwd:.1f} forward-pass equivalents "
          f"({per_iter / fwd / max(vectors, 1):.2f} per vector through J and J^T); "
          f"linearisation = {runs[-1]['setup'] / fwd:.1f}")
    print(f"peak memory: {peak:.2f} GiB ({kind}; {inference:.2f} GiB through the forward passes)")
    return {"device": hw, "forward": fwd, "forward_math": fwd_math, "per_iter": per_iter,
            "equivalents": per_iter / fwd, "peak_gib": peak, "runs": runs}


if __name__ == "__main__":
    main()
