"""``locobank toy eval-sd`` as one library call: the toy latent model's quality bars (VAE, prompt
adherence, round trip, unsupervised and text-supervised T-LOCO) as a plain dict."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from ...progress import Progress, stage
from ..data.faces import HELD_OUT_SEED

SUPERVISED = ("smile", "blue eyes", "blond hair", "glasses")


def eval_report(model_dir: Path | None = None, *, faces: int = 10, adherence_faces: int = 200,
                parts: Sequence[str] = ("mouth", "eyes", "hair"), queries: Sequence[str] = SUPERVISED,
                t_edit: float | None = None, null_rank: int | None = None, strength: float | None = None,
                basis: str | None = None, steps: int = 20, samples: Path | None = None,
                progress: Progress | None = None) -> dict:
    """Measure the toy latent model (the shipped one by default) on held-out faces, each under its
    own caption; options not given come from the model's ``locobank.json``."""
    from ...clip import load_clip
    from ...models import load_model
    from ...paths import TOY_SD
    from ..data.probes import part_for
    from ..evaluation import latent as E
    from ..evaluation.common import save_grid

    lm = load_model(model_dir or TOY_SD)
    st = lm.settings
    t = st.t_edit if t_edit is None else t_edit
    t_for = {p: t if t_edit is not None else st.t_edit_for(p) for p in (*parts, *map(part_for, queries))}
    nr = st.null_rank if null_rank is None else null_rank
    constrained = (basis or st.basis) == "constrained"
    strengths = {p: strength if strength is not None else st.strength_for(p) for p in parts}
    report: dict = {"model": lm.info(), "t_edit": t, "t_edit_by_part": t_for, "null_rank": nr,
                    "basis": basis or st.basis, "guidance": st.guidance, "strength": strengths}
    held = range(HELD_OUT_SEED, HELD_OUT_SEED + 200)
    psnr = E.vae_psnr(lm, held)
    report["vae_psnr"] = {"mean": statistics.mean(psnr), "min": min(psnr), "n": len(psnr)}
    seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + adherence_faces))
    update = stage(progress, "adherence", 1)
    imgs = E.generate_from_captions(lm, seeds, guidance=st.guidance, steps=st.render_steps)
    report["adherence"] = E.adherence(load_clip("toy"), imgs, seeds)
    update(1)
    if samples is not None:
        save_grid(imgs[:64], samples)
        report["samples"] = str(samples)
    rt = E.round_trip(lm, range(HELD_OUT_SEED, HELD_OUT_SEED + faces), t, steps)
    report["round_trip_psnr"] = {"mean": statistics.mean(rt), "min": min(rt), "n": len(rt)}
    update = stage(progress, "locality", len(parts) + len(queries))
    report["locality"] = {}
    for part in parts:
        report["locality"][part] = E.locality_summary(lm, part, faces, faces, t_edit=t_for[part],
                                                      strength=strengths[part], null_rank=nr,
                                                      constrained=constrained, steps=steps, passes=st.spill_passes)
        update(1)
    report["supervised"] = {}
    for q in queries:
        report["supervised"][q] = E.supervised_study(lm, q, faces, t_edit=t_for[part_for(q)], null_rank=nr,
                                                     steps=steps, passes=st.spill_passes,
                                                     strength=strength or st.strength_for(part_for(q)))
        update(1)
    return report

