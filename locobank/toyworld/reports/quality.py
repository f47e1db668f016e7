"""``locobank toy quality`` as one library call: search and apply measured with pixel probes on a
catalog harvested through the demo's own path."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import InputError
from ...progress import Progress, stage
from ..data.faces import HELD_OUT_SEED


def quality_report(out: Path, *, faces: int = 24, targets: int = 10, targets_from: int | None = None,
                   unseen: int = 20, rank: int = 3, iters: int = 12, reuse: bool = False,
                   spill_passes: int | None = None, register: bool = True, device: str | None = None,
                   progress: Progress | None = None) -> dict:
    """Harvest ``faces`` held-out faces through the demo's path into ``out`` (or reuse that run),
    then measure the search bars and the apply bars; writes and returns ``quality.json``."""
    from ...catalog import Catalog
    from ...clip import load_clip
    from ...index import catalog_folder
    from ...models import load_model
    from ...paths import TOY_DDPM, TOY_SD
    from ..demo import DemoConfig, run_demo
    from ..evaluation import quality as Q

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
        index_dir = catalog_folder(out, cat.catalog_id)  # where the demo's path built it
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
