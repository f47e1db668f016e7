"""Benchmark: what DDIM inversion means for a latent consistency model, measured as round-trip PSNR.

For an LCM the posterior mean is the consistency function's output f(z_t, t); locobank's DDIM
inversion and sampling use it as the predicted clean latent (and the noise it implies), so a round
trip ``invert to t_edit in N steps -> sample back in N steps -> decode`` is exact only where f is
locally consistent along the path. This measures the round trip on tiny random pipelines built from
configs (``tests/tiny_families.py``, ``tests/tiny.py``; no trained LCM can be downloaded here): the
LCM and, as the baseline in the same run, the SD 1.x family's tiny pipeline under plain DDIM, at
each step count. PSNR is against the VAE's own reconstruction decode(encode(x)) (the best a round
trip through the latent can do), peak-to-peak 2 for images in [-1, 1]; beside it the latent's relative error |z' - z0| / |z0|. Run:

    OMP_NUM_THREADS=1 .venv/bin/python tests/bench/bench_lcm_inversion.py [--steps 1 2 4 8 50] [--t-edit 0.6] [--toy]

``--toy`` adds a trained posterior mean: the toy latent model of the faces run through the LCM
family's code path (see :func:`toy_lcm`), beside the same model through the SD family.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from locobank import core  # noqa: E402
from locobank.loco import ddim  # noqa: E402
from locobank.models import conditioned, load_model  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    """PSNR in dB of ``a`` against ``b`` for values spanning ``peak``."""
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(peak**2 / mse)).item()


def round_trip(model, x: torch.Tensor, t_edit: float, steps: int) -> tuple[float, float]:
    """(image PSNR, the latent's relative error) of invert -> sample in ``steps`` steps each way."""
    with torch.no_grad():
        z0 = model.family.encode(x)
        zt = core.invert(model, x, t_edit, steps)
        z_back = ddim.sample(model.denoiser, zt, core.to_timestep(model, t_edit), steps)
        image_psnr = psnr(model.family.decode(z_back), model.family.decode(z0), 2.0)
    return image_psnr, float((z_back - z0).norm() / z0.norm())


def toy_lcm(folder: Path) -> Path:
    """The toy latent model's components (data/models/toyfaces-sd) saved as a
    LatentConsistencyModelPipeline: a trained posterior mean through the LCM family's code path. Its
    UNet was not consistency-distilled and has no guidance embedding, so its consistency function is
    c_skip z + c_out x0_hat with one unguided pass."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(ROOT / "data" / "models" / "toyfaces-sd", safety_checker=None,
                                                 requires_safety_checker=False)
    LatentConsistencyModelPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                                   scheduler=LCMScheduler.from_config(sd.scheduler.config), safety_checker=None,
                                   feature_extractor=None, image_encoder=None,
                                   requires_safety_checker=False).save_pretrained(folder)
    return folder


def toy_round_trips(steps: list[int], t_edit: float, n: int) -> None:
    """Round trips on toy faces under their captions: the toy model through the LCM family (one
    unguided pass) and through the SD family at guidance 1 (the same pass, the baseline) and 7.5."""
    from locobank.toyworld.data.faces import batch, face

    seeds = list(range(1000, 1000 + n))
    x = torch.from_numpy(batch(seeds))
    with tempfile.TemporaryDirectory() as tmp:
        lcm = load_model(toy_lcm(Path(tmp) / "toy-lcm"))
    sd = load_model(ROOT / "data" / "models" / "toyfaces-sd")
    print(f"toy faces ({n}, 32x32, each under its caption), t_edit {t_edit}: PSNR (dB) against decode(encode(x))")
    for k in steps:
        cells = []
        for name, model, g in (("toy via LCM family", lcm, 1.0), ("toy via SD family, guidance 1", sd, 1.0),
                               ("guidance 7.5", sd, 7.5)):
            rows = [round_trip(conditioned(model, face(s).caption, guidance=g), x[i:i + 1], t_edit, k)[0]
                    for i, s in enumerate(seeds)]
            cells.append(f"{name}: {sum(rows) / len(rows):.1f}")
        print(f"{k:>3} steps  " + "; ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 50])
    ap.add_argument("--t-edit", type=float, default=0.6)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--toy", action="store_true", help="also the toy faces through the toy model (see toy_lcm)")
    args = ap.parse_args(argv)
    from tiny import save_tiny_sd
    from tiny_families import save_tiny_lcm

    torch.manual_seed(0)
    x = torch.rand(args.images, 3, 16, 16) * 2 - 1
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"lcm": conditioned(load_model(save_tiny_lcm(Path(tmp) / "lcm")), "a face"),
                  "sd (DDIM baseline)": conditioned(load_model(save_tiny_sd(Path(tmp) / "sd")), "a face")}
    print(f"round trip invert -> sample at t_edit {args.t_edit}, {args.images} random 16x16 images, tiny random "
          f"pipelines; PSNR (dB) against decode(encode(x)) / the latent's relative error")
    for steps in args.steps:
        row = {name: round_trip(m, x, args.t_edit, steps) for name, m in models.items()}
        out[steps] = row
        cells = "; ".join(f"{name}: {img:.1f} dB / {lat:.2f}" for name, (img, lat) in row.items())
        print(f"{steps:>3} steps  {cells}", flush=True)
    if args.toy:
        toy_round_trips(args.steps, args.t_edit, args.images)
    return out


if __name__ == "__main__":
    main()
