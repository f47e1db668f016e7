"""The toy world's two reports as library calls: ``toy eval`` (the model's own bars: samples,
reconstruction, LOCO locality, CLIP zero-shot) and ``toy quality`` (search and apply measured
with pixel probes on a harvested catalog). Both return plain dicts; the CLI prints them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..progress import Progress, stage
from . import HELD_OUT_SEED


def eval_report(model_dir: Path | None = None, *, faces: int = 10, parts: Sequence[str] = ("mouth", "eyes", "hair"),
                t_edit: float | None = None, null_rank: int | None = None, strength: float | None = None,
                basis: str | None = None, jacobian_at: str | None = None, steps: int = 20,
                samples: Path | None = None, clip: bool = True, progress: Progress | None = None) -> dict:
    """Measure a toy DDPM (the shipped one by default) on held-out faces, with the harvest's
    rules for options not given: ``t_edit`` applies to every part, else each part gets the
    model's per-label time."""
    from PIL import Image

    from ..harvest import HarvestParams
    from ..models import load_model
    from ..paths import TOY_DDPM
    from . import evaluate as E

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
        grid = E.sample_grid(lm, 64, 50)
        Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(samples)
        report["samples"] = str(samples)
    psnr = E.reconstruction_psnr(lm, range(HELD_OUT_SEED, HELD_OUT_SEED + faces), p.t_edit, lm.settings.steps)
    report["reconstruction_psnr"] = {"mean": sum(psnr) / len(psnr), "min": min(psnr)}
    report["locality"] = {}
    update = stage(progress, "locality", len(parts))
    for part in parts:
        rep = E.locality_study(lm, part, faces, faces, t_edit=per_part.get(part, p.t_edit), null_rank=p.null_rank,
                               strength=strengths[part], steps=steps, constrained=p.basis == "constrained",
                               jacobian_at=p.jacobian_at)
        report["locality"][part] = rep.summary()
        update(1)
    if clip:
        from ..clip import load_clip

        report["clip_zero_shot"] = E.zero_shot(load_clip("toy"), 500)
    return report


def quality_report(out: Path, *, faces: int = 24, targets: int = 10, targets_from: int | None = None,
                   unseen: int = 20, rank: int = 3, iters: int = 12, reuse: bool = False,
                   spill_passes: int | None = None, register: bool = True, device: str | None = None,
                   progress: Progress | None = None) -> dict:
    """Harvest ``faces`` held-out faces through the demo's path into ``out`` (or reuse that run),
    then measure the search bars and the apply bars; writes and returns ``quality.json``."""
    from ..catalog import Catalog
    from ..clip import load_clip
    from ..demo import DemoConfig, run_demo
    from ..index import catalog_folder
    from ..models import load_model
    from ..paths import TOY_DDPM, TOY_SD
    from . import quality as Q

    cfg = DemoConfig(faces=faces, unseen=min(unseen, DemoConfig.unseen), rank=rank, iters=iters,
                     queries=Q.SEARCH_QUERIES, k=5)  # the demo's own report shows as many faces as `demo`
    db = Path(out) / "catalog.db"
    if not reuse:
        run_demo(out, cfg, stage=progress, device=device)
    elif not db.exists():
        raise InputError(f"--reuse: there is no run in {out} (no catalog.db); run without --reuse first")
    model = load_model(TOY_DDPM, device=device)
    clip = load_clip("toy", device=device)
    seeds = [HELD_OUT_SEED + 10_000 + i for i in range(unseen)]
    t0 = HELD_OUT_SEED + 10_000 if targets_from is None else targets_from
    with Catalog.open(f"sqlite:///{db.resolve()}") as cat:
        index_dir = catalog_folder(out, cat.url)  # where the demo's path built it
        rows = Q.search_quality(cat, clip, model, n_targets=targets, seed0=t0, index_folder=index_dir,
                                sheets=out / "sheets", progress=stage(progress, "search bars", len(Q.SEARCH_QUERIES)))
        sd = load_model(TOY_SD, device=device)
        latent_rows = Q.search_quality(cat, clip, sd, n_targets=targets, seed0=t0, index_folder=index_dir,
                                       sheets=out / "sheets-latent",
                                       progress=stage(progress, "latent search bars", len(Q.SEARCH_QUERIES)))
        rep = Q.apply_quality(cat, clip, model, seeds, index_folder=index_dir,
                              lacking_seed0=HELD_OUT_SEED + 10_000, spill_passes=spill_passes, register=register,
                              progress=stage(progress, "apply bars", 5))
        n_dirs = len(cat.list_directions())
    report = {"model": model.info(), "faces": faces, "targets": targets, "targets_from": t0, "unseen": unseen,
              "rank": rank, "directions": n_dirs, "search": [r.__dict__ for r in rows], "apply": rep.to_dict(),
              "latent_model": sd.info(), "search_latent": [r.__dict__ for r in latent_rows]}
    (Path(out) / "quality.json").write_text(json.dumps(report, indent=2))
    return report
