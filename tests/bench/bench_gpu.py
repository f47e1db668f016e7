"""Benchmark in one command for a lent GPU: harvest and transfer at real architectures.

For the ddpm-celebahq-256 architecture (random weights, 256²) and SD 1.5's (random weights, 512²,
guidance 7.5) it prints, with the card's name: seconds per (image, mask) direction set (rank 5,
null rank 5; inversion included), cold and warm (started from the previous job's bases registered
onto this mask), for one job and per job over a batch (the batch's jobs run one after another:
several jobs per model call is not built yet); each in forward-pass equivalents (FPE: one
forward pass of the same model, timed in this run); transfer seconds per image, plain and with a
mask (re-localised); peak memory; and bf16 against fp32 (largest principal angle of the edit
basis to the fp32 one, bar 1e-2 rad). Random weights: the warm starts come from another random
image, so they measure the mechanism, not how well real directions transfer.

    python tests/bench/bench_gpu.py                 # CUDA: both architectures, fp32 and bf16
    python tests/bench/bench_gpu.py --tiny --device cpu --dtypes fp32   # the reduced CPU run (a test)
    python tests/bench/bench_gpu.py --null-rank 20 --krylov-block 0     # whole Krylov blocks, to compare
    python tests/bench/bench_gpu.py --skip-sd --jvp-mode reverse         # J v from the reused reverse map
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent), str(HERE)]

from locobank import core  # noqa: E402
from locobank.core.warm import part_of, start_from  # noqa: E402
from locobank.loco import jacobian  # noqa: E402
from locobank.loco.jacobian import max_principal_angle  # noqa: E402
from locobank.loco.linearization import JVP_MODE, JVP_MODES, jvp_mode, resolve_jvp_mode  # noqa: E402
from locobank.models import load_model  # noqa: E402
from locobank.models.latent import conditioned  # noqa: E402


def pixel_folder(folder: Path, size: int, tiny: bool) -> Path:
    """A DDPMPipeline folder: the ddpm-celebahq-256 UNet layout at ``size`` (random weights), or a tiny one."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    if tiny:
        from tiny import tiny_unet

        unet = tiny_unet(size)
    else:
        unet = UNet2DModel(sample_size=size, block_out_channels=(128, 128, 256, 256, 512, 512), layers_per_block=2,
                           down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
                           norm_eps=1e-6, freq_shift=1, flip_sin_to_cos=False, downsample_padding=0)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(folder)
    return folder


def inputs(n: int, size: int, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``n`` smooth random images in [-1, 1] and a box mask on each, placed differently."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g) * 2 - 1, size=(size, size), mode="bilinear")
    masks = []
    for i in range(n):
        m = torch.zeros(size, size, dtype=torch.bool)
        y0, x0 = size // 3 + (i % 3) * size // 24, size // 4 + (i % 2) * size // 16
        m[y0 : y0 + size // 6, x0 : x0 + size // 3] = True
        masks.append(m)
    return x, masks


def peak_gib(device: torch.device) -> float:
    """Peak GiB so far: allocated on the GPU, or the process's RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def job(model, x, mask, t, args, start=None) -> tuple[core.Directions, float]:
    """One direction set: the image inverted to ``t``, then its directions; seconds of both."""
    t0 = time.perf_counter()
    xt = core.invert(model, x[None], t, args.steps)[0]
    d = core.find_directions(model, xt, t, mask, rank=args.rank, null_rank=args.null_rank, iters=args.iters,
                             chunk=args.chunk, start=start)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return d, time.perf_counter() - t0


def measure(model, args, name: str) -> dict:
    """Cold and warm jobs, transfer with and without a mask, and peak memory, for one model."""
    dev = model.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t = core.to_timestep(model, args.t_edit)
    x, masks = inputs(args.jobs + 1, model.resolution, args.seed)
    x = x.to(dev, model.dtype)
    unit = core.forward_seconds(model, core.invert(model, x[:1], t, 2)[0], t)
    first, one_cold = job(model, x[0], masks[0], t, args)
    rows, prev = [], (first, x[0], masks[0])
    for i in range(1, args.jobs + 1):
        cold, cs = job(model, x[i], masks[i], t, args)
        d, px, pm = prev
        start = start_from(model, masks[i], edit=[d.basis.edit], sources=[part_of(px.float().cpu(), pm)],
                           null=[d.basis.null] if d.basis.null is not None else [], image=x[i].float(),
                           rank=args.rank, null_rank=args.null_rank)
        warm, ws = job(model, x[i], masks[i], t, args, start)
        prev = (warm, x[i], masks[i])
        rows.append({"cold_s": cs, "warm_s": ws, "angle": max_principal_angle(cold.basis.edit, warm.basis.edit),
                     "cold_rounds": max(cold.diagnostics["iterations"], cold.diagnostics["null_iterations"]),
                     "warm_rounds": max(warm.diagnostics["iterations"], warm.diagnostics["null_iterations"])})
    direction = core.Direction(first.vectors[0], first.t_edit, model.fingerprint)
    plain = _timed(lambda: core.edit(model, x[1:2], [(direction, 1.0)], steps=args.steps))
    masked = _timed(lambda: core.edit(model, x[1:2], [(direction, 1.0)], steps=args.steps, mask=masks[1]))
    out = {"name": name, "unit": unit, "one_cold": one_cold, "rows": rows, "plain": plain, "masked": masked,
           "peak": peak_gib(dev), "first": first}
    _print(out, args)
    return out


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def _print(r: dict, args) -> None:
    u, rows = r["unit"], r["rows"]
    n = len(rows)
    cold, warm = sum(x["cold_s"] for x in rows) / n, sum(x["warm_s"] for x in rows) / n
    print(f"\n{r['name']}: one forward pass {1000 * u:.1f} ms (1 FPE); rank {args.rank}, null rank {args.null_rank}, "
          f"{args.steps} inversion steps, <= {args.iters} rounds, chunk {args.chunk}")
    print(f"  one job, cold:       {r['one_cold']:8.2f} s = {r['one_cold'] / u:8.0f} FPE")
    print(f"  batch of {n}, cold:   {cold:8.2f} s = {cold / u:8.0f} FPE per job, "
          f"{sum(x['cold_rounds'] for x in rows) / n:.1f} rounds")
    print(f"  batch of {n}, warm:   {warm:8.2f} s = {warm / u:8.0f} FPE per job, "
          f"{sum(x['warm_rounds'] for x in rows) / n:.1f} rounds ({cold / warm:.2f}x; largest angle to cold "
          f"{max(x['angle'] for x in rows):.1e} rad)")
    print(f"  transfer per image:  plain {r['plain']:.2f} s = {r['plain'] / u:.0f} FPE, "
          f"with --mask {r['masked']:.2f} s = {r['masked'] / u:.0f} FPE")
    print(f"  peak memory {r['peak']:.2f} GiB ({'GPU allocated' if 'cuda' in args.device else 'process RSS'})")


def compare_dtypes(folder: Path, args, fp32: dict, prompt: str | None) -> float | None:
    """The bf16 model's edit basis on the first job against the fp32 one: the largest angle."""
    if "bf16" not in args.dtypes:
        return None
    m = load_model(folder, device=args.device, dtype="bf16")
    m = conditioned(m, prompt) if prompt else m
    t = core.to_timestep(m, args.t_edit)
    x, masks = inputs(1, m.resolution, args.seed)
    d, s = job(m, x[0].to(m.device, torch.bfloat16), masks[0], t, args)
    angle = max_principal_angle(fp32["first"].basis.edit.float(), d.basis.edit.float())
    print(f"  bf16: one job {s:.2f} s; largest angle of its edit basis to fp32's {angle:.2e} rad "
          f"({'under' if angle < 1e-2 else 'OVER'} the 1e-2 bar)")
    return angle


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny layouts at small sizes (the CPU test)")
    ap.add_argument("--pixel-size", type=int, default=None, help="default 256 (16 with --tiny)")
    ap.add_argument("--sd-size", type=int, default=None, help="default 512 (64 with --tiny)")
    ap.add_argument("--jobs", type=int, default=3, help="jobs in the batch (after the first)")
    ap.add_argument("--rank", type=int, default=5)
    ap.add_argument("--null-rank", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--t-edit", type=float, default=0.6)
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--skip-sd", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--krylov-block", type=int, default=None,
                    help="vectors per basis per iteration, at most (a quarter of its width below that; 0: the whole "
                         "rank + 2) [KRYLOV_BLOCK]")
    ap.add_argument("--jvp-mode", choices=JVP_MODES, default=None,
                    help="how J v is computed: forward-mode AD, the reused reverse map, or auto (reverse on the CPU, "
                         "forward on a GPU) [JVP_MODE]")
    args = ap.parse_args(argv)
    args.pixel_size = args.pixel_size or (16 if args.tiny else 256)
    args.sd_size = args.sd_size or (64 if args.tiny else 512)
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    card = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU (no GPU)"
    with jacobian.krylov_block(jacobian.KRYLOV_BLOCK if args.krylov_block is None else args.krylov_block), \
            jvp_mode(args.jvp_mode or JVP_MODE):
        return _run(args, card)


def _run(args, card: str) -> dict:
    """Every measurement of :func:`main`, printed and returned."""
    widths = jacobian.basis_widths(args.rank, args.null_rank)
    print(f"bench_gpu on {card}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; Krylov block "
          f"{jacobian.KRYLOV_BLOCK or 'whole'} (edit and null bases grow {widths[0]} and {widths[1]} vectors an "
          f"iteration), J v {resolve_jvp_mode(None, torch.device(args.device))} mode, rank {args.rank}, "
          f"null rank {args.null_rank}")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pixel_folder(Path(tmp) / "pixel", args.pixel_size, args.tiny)
        name = f"pixel {'tiny' if args.tiny else 'ddpm-celebahq-256'} layout at {args.pixel_size}²"
        out["pixel"] = measure(load_model(folder, device=args.device), args, name)
        out["pixel_bf16"] = compare_dtypes(folder, args, out["pixel"], None)
        if not args.skip_sd:
            from bench_latent import PROMPT, save_sd

            sd = save_sd(Path(tmp) / "sd", args.sd_size, args.tiny)
            m = conditioned(load_model(sd, device=args.device), PROMPT, guidance=7.5)
            out["sd"] = measure(m, args, f"latent {'tiny' if args.tiny else 'SD 1.5'} layout at {args.sd_size}², guidance 7.5")
            out["sd_bf16"] = compare_dtypes(sd, args, out["sd"], PROMPT)
    return out


if __name__ == "__main__":
    main()
