"""``locobank toy eval`` as one library call: the toy pixel DDPM's own bars (samples,
reconstruction, LOCO locality, CLIP zero-shot) as a plain dict."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...progress import Progress, stage
from ..data.faces import HELD_OUT_SEED


def eval_report(model_dir: Path | None = None, *, faces: int = 10, parts: Sequence[str] = ("mouth", "eyes", "hair"),
                t_edit: float | None = None, null_rank: int | None = None, strength: float | None = None,
                basis: str | None = None, jacobian_at: str | None = None, steps: int = 20,
                samples: Path | None = None, clip: bool = True, progress: Progress | None = None) -> dict:
    """Measure a toy DDPM (the shipped one by default) on held-out faces, with the harvest's
    rules for options not given: ``t_edit`` applies to every part, else each part gets the
    model's per-label time."""
    from ...harvest import HarvestParams
    from ...models import load_model
    from ...paths import TOY_DDPM
    from ..evaluation import pixel as E
    from ..evaluation.common import save_grid, zero_shot

    lm = load_model(model_dir or TOY_DDPM)
    p = HarvestParams.from_defaults(lm.settings, t_edit=t_edit, null_rank=null_rank, basis=basis,
                                    jacobian_at=jacobian_at)
    per_part = dict(p.t_edit_by_label)
    strengths = {part: strength if strength is not None else lm.strength_for(part) for part in parts}
    report: dict = {"model": lm.info(), "t_edit": p.t_edit, "null_rank": p.null_rank, "strength": strengths,
                    "basis": p.basis, "jacobian_at": p.jacobian_at}
    if per_part:
        report["t_edit_by_label"] = per_part
    if samples is not None:
        save_grid(E.samples(lm, 64, 50), samples)
        report["samples"] = str(samples)
    psnr = E.reconstruction_psnr(lm, range(HELD_OUT_SEED, HELD_OUT_SEED + faces), p.t_edit, lm.settings.steps)
    report["reconstruction_psnr"] = {"mean": sum(psnr) / len(psnr), "min": min(psnr)}
    report["locality"] = {}
    update = stage(progress, "locality", len(parts))
    for part in parts:
        rep = E.locality_report(lm, part, faces, faces, t_edit=per_part.get(part, p.t_edit), null_rank=p.null_rank,
                                strength=strengths[part], steps=steps, constrained=p.basis == "constrained",
                                jacobian_at=p.jacobian_at)
        report["locality"][part] = rep.summary()
        update(1)
    if clip:
        from ...clip import load_clip

        report["clip_zero_shot"] = zero_shot(load_clip("toy"), 500)
    return report
