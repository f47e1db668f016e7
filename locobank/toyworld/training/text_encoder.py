"""The toy latent model's text side, as Stable Diffusion 1.x has it: the toy CLIP's text tower
converted to a transformers ``CLIPTextModel``, and a ``CLIPTokenizer`` written from the same BPE
vocabulary open_clip tokenizes with.

The vocabulary is cut after the last merge the toy world's words need (ids keep their order, the
two special tokens move to the end), which keeps the shipped text encoder small; every toy caption
tokenizes to the same ids as the toy CLIP's tokenizer, and other words fall back to shorter pieces.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte-to-printable-character map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, (chr(c) for c in chars)))


def _merges() -> list[str]:
    """open_clip's BPE merges, in rank order (the lines CLIP's ``merges.txt`` holds)."""
    from open_clip.tokenizer import default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    return lines[1 : 49152 - 256 - 2 + 1]


def write_tokenizer(out_dir: Path, n_merges: int, context_length: int) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and the tokenizer config for the first ``n_merges``
    merges; return the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    units = list(_bytes_to_unicode().values())
    merges = _merges()[:n_merges]
    tokens = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    cfg = {"model_max_length": context_length, "bos_token": BOS, "eos_token": EOS, "pad_token": EOS,
           "unk_token": EOS, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS}, indent=2))
    return out_dir


def merges_needed(texts: list[str]) -> int:
    """How many merges the toy CLIP's tokenizer uses on ``texts`` (the cut that keeps their ids)."""
    import open_clip

    tok = open_clip.tokenizer.SimpleTokenizer()
    top = 0
    for text in texts:
        for i in tok.encode(text):
            top = max(top, i)
    return max(0, top - 512 + 1)


def convert_text_tower(clip_state: dict[str, torch.Tensor], n_merges: int, *, heads: int):
    """A transformers ``CLIPTextModel`` with the toy CLIP's text tower weights (vocabulary cut
    after ``n_merges`` merges)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    emb = clip_state["token_embedding.weight"].float()
    pos = clip_state["positional_embedding"].float()
    width = emb.shape[1]
    layers = 1 + max(int(k.split(".")[2]) for k in clip_state if k.startswith("transformer.resblocks."))
    keep = 512 + n_merges
    vocab = keep + 2
    cfg = CLIPTextConfig(vocab_size=vocab, hidden_size=width, intermediate_size=clip_state[
        "transformer.resblocks.0.mlp.c_fc.weight"].shape[0], num_hidden_layers=layers, num_attention_heads=heads,
        max_position_embeddings=pos.shape[0], hidden_act="gelu", layer_norm_eps=1e-5,
        bos_token_id=keep, eos_token_id=keep + 1, pad_token_id=keep + 1, projection_dim=width)
    model = CLIPTextModel(cfg)
    sd = {"embeddings.token_embedding.weight": torch.cat([emb[:keep], emb[49406:49408]]),
          "embeddings.position_embedding.weight": pos,
          "final_layer_norm.weight": clip_state["ln_final.weight"],
          "final_layer_norm.bias": clip_state["ln_final.bias"]}
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for name, part in zip("qkv", clip_state[src + "attn.in_proj_weight"].chunk(3)):
            sd[dst + f"self_attn.{name}_proj.weight"] = part
        for name, part in zip("qkv", clip_state[src + "attn.in_proj_bias"].chunk(3)):
            sd[dst + f"self_attn.{name}_proj.bias"] = part
        pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
        for a, b in pairs.items():
            sd[dst + b + ".weight"] = clip_state[src + a + ".weight"]
            sd[dst + b + ".bias"] = clip_state[src + a + ".bias"]
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"text tower conversion left missing={missing} unexpected={unexpected}")
    return model.eval().requires_grad_(False)


def toy_texts() -> list[str]:
    """Every kind of text the toy latent model is prompted with: captions, training captions,
    attribute phrases and the naming vocabulary."""
    import random

    from ...paths import FACE_VOCAB
    from ..data import faces
    from ..data.captions import phrases, training_caption

    rng = random.Random(0)
    out = set()
    for i in range(3000):
        a = faces.sample_attributes(i)
        out.update([faces.caption(a), training_caption(a, rng)])
        out.update(f"a face with {p}" for p in phrases(a, rng))
    for line in Path(FACE_VOCAB).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            out.add(f"a face with {line.strip()}")
    return sorted(out)
