"""Tiny seeded flow-matching pipelines for tests: StableDiffusion3Pipeline and FluxPipeline built
from configs at toy width, with local CLIP tokenizers (and a T5 tokenizer built in code), saved
with ``save_pretrained`` like a Hub model. No download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

CLIP_TEXT = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=16, projection_dim=8, hidden_act="gelu")
VAE = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
           up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4, use_quant_conv=False,
           use_post_quant_conv=False)
N_MERGES = 2000


def clip_parts(folder: Path, seed: int, *, projection: bool = True):
    """A CLIP tokenizer written from local vocab/merges and a random CLIP text encoder (with its
    projection for SD3's pooled embedding)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from locobank.toyworld.training.text_encoder import write_tokenizer

    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(folder, N_MERGES, CLIP_TEXT["max_position_embeddings"])))
    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **CLIP_TEXT)
    return tok, (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def t5_tokenizer(folder: Path, words: int = 64, length: int = 16):
    """A T5TokenizerFast over a Unigram vocabulary of letters and a few words, with T5's
    Metaspace pre-tokenizer, written to ``folder`` and loaded back from it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [("\u2581" + w, -1.0) for w in ("a", "face", "photo", "of", "smiling", "frowning", "with", "blue",
                                              "eyes", "hair", "glasses", "cat", "dog")][:words]
    tk = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok = T5TokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                          extra_ids=0, model_max_length=length)
    tok.save_pretrained(str(folder))
    return T5TokenizerFast.from_pretrained(str(folder))


def tiny_t5(tok, d_model: int, seed: int):
    """A random T5 encoder at toy width."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=len(tok), d_model=d_model, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                                   relative_attention_num_buckets=8, pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.eos_token_id, decoder_start_token_id=0)).eval()


def save_tiny_sd3(folder: Path, seed: int = 0, *, t5: bool = False, shift: float = 3.0) -> Path:
    """A random StableDiffusion3Pipeline: 16x16 images, 4x8x8 latents, a one-layer MMDiT on 2x2
    patches, two CLIP encoders (and a T5 with ``t5``; else text_encoder_3 is left out, as the
    pipeline allows)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    folder = Path(folder)
    src = folder.parent / f"_{folder.name}_tokenizers"
    tok, te = clip_parts(src / "clip1", seed + 1)
    tok2, te2 = clip_parts(src / "clip2", seed + 2)
    tok3 = t5_tokenizer(src / "t5") if t5 else None
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                        attention_head_dim=4, num_attention_heads=2, joint_attention_dim=16,
                                        caption_projection_dim=8, pooled_projection_dim=16, pos_embed_max_size=8)
    vae = AutoencoderKL(latent_channels=4, sample_size=16, scaling_factor=1.5305, shift_factor=0.0609, **VAE)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer.eval(), vae=vae.eval(), scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
        text_encoder=te, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok2,
        text_encoder_3=tiny_t5(tok3, 16, seed + 3) if t5 else None, tokenizer_3=tok3)
    pipe.save_pretrained(folder)
    shutil.rmtree(src)
    return folder


def save_tiny_flux(folder: Path, seed: int = 0, *, guidance: bool = True, size: int = 16) -> Path:
    """A random FluxPipeline: ``size`` px images, 4 x size/4 x size/4 latents packed into 2x2
    patches (16-channel tokens), one double and one single block, CLIP (pooled) and T5; with
    ``guidance`` the guidance embedding of FLUX.1-dev, else schnell's none. ``size`` is written to
    the folder's locobank.json (FLUX takes any multiple of 16 px; the pipeline's default is 1024)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    folder = Path(folder)
    src = folder.parent / f"_{folder.name}_tokenizers"
    tok, te = clip_parts(src / "clip", seed + 1, projection=False)
    tok2 = t5_tokenizer(src / "t5")
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=8, guidance_embeds=guidance, axes_dims_rope=(2, 2, 4))
    vae = AutoencoderKL(latent_channels=4, sample_size=size, scaling_factor=0.3611, shift_factor=0.1159, **VAE)
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=guidance, base_shift=0.5, max_shift=1.15,
                                            base_image_seq_len=4, max_image_seq_len=64)
    pipe = FluxPipeline(transformer=transformer.eval(), vae=vae.eval(), scheduler=sched, text_encoder=te,
                        tokenizer=tok, text_encoder_2=tiny_t5(tok2, 16, seed + 3), tokenizer_2=tok2)
    pipe.save_pretrained(folder)
    (folder / "locobank.json").write_text(json.dumps({"resolution": size}))
    shutil.rmtree(src)
    return folder
