"""Measurements of the toy world's quality bars: samples, reconstruction, LOCO locality, CLIP zero-shot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
import torch

from .. import core
from ..images import to_uint8
from ..models import LoadedModel
from . import HELD_OUT_SEED, batch, face
from .faces import HAIR, IRIS


def sample_grid(model: LoadedModel, n: int = 64, steps: int = 50, seed: int = 0) -> np.ndarray:
    """``n`` DDIM samples from pure noise, tiled into a square uint8 grid."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *model.family.state_shape, generator=g).to(model.device)
    out = core.generate(model, x, steps)
    side = int(np.ceil(np.sqrt(n)))
    tiles = [to_uint8(o) for o in out] + [np.zeros_like(to_uint8(out[0]))] * (side * side - n)
    rows = [np.concatenate(tiles[r * side : (r + 1) * side], 1) for r in range(side)]
    return np.concatenate(rows, 0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image for tensors in [-1, 1] (peak-to-peak 2)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


def reconstruction_psnr(model: LoadedModel, seeds, t_edit: float = 0.6, steps: int = 50) -> list[float]:
    """DDIM-invert held-out faces to ``t_edit`` and sample back; PSNR of each against its input."""
    x = torch.from_numpy(batch(seeds)).to(model.device)
    xt = core.invert(model, x, t_edit, steps)
    return psnr(core.sample(model, xt, t_edit, steps), x).tolist()


locality = core.locality


@dataclass
class LocalityReport:
    part: str
    source: list[float]
    transfer: list[float]
    change: list[float]  # RMS pixel change of the source edit, to see that something happened

    def summary(self) -> dict:
        def stats(v):
            return {"median": statistics.median(v), "worst": min(v), "n": len(v)} if v else {}

        return {"part": self.part, "source": stats(self.source), "transfer": stats(self.transfer),
                "rms_change": statistics.mean(self.change) if self.change else 0.0}


def locality_study(model: LoadedModel, part: str, n_sources: int = 10, n_targets: int = 10, *, t_edit: float = 0.6,
                   null_rank: int = 5, strength: float = 8.0, steps: int = 20, rank: int = 1,
                   constrained: bool = False, jacobian_at: str = "inverted",
                   seed0: int = HELD_OUT_SEED) -> LocalityReport:
    """Top direction of each source face's ``part`` mask, applied at +-strength to the source and
    transferred to other faces; locality measured against each face's own part mask.

    The Jacobian is taken at the source's DDIM-inverted state, or with ``jacobian_at="noised"``
    at the source noised to the edit time (seeded by the face's seed); the edits are always
    applied to inverted states."""
    src_seeds = [seed0 + i for i in range(n_sources)]
    tgt_seeds = [seed0 + 500 + i for i in range(n_targets)]
    tgt = torch.from_numpy(batch(tgt_seeds)).to(model.device)
    tgt_masks = [torch.from_numpy(face(s).masks[part]) for s in tgt_seeds]
    t = core.to_timestep(model, t_edit)
    tgt_xt = core.invert(model, tgt, t, steps)
    tgt_ref = core.sample(model, tgt_xt, t, steps)
    rep = LocalityReport(part, [], [], [])
    for s in src_seeds:
        f = face(s)
        if not f.masks[part].any():
            continue
        x = torch.from_numpy(batch([s])).to(model.device)
        xt = core.invert(model, x, t, steps)
        ref = core.sample(model, xt, t, steps)
        x_jac = core.noise_to(model, x, t, [s]) if jacobian_at == "noised" else xt
        d = core.find_directions(model, x_jac, t, torch.from_numpy(f.masks[part]), rank=rank, null_rank=null_rank,
                                   constrained=constrained)
        v = d.vectors[0]
        for sign in (1.0, -1.0):
            out = core.sample(model, xt + sign * strength * v, t, steps)
            delta = (out - ref)[0].cpu()
            rep.source.append(locality(delta, torch.from_numpy(f.masks[part])))
            rep.change.append(float(delta.pow(2).mean().sqrt()))
            outs = core.sample(model, tgt_xt + sign * strength * v, t, steps)
            for j in range(len(tgt_seeds)):
                rep.transfer.append(locality((outs[j] - tgt_ref[j]).cpu(), tgt_masks[j]))
    return rep


ZERO_SHOT_TASKS = {
    "hair colour": (lambda a: a.hair, {c: f"a face with {c} hair" for c in sorted(HAIR)}),
    "iris colour": (lambda a: a.iris, {c: f"a face with {c} eyes" for c in sorted(IRIS)}),
    "smile vs frown": (lambda a: "smile" if a.smile > 0 else "frown", {"smile": "a smiling face", "frown": "a frowning face"}),
    "glasses": (lambda a: "yes" if a.glasses else "no", {"yes": "a face with glasses", "no": "a face with no glasses"}),
}


def zero_shot(clip, n: int = 500, seed0: int = HELD_OUT_SEED) -> dict[str, float]:
    """Zero-shot accuracy of a CLIP on held-out faces, per attribute, with prompts built from attribute words."""
    seeds = list(range(seed0, seed0 + n))
    scores = zero_shot_on(clip, torch.from_numpy(batch(seeds)), [face(s).attrs for s in seeds])
    return {task: s["accuracy"] for task, s in scores.items()}


def zero_shot_on(clip, images: torch.Tensor, attrs: list, keep=lambda task, a: True) -> dict[str, dict]:
    """Per zero-shot task, the share of ``images`` whose attribute CLIP reads as ``attrs`` says
    (``accuracy``), over the (task, face) pairs ``keep`` admits (``n``)."""
    img = clip.encode_images(images)
    out = {}
    for task, (truth, prompts) in ZERO_SHOT_TASKS.items():
        keys = list(prompts)
        pred = (img @ clip.encode_text([prompts[k] for k in keys]).T).argmax(1).tolist()
        pairs = [(keys[p], truth(a)) for p, a in zip(pred, attrs) if keep(task, a)]
        out[task] = {"accuracy": float(np.mean([p == t for p, t in pairs])) if pairs else float("nan"),
                     "n": len(pairs)}
    return out
