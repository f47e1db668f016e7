"""Benchmark: locobank's find_directions against the LOCO reference's naive Jacobian routine.

Both compute the same rank-5 edit basis (inside the mask) and rank-5 null basis (outside it)
for the same model, image and mask. Accuracy is the largest principal angle to a dense
oracle (full Jacobian + SVD; only at 32x32). Run:

    .venv/bin/python tests/bench/bench_directions.py            # CPU, 32x32 toy model
    .venv/bin/python tests/bench/bench_directions.py --size 256 # celebahq-256 architecture, random weights
    # on a CPU at 256, bound the time and memory: --size 256 --iters 2 --chunk 2 --skip-naive
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank.loco.jacobian import Linearization, block_subspace_svd, math_attention, max_principal_angle  # noqa: E402


def naive_basis(fn, x, mask, rank, iters_min=10, iters_max=50, atol=1e-4, chunk=5):
    """The reference's routine: jacfwd per chunk for J V, unvectorised autograd jacobian for J^T U,
    QR, and elementwise convergence of V."""
    D = x.numel()
    g = torch.Generator().manual_seed(0)
    V, _ = torch.linalg.qr(torch.randn(D, rank, generator=g))
    m = mask.reshape(-1).float()
    it = 0
    for it in range(1, iters_max + 1):
        cols = []
        for c in range(0, rank, chunk):
            Vc = V[:, c : c + chunk]

            def along(a, Vc=Vc):
                return fn(x + (Vc @ a).reshape(x.shape)).reshape(-1)

            with math_attention():
                cols.append(torch.func.jacfwd(along)(torch.zeros(Vc.shape[1])))
        U = torch.cat(cols, 1) * m[:, None]  # (D_out, r) = P_M J V
        W = torch.empty_like(V)
        for i in range(rank):
            u = U[:, i]

            def scalar(z, u=u):
                return (fn(z).reshape(-1) * u).sum()

            with math_attention():
                W[:, i] = torch.autograd.functional.jacobian(scalar, x, vectorize=False).reshape(-1)
        V_new, _ = torch.linalg.qr(W)
        done = it >= iters_min and torch.allclose(V_new.abs(), V.abs(), atol=atol)
        V = V_new
        if done:
            break
    # Sort by singular value (Rayleigh-Ritz), as the reference reports its vectors in order.
    with math_attention():
        Y = torch.func.jacfwd(lambda a: fn(x + (V @ a).reshape(x.shape)).reshape(-1))(torch.zeros(rank)) * m[:, None]
    _, S, Qh = torch.linalg.svd(Y, full_matrices=False)
    return (V @ Qh.T).T, S, it


def dense_oracle(fn, x, masks, ranks):
    with math_attention():
        J = torch.func.jacrev(lambda z: fn(z).reshape(-1), chunk_size=256)(x).reshape(-1, x.numel())
    out = []
    for m, r in zip(masks, ranks):
        _, _, Vh = torch.linalg.svd(J * m.reshape(-1, 1).float(), full_matrices=False)
        out.append(Vh[:r])
    return out


def build_model(size: int, device: str):
    from diffusers import UNet2DModel

    from locobank.models import load_model

    toy = ROOT / "data" / "models" / "toyfaces-ddpm"
    if size == 32 and toy.exists():
        lm = load_model(toy, device=device)
        return lm.unet, lm.denoiser, "toyfaces-ddpm (trained)"
    torch.manual_seed(0)
    if size == 32:
        from locobank.toyworld.training.ddpm import UNET_CONFIG

        unet = UNet2DModel(**UNET_CONFIG)
        name = "toy architecture, random weights"
    else:
        unet = UNet2DModel(sample_size=size, block_out_channels=(128, 128, 256, 256, 512, 512), layers_per_block=2,
                           down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
                           norm_eps=1e-6, freq_shift=1, flip_sin_to_cos=False, downsample_padding=0)
        name = f"ddpm-celebahq-256 architecture ({sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M params), random weights"
    from diffusers import DDPMScheduler

    from locobank.loco.denoiser import Denoiser

    unet = unet.to(device).eval().requires_grad_(False)
    acp = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod.to(torch.float64)
    return unet, Denoiser(net=lambda x, t: unet(x, t).sample, alphas_cumprod=acp), name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--rank", type=int, default=5)
    ap.add_argument("--null-rank", type=int, default=5)
    ap.add_argument("--t", type=int, default=600)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=50, help="iteration cap for locobank (and for the naive at 256)")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--chunk", type=int, default=16, help="vectors per batched JVP/VJP call (bounds memory)")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    unet, den, name = build_model(args.size, args.device)
    hw = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"model: {name}\ndevice: {hw}\nsize: {args.size}x{args.size}, rank {args.rank} + null rank {args.null_rank}, "
          f"t={args.t}, chunk {args.chunk}, iteration cap {args.iters}")
    x = torch.randn(3, args.size, args.size, device=args.device)
    if args.size == 32 and "trained" in name:
        from locobank.toyworld import batch, face
        from locobank.loco import ddim

        f = face(1_000_003)
        img = torch.from_numpy(batch([1_000_003])).to(args.device)
        x = ddim.invert(den, img, args.t, 20)[0]
        mask = torch.from_numpy(f.masks["mouth"]).to(args.device)
    else:
        mask = torch.zeros(args.size, args.size, dtype=torch.bool, device=args.device)
        s = args.size
        mask[s * 9 // 16 : s * 13 // 16, s // 4 : s * 3 // 4] = True
    inside = mask[None].expand(3, -1, -1)
    fn = lambda z: den.pmp(z[None], args.t)[0]  # noqa: E731

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    # Auto's J v mode is timed once per model (a harvest pays it on its first job): do it on another
    # state first, as a harvest's earlier job would, and report it apart.
    t0 = time.perf_counter()
    Linearization(fn, x.flip(-1), chunk=args.chunk, key="bench").jvp(torch.randn(2, *x.shape, device=x.device))
    print(f"J v mode chosen once per model: {time.perf_counter() - t0:.2f} s (not in locobank's time below)")
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    lin = Linearization(fn, x, chunk=args.chunk, key="bench")
    e, n = block_subspace_svd(lin, [inside, ~inside], [args.rank, args.null_rank], iters=args.iters, tol=args.tol)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_new = time.perf_counter() - t0
    it_new = max(e.iterations, n.iterations)
    peak = (torch.cuda.max_memory_allocated() / 2**30) if args.device.startswith("cuda") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"locobank: {t_new:.2f} s, iterations edit/null {e.iterations}/{n.iterations}, "
          f"{t_new / max(it_new, 1):.3f} s/iteration, peak memory {peak:.2f} GiB "
          f"({'GPU allocated' if args.device.startswith('cuda') else 'process RSS'})")

    if args.size <= 32:
        t0 = time.perf_counter()
        Ve, Vn = dense_oracle(fn, x, [inside, ~inside], [args.rank, args.null_rank])
        print(f"dense oracle: {time.perf_counter() - t0:.1f} s (full {x.numel()}x{x.numel()} Jacobian, SVD)")
        print(f"locobank angle to oracle: edit {max_principal_angle(Ve, e.Vh):.2e} rad, null {max_principal_angle(Vn, n.Vh):.2e} rad")
    if args.skip_naive:
        return
    t0 = time.perf_counter()
    cap = 50 if args.size <= 32 else max(10, min(args.iters, 50))
    ne, _, it_e = naive_basis(fn, x, inside, args.rank, iters_max=cap)
    nn, _, it_n = naive_basis(fn, x, ~inside, args.null_rank, iters_max=cap)
    t_old = time.perf_counter() - t0
    print(f"naive (reference): {t_old:.2f} s, iterations edit/null {it_e}/{it_n}, {t_old / (it_e + it_n):.3f} s/iteration")
    if args.size <= 32:
        print(f"naive angle to oracle: edit {max_principal_angle(Ve, ne):.2e} rad, null {max_principal_angle(Vn, nn):.2e} rad")
    print(f"speed-up: {t_old / t_new:.1f}x")


if __name__ == "__main__":
    main()
