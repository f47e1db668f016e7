"""Measurements of the toy latent text-to-image model (``data/models/toyfaces-sd``): its VAE, how
well samples follow their captions, the real-image round trip under a caption, and T-LOCO's
locality, unsupervised and text-supervised, on held-out rendered faces whose masks are exact.

Every face is handled under its own caption: the model is conditioned per face with
:func:`locobank.models.conditioned`, so the same code measures any Stable-Diffusion-shaped model.
"""

from __future__ import annotations

import statistics
from typing import Sequence

import torch

from ... import core
from ...images import to_uint8
from ...models import LoadedModel, conditioned
from ..data.captions import caption_without, edit_caption
from ..data.faces import HELD_OUT_SEED, batch, caption, face, sample_attributes
from ..data.probes import attribute_score, part_for, targets_for
from .common import psnr, stats, zero_shot_on


def _image(seed: int, device) -> torch.Tensor:
    return torch.from_numpy(batch([seed])).to(device)


def vae_psnr(model: LoadedModel, seeds: Sequence[int]) -> list[float]:
    """PSNR (dB) of each face decoded from its encoded latent."""
    x = torch.from_numpy(batch(list(seeds))).to(model.device)
    with torch.no_grad():
        rec = model.family.decode(model.family.encode(x))
    return psnr(rec.clamp(-1, 1), x).tolist()


def generate_from_captions(model: LoadedModel, seeds: Sequence[int], *, guidance: float, steps: int,
                           noise_seed: int = 0) -> torch.Tensor:
    """One sample per held-out face's caption (images in [-1, 1]), from seeded noise."""
    out = []
    for i, s in enumerate(seeds):
        m = conditioned(model, caption(sample_attributes(s)), "", guidance)
        g = torch.Generator().manual_seed(noise_seed * 1_000_003 + i)
        z = torch.randn(1, *model.family.state_shape, generator=g).to(model.device)
        with torch.no_grad():
            out.append(core.generate(m, z, steps).clamp(-1, 1))
    return torch.cat(out)


def adherence(clip, images: torch.Tensor, seeds: Sequence[int]) -> dict[str, dict[str, float]]:
    """Share of generated faces whose attribute (per zero-shot task) is the one their caption names,
    read by the toy CLIP's zero-shot classifier. Glasses count only where the caption says so (a
    caption never says "no glasses")."""
    return zero_shot_on(clip, images.cpu(), [sample_attributes(s) for s in seeds],
                        keep=lambda task, a: task != "glasses" or a.glasses)


def round_trip(model: LoadedModel, seeds: Sequence[int], t_edit: float, steps: int) -> list[float]:
    """Each face DDIM-inverted under its caption to ``t_edit`` and sampled back: PSNR (dB)."""
    out = []
    for s in seeds:
        m = conditioned(model, caption(sample_attributes(s)))
        x = _image(s, model.device)
        with torch.no_grad():
            back = core.sample(m, core.invert(m, x, t_edit, steps), t_edit, steps)
        out.append(float(psnr(back.clamp(-1, 1), x)[0]))
    return out


class _Face:
    """A held-out face under its caption, inverted to the edit time, with its reference render."""

    def __init__(self, model: LoadedModel, seed: int, t: int, steps: int, text: str | None = None):
        self.seed, self.t, self.steps = seed, t, steps
        self.face = face(seed)
        self.model = conditioned(model, caption(self.face.attrs) if text is None else text)
        self.x = _image(seed, model.device)
        with torch.no_grad():
            self.x_t = core.invert(self.model, self.x, t, steps)
            self.ref = core.sample(self.model, self.x_t, t, steps)

    def edited(self, delta: torch.Tensor, under: LoadedModel | None = None) -> torch.Tensor:
        """The face sampled from its state plus ``delta``, under its caption (or ``under``'s condition)."""
        with torch.no_grad():
            return core.sample(under or self.model, self.x_t + delta, self.t, self.steps)

    def mask(self, part: str) -> torch.Tensor:
        """The face's exact mask of ``part``."""
        return torch.from_numpy(self.face.masks[part])

    def spilled(self, delta: torch.Tensor, part: str, passes: int, under: LoadedModel | None = None) -> torch.Tensor:
        """The face edited by ``delta`` after ``passes`` spill passes outside the part (as ``apply --mask``),
        sampled under its caption (or ``under``'s condition) and compared with its unedited render."""
        inside = self.mask(part)[None].to(self.x_t.device)
        with torch.no_grad():
            return core.with_spill_passes(self.model, self.t, delta, inside, passes,
                                          lambda d: self.edited(d, under), self.ref)[1]


def locality_summary(model: LoadedModel, part: str, n_sources: int = 10, n_targets: int = 10, *, t_edit: float,
                     strength: float, null_rank: int = 5, constrained: bool = False, steps: int = 20,
                     iters: int = 50, seed0: int = HELD_OUT_SEED, passes: int = 2) -> dict:
    """Unsupervised T-LOCO: the top direction of each source face's ``part`` mask (under its
    caption), applied at +-``strength`` to the source and to targets (each under its own caption);
    locality against each face's own part mask, and the RMS pixel change. On the targets twice:
    the raw vector, and re-projected off each target's own null space outside its part mask (as
    ``apply --mask`` does, without registration). ``*_spill``: the same after ``passes`` spill
    passes, as ``apply --mask`` runs them."""
    t = core.to_timestep(model, t_edit)
    source, source_spill, change, vectors = [], [], [], []
    for s in range(seed0, seed0 + n_sources):
        f = _Face(model, s, t, steps)
        if not f.face.masks[part].any():
            continue
        v = core.find_directions(f.model, f.x_t, t, f.mask(part), rank=1, null_rank=null_rank,
                                 constrained=constrained, iters=iters).vectors[0]
        vectors.append(v)
        for sign in (1.0, -1.0):
            d = (f.edited(sign * strength * v) - f.ref)[0].cpu()
            source.append(core.locality(d, f.mask(part)))
            change.append(float(d.pow(2).mean().sqrt()))
            spilled = (f.spilled(sign * strength * v, part, passes) - f.ref)[0].cpu()
            source_spill.append(core.locality(spilled, f.mask(part)))
    raw, moved, moved_spill = [], [], []
    for i in range(n_targets):
        g = _Face(model, seed0 + 500 + i, t, steps)
        if not vectors or not g.face.masks[part].any():
            continue
        local = core.relocalize(g.model, g.x_t, t, [g.mask(part)], torch.stack(vectors), null_rank=null_rank)[0]
        for v, w in zip(vectors, local):
            for sign in (1.0, -1.0):
                raw.append(core.locality((g.edited(sign * strength * v) - g.ref)[0].cpu(), g.mask(part)))
                moved.append(core.locality((g.edited(sign * strength * w) - g.ref)[0].cpu(), g.mask(part)))
                spilled = (g.spilled(sign * strength * w, part, passes) - g.ref)[0].cpu()
                moved_spill.append(core.locality(spilled, g.mask(part)))
    return {"part": part, "strength": strength, "source": stats(source), "transfer": stats(raw),
            "transfer_reprojected": stats(moved), "spill_passes": passes, "source_spill": stats(source_spill),
            "transfer_reprojected_spill": stats(moved_spill), "rms_change": statistics.mean(change) if change else 0.0}


def supervised_study(model: LoadedModel, query: str, n: int = 10, *, t_edit: float, strength: float,
                     null_rank: int = 5, edit_guidance: float | None = None, steps: int = 20,
                     seed0: int = HELD_OUT_SEED, passes: int = 2) -> dict:
    """Text-supervised T-LOCO on ``n`` held-out faces that lack ``query``: the source is the face's
    caption, the edit prompt the same caption with the attribute changed; the direction is applied
    at ``+strength``. Counts faces whose probe moves the right way, and the locality; ``*_spill``:
    the same after ``passes`` spill passes. With the spill passes too: ``caption_without``, the
    face inverted, edited and sampled under its caption without the attribute's words (the
    direction still from that caption to the edit caption); ``under_edit_caption``, the steps after
    the edit time sampled under the edit caption instead; ``caption_switch``, that switch alone,
    without the direction. They show how much of an edit the face's own caption undoes in the
    steps that follow it."""
    t = core.to_timestep(model, t_edit)
    part = part_for(query)
    runs: dict[str, tuple[list, list]] = {k: ([], []) for k in ("plain", "spill", "without", "under_edit", "switch")}
    for s in targets_for(query, n, seed0 + 2000):
        f = _Face(model, s, t, steps)
        bare = _Face(model, s, t, steps, caption_without(f.face.attrs, query))
        edit = conditioned(model, edit_caption(f.face.attrs, query), "", edit_guidance)
        v = strength * core.find_supervised(f.model, edit, f.x_t, t, f.mask(part), null_rank=null_rank).vectors[0]
        w = strength * core.find_supervised(bare.model, edit, bare.x_t, t, bare.mask(part), null_rank=null_rank).vectors[0]
        outs = {"plain": (f, f.edited(v)), "spill": (f, f.spilled(v, part, passes)),
                "without": (bare, bare.spilled(w, part, passes)), "under_edit": (f, f.spilled(v, part, passes, edit)),
                "switch": (f, f.spilled(0 * v, part, passes, edit))}
        for k, (h, out) in outs.items():  # each against the face's own unedited render
            before = attribute_score(query, to_uint8(h.ref[0]), f.face.attrs)
            runs[k][0].append(attribute_score(query, to_uint8(out[0]), f.face.attrs) - before)
            runs[k][1].append(core.locality((out - h.ref)[0].cpu(), f.mask(part)))
    gains, local = runs["plain"]
    report = {"query": query, "part": part, "strength": strength, "n": len(gains),
              "moved_right_way": sum(g > 0 for g in gains), "gain_median": statistics.median(gains) if gains else 0.0,
              "locality": stats(local), "spill_passes": passes}
    for k, name in (("spill", "spill"), ("without", "caption_without"), ("under_edit", "under_edit_caption"),
                    ("switch", "caption_switch")):
        gs, loc = runs[k]
        report[f"moved_right_way_{name}"] = sum(x > 0 for x in gs)
        report[f"gain_median_{name}"] = statistics.median(gs) if gs else 0.0
        report[f"locality_{name}"] = stats(loc)
    return report

