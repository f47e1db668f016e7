"""Tiny seeded pipelines of the text-to-image families beyond SD 1.x/2.x (issue 34), built from
configs with local tokenizers and saved with ``save_pretrained``, as diffusers' own tests build
theirs: an SDXL pipeline, a latent consistency model and a DeepFloyd IF stage I. No download."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

CONTEXT = 16  # CLIP tokens of the tiny tokenizers


def _clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    from locobank.toyworld.training.text_encoder import write_tokenizer

    return CLIPTokenizer.from_pretrained(str(write_tokenizer(Path(folder) / "_tokenizer_src", 2000, CONTEXT)))


def _clip_config(tok, hidden: int, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=CONTEXT, bos_token_id=512 + 2000,
                          eos_token_id=513 + 2000, pad_token_id=513 + 2000, **extra)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         layers_per_block=1, norm_num_groups=4, sample_size=16).eval()


def _unet(**extra):
    from diffusers import UNet2DConditionModel

    base = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16, attention_head_dim=2,
                norm_num_groups=4)
    return UNet2DConditionModel(**{**base, **extra}).eval()


def _save(pipe, folder: Path) -> Path:
    pipe.save_pretrained(folder)
    shutil.rmtree(Path(folder) / "_tokenizer_src", ignore_errors=True)
    return Path(folder)


def save_tiny_sdxl(folder: Path, seed: int = 0) -> Path:
    """A random StableDiffusionXLPipeline (16 x 16 images, 4 x 8 x 8 latents): two CLIP text
    encoders (8 + 8 hidden, the second with an 8-wide projection) and text_time added conditions."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = _unet(addition_embed_type="text_time", addition_time_embed_dim=4,
                 projection_class_embeddings_input_dim=6 * 4 + 8, use_linear_projection=True)
    tok = _clip_tokenizer(folder)
    te = CLIPTextModel(_clip_config(tok, 8)).eval()
    te2 = CLIPTextModelWithProjection(_clip_config(tok, 8, projection_dim=8)).eval()
    sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                                   beta_end=0.012, steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=_vae(), text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok,
                                     unet=unet, scheduler=sched, add_watermarker=False)
    return _save(pipe, folder)


def save_tiny_lcm(folder: Path, seed: int = 0) -> Path:
    """A random LatentConsistencyModelPipeline (16 x 16 images, 4 x 8 x 8 latents) whose UNet
    takes the guidance as an 8-wide ``timestep_cond`` embedding, with its LCMScheduler."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = _unet(time_cond_proj_dim=8)
    tok = _clip_tokenizer(folder)
    te = CLIPTextModel(_clip_config(tok, 16)).eval()
    sched = LCMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, set_alpha_to_one=True, timestep_scaling=10.0, original_inference_steps=50)
    pipe = LatentConsistencyModelPipeline(vae=_vae(), text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                          safety_checker=None, feature_extractor=None, image_encoder=None,
                                          requires_safety_checker=False)
    return _save(pipe, folder)


def write_t5_tokenizer(folder: Path):
    """A T5 tokenizer written locally: a ``tokenizers`` Unigram model over a small vocabulary with
    a Metaspace pre-tokenizer (as T5's SentencePiece model is), inside ``T5TokenizerFast``, saved
    and loaded back with ``from_pretrained`` (a WordLevel model does not reload as T5)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    words = "a face with smiling frowning blue eyes glasses hair long short blond red green open closed mouth".split()
    pieces = sorted({"▁" + w for w in words} | set("abcdefghijklmnopqrstuvwxyz") | {"▁"})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -float(len(p) < 2) - 1.0) for p in pieces]
    raw = Tokenizer(models.Unigram(vocab, unk_id=2))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    raw.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok = T5TokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0)
    tok.save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(str(folder))


def save_tiny_if(folder: Path, seed: int = 0) -> Path:
    """A random IFPipeline stage I (16 x 16 pixel images): a tiny T5 encoder, a UNet with 6 output
    channels (noise and variance), a DDPMScheduler with learned-range variance as IF's."""
    from diffusers import DDPMScheduler, IFPipeline
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tok = write_t5_tokenizer(Path(folder) / "_tokenizer_src")
    te = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                 relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)).eval()
    unet = _unet(sample_size=16, in_channels=3, out_channels=6, encoder_hid_dim=16, cross_attention_dim=16)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
                          thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.5)
    pipe = IFPipeline(tokenizer=tok, text_encoder=te, unet=unet, scheduler=sched, safety_checker=None,
                      feature_extractor=None, watermarker=None, requires_safety_checker=False)
    return _save(pipe, folder)
