"""Measurements of the toy pixel DDPM: samples, reconstruction, and LOCO locality on held-out
faces whose part masks are exact."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from ... import core
from ...models import LoadedModel
from ..data.faces import HELD_OUT_SEED, batch, face
from .common import psnr, stats


def samples(model: LoadedModel, n: int = 64, steps: int = 50, seed: int = 0) -> torch.Tensor:
    """``n`` DDIM samples from seeded pure noise (images in [-1, 1])."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *model.family.state_shape, generator=g).to(model.device)
    return core.generate(model, x, steps)


def reconstruction_psnr(model: LoadedModel, seeds, t_edit: float = 0.6, steps: int = 50) -> list[float]:
    """DDIM-invert held-out faces to ``t_edit`` and sample back; PSNR of each against its input."""
    x = torch.from_numpy(batch(seeds)).to(model.device)
    xt = core.invert(model, x, t_edit, steps)
    return psnr(core.sample(model, xt, t_edit, steps), x).tolist()


@dataclass
class LocalityReport:
    """Per-edit locality shares of one part's directions, on their source faces and transferred."""

    part: str
    source: list[float]
    transfer: list[float]
    change: list[float]  # RMS pixel change of the source edit, to see that something happened

    def summary(self) -> dict:
        """The medians and worst cases, as ``toy eval`` reports them."""
        return {"part": self.part, "source": stats(self.source) if self.source else {},
                "transfer": stats(self.transfer) if self.transfer else {},
                "rms_change": statistics.mean(self.change) if self.change else 0.0}


def locality_report(model: LoadedModel, part: str, n_sources: int = 10, n_targets: int = 10, *, t_edit: float = 0.6,
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
            rep.source.append(core.locality(delta, torch.from_numpy(f.masks[part])))
            rep.change.append(float(delta.pow(2).mean().sqrt()))
            outs = core.sample(model, tgt_xt + sign * strength * v, t, steps)
            for j in range(len(tgt_seeds)):
                rep.transfer.append(core.locality((outs[j] - tgt_ref[j]).cpu(), tgt_masks[j]))
    return rep
