"""Training of the toy latent text-to-image model: a Stable-Diffusion-shaped pipeline of the
procedural faces (``AutoencoderKL``, ``UNet2DConditionModel`` with cross-attention, the toy CLIP's
text tower as a frozen ``CLIPTextModel``, a ``CLIPTokenizer``, DDIM), saved with
``StableDiffusionPipeline.save_pretrained`` so it loads through the same path as a user's SD model.

Two resumable phases, each with its own safetensors training state: the VAE, then the UNet on the
VAE's latents. The text encoder is not trained (SD 1.x keeps CLIP's text tower frozen too).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from pathlib import Path
from typing import Callable

import torch

from ..data import faces
from ..data.captions import training_caption
from .dataset import training_faces
from .state import checkpoint, ema_update, read_step, save_state, start_or_resume

log = logging.getLogger(__name__)

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, sample_size=32, latent_channels=4, layers_per_block=1,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(32, 64), norm_num_groups=16,
)
UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, cross_attention_dim=96,
    block_out_channels=(32, 64, 64), attention_head_dim=4, norm_num_groups=16,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)
TEXT_HEADS = 4  # the toy CLIP's text tower: width 96, 4 heads
CONTEXT = 32    # the toy CLIP's context length
DROP_CAPTION = 0.1  # share of empty prompts, so classifier-free guidance has an unconditional model


def build_text(out_dir: Path, clip_dir: Path):
    """Write the tokenizer and return ``(tokenizer, text_encoder)`` converted from the toy CLIP."""
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    from .text_encoder import convert_text_tower, merges_needed, toy_texts, write_tokenizer

    n = merges_needed(toy_texts())
    write_tokenizer(Path(out_dir) / "tokenizer", n, CONTEXT)
    tok = CLIPTokenizer.from_pretrained(str(Path(out_dir) / "tokenizer"))
    te = convert_text_tower(load_file(str(Path(clip_dir) / "open_clip_model.safetensors")), n, heads=TEXT_HEADS)
    return tok, te


def _loop(model, ema, opt, meta, *, steps, lr, warmup, loss_fn, state_path, save_every, decay, on_step):
    """The optimiser loop both phases share: warm-up, clipping, EMA, atomic checkpoints."""
    step, t0 = meta["step"], time.time()
    warm_from = meta.get("warm_from", 0)  # a state rebuilt from exported weights has fresh Adam moments
    model.train()
    while step < steps:
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step - warm_from + 1) / warmup)
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, model, step, decay)
        if on_step is not None:
            on_step(step, float(loss.detach()))
        if step % save_every == 0 or step == steps:
            t0 = checkpoint(state_path, model, ema, opt, meta, step, t0)
    return meta


def train_vae(state_path: Path, *, steps: int = 2500, batch_size: int = 32, lr: float = 5e-4,
              kl_weight: float = 1e-6, n_faces: int = 20000, seed: int = 0, device: str = "cpu",
              save_every: int = 250, on_step: Callable[[int, float], None] | None = None):
    """Train (or resume) the VAE to ``steps``; return its EMA model and the training metadata."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    model = AutoencoderKL(**VAE_CONFIG).to(device)
    ema, opt, meta = start_or_resume(model, state_path, device, steps, lr, {
        "step": 0, "seconds": 0.0, "seed": seed, "batch_size": batch_size, "lr": lr, "kl_weight": kl_weight,
        "hardware": []})
    data = training_faces(n_faces, Path(state_path).parent)

    def loss_fn(step: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 100003 + step)  # per step: a resumed run draws the same
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        x = data[idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x).to(device)
        post = model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
        rec = model.decode(z).sample
        return torch.nn.functional.mse_loss(rec, x) + kl_weight * post.kl().mean()

    meta = _loop(model, ema, opt, meta, steps=steps, lr=lr, warmup=200, loss_fn=loss_fn, state_path=state_path,
                 save_every=save_every, decay=0.999, on_step=on_step)
    return ema.eval(), meta


@torch.no_grad()
def encode_faces(vae, data: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and standard deviations of ``data`` and of its mirror images (2N rows)."""
    means, stds = [], []
    for x in (data, data.flip(-1)):
        for i in range(0, x.shape[0], batch):
            post = vae.encode(x[i : i + batch].to(vae.device)).latent_dist
            means.append(post.mean.cpu())
            stds.append(post.std.cpu())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """The text encoder's last hidden states for ``prompts``, padded as the SD pipeline pads them."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def train_unet(state_path: Path, latents: tuple[torch.Tensor, torch.Tensor], scaling: float, tokenizer, text_encoder,
               *, steps: int = 30000, batch_size: int = 32, lr: float = 3e-4, n_faces: int = 20000, seed: int = 0,
               device: str = "cpu", save_every: int = 500, on_step: Callable[[int, float], None] | None = None):
    """Train (or resume) the conditional UNet on scaled VAE latents with the toy captions."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    model = UNet2DConditionModel(**UNET_CONFIG).to(device)
    ema, opt, meta = start_or_resume(model, state_path, device, steps, lr, {
        "step": 0, "seconds": 0.0, "seed": seed, "batch_size": batch_size, "lr": lr, "drop_caption": DROP_CAPTION,
        "hardware": []})
    acp = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k not in ("set_alpha_to_one",)}
                        ).alphas_cumprod.to(device)
    mean, std = latents
    attrs = [faces.sample_attributes(i) for i in range(n_faces)]

    def loss_fn(step: int) -> torch.Tensor:
        rng = random.Random(seed * 7 + step)  # per step: a resumed run draws the same batches and captions
        gen = torch.Generator().manual_seed(seed * 100003 + step)
        idx = torch.randint(0, mean.shape[0], (batch_size,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)).to(device) * scaling
        prompts = ["" if rng.random() < DROP_CAPTION else training_caption(attrs[int(i) % n_faces], rng) for i in idx]
        cond = encode_prompts(tokenizer, text_encoder, prompts)
        noise = torch.randn(z0.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (batch_size,), generator=gen).to(device)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        return torch.nn.functional.mse_loss(model(zt, t, encoder_hidden_states=cond).sample, noise)

    meta = _loop(model, ema, opt, meta, steps=steps, lr=lr, warmup=500, loss_fn=loss_fn, state_path=state_path,
                 save_every=save_every, decay=0.999, on_step=on_step)
    return ema.eval(), meta


def export_pipeline(out_dir: Path, vae, unet, tokenizer, text_encoder, info: dict) -> Path:
    """Save the pipeline folder (DDIM scheduler) and its ``training.json``."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**SCHEDULER_CONFIG), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out_dir))
    (Path(out_dir) / "training.json").write_text(json.dumps(info, indent=2))
    return Path(out_dir)


def latent_scaling(mean: torch.Tensor, std: torch.Tensor) -> float:
    """SD's ``scaling_factor``: one over the standard deviation of sampled latents."""
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(mean.shape[0], generator=g)[:4000]
    z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)
    return float(1.0 / z.std())


def train_sd(out_dir: Path, state_dir: Path, clip_dir: Path, *, vae_steps: int = 2500, steps: int = 30000,
             n_faces: int = 20000, seed: int = 0, device: str | None = None, export_every: int = 2000,
             on_step: Callable[[str, int, float], None] | None = None) -> dict:
    """Train (or resume) the whole toy latent model and export it to ``out_dir``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    state_dir = Path(state_dir)
    vae_state, unet_state = state_dir / "toyfaces-sd-vae.safetensors", state_dir / "toyfaces-sd-unet.safetensors"
    tok, te = build_text(out_dir, clip_dir)
    te = te.to(device)
    vae, vae_meta = _trained_vae(out_dir, vae_state, vae_steps, device)
    if vae is None:
        vae, vae_meta = train_vae(vae_state, steps=vae_steps, n_faces=n_faces, seed=seed, device=device,
                                  on_step=None if on_step is None else (lambda s, l: on_step("vae", s, l)))
    data = training_faces(n_faces, state_dir)
    mean, std = encode_faces(vae, data)
    scaling = latent_scaling(mean, std)
    vae.register_to_config(scaling_factor=scaling)
    _unet_from_export(out_dir, unet_state)
    done = read_step(unet_state)
    target = done
    unet = None
    unet_meta: dict = {}
    while target < steps or unet is None:
        target = min(steps, (target // export_every + 1) * export_every)
        unet, unet_meta = train_unet(unet_state, (mean, std), scaling, tok, te, steps=target, n_faces=n_faces,
                                     seed=seed, device=device,
                                     on_step=None if on_step is None else (lambda s, l: on_step("unet", s, l)))
        info = {"vae": vae_meta, "unet": unet_meta, "scaling_factor": scaling, "n_faces": n_faces,
                "text_encoder": "toy CLIP text tower (data/models/toyfaces-clip), converted, frozen"}
        export_pipeline(out_dir, vae, unet, tok, te.cpu(), info)
        te = te.to(device)
        log.info("exported at unet step %d", unet_meta["step"])
    return info


def _trained_vae(out_dir: Path, vae_state: Path, vae_steps: int, device: str):
    """The exported VAE when its training finished and its state is gone (the state is only needed
    while it trains; the pipeline folder keeps its EMA weights): (vae, meta), else (None, None)."""
    info_path = Path(out_dir) / "training.json"
    if Path(vae_state).exists() or not (Path(out_dir) / "vae").is_dir() or not info_path.exists():
        return None, None
    meta = json.loads(info_path.read_text()).get("vae") or {}
    if meta.get("step", 0) < vae_steps:
        return None, None
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(Path(out_dir) / "vae")).to(device).eval(), meta


def _unet_from_export(out_dir: Path, unet_state: Path) -> None:
    """Rebuild a lost UNet training state from the exported pipeline (its EMA weights as both model
    and EMA, fresh Adam moments re-warmed), so training goes on from the exported step."""
    info_path = Path(out_dir) / "training.json"
    if Path(unet_state).exists() or not (Path(out_dir) / "unet").is_dir() or not info_path.exists():
        return
    meta = json.loads(info_path.read_text()).get("unet") or {}
    if meta.get("step", 0) <= 0:
        return
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(Path(out_dir) / "unet"))
    meta = {**meta, "warm_from": meta["step"], "rebuilt_from_export_at": meta["step"]}
    meta.pop("opt_step", None)
    save_state(Path(unet_state), unet, copy.deepcopy(unet), torch.optim.AdamW(unet.parameters()), meta)
    log.info("UNet training state rebuilt from the exported pipeline at step %d", meta["step"])
