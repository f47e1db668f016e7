"""The main job end to end on the toy world: faces -> harvest -> embed -> index -> search -> apply -> report.

Everything it makes goes under one folder (its own catalog and index included), so running it
never touches the user's catalog. Both halves, the toy pixel DDPM and the toy latent
text-to-image model, are harvested the same way into one catalog, ranked by one index, and shown
by one search -> apply loop (:mod:`.queries`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ...errors import LocobankError
from ...paths import TOY_DDPM, TOY_SD
from ..data.faces import HELD_OUT_SEED, write_dataset
from .latent import LatentHalf, describe_directions, write_manifest
from .page import write_report, write_summary
from .queries import QueryRun, faces_for, latent_query, pixel_query

if TYPE_CHECKING:
    from ...harvest.run import HarvestOutcome

QUERIES = ("smile", "frown", "blue eyes", "bigger eyes", "blond hair", "black hair")
Stage = Callable[[str, int], Callable[[int], None]]


@dataclass
class DemoConfig:
    """Sizes of the demo; ``quick`` is the same path with less work (CI uses it)."""

    faces: int = 4
    unseen: int = 6  # unseen faces each query's top hit is applied to
    labels: tuple[str, ...] = ("eyes", "mouth", "hair")
    rank: int | None = None
    steps: int | None = None
    iters: int = 12
    queries: tuple[str, ...] = QUERIES
    k: int = 5
    # The latent half (the toy text-to-image model): its parts, queries and unseen faces per query.
    latent_labels: tuple[str, ...] = ("eyes", "mouth", "hair")
    latent_queries: tuple[str, ...] = ("smile", "blond hair", "blue eyes")
    latent_unseen: int = 2

    @classmethod
    def quick(cls) -> "DemoConfig":
        """The reduced demo CI runs: two faces' mouths harvested, one query, one face shown, fewer steps."""
        return cls(faces=2, unseen=1, labels=("mouth",), rank=2, steps=10, iters=8,
                   queries=("smile",), k=3, latent_labels=("mouth",), latent_queries=("smile",),
                   latent_unseen=1)


@dataclass
class DemoResult:
    """What a demo run made: its folder and report, the seconds of each stage, how many directions,
    and per query the pixel half's hits and edits (the latent half's are in ``latent``)."""

    out: Path
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)
    directions: int = 0
    queries: dict[str, list[dict]] = field(default_factory=dict)
    latent: LatentHalf | None = None


def run_demo(out: Path, config: DemoConfig | None = None, *, stage: Stage | None = None, device: str | None = None) -> DemoResult:
    """Run every step of locobank on the toy world into ``out``; ``stage(name, total)`` returns a progress callback."""
    from ...catalog import Catalog
    from ...clip import load_clip
    from ...index import catalog_folder
    from ...views import gallery

    cfg = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = stage or (lambda name, total: (lambda n: None))
    res = DemoResult(out=out, report=out / "report.html")
    lap = _laps(res.seconds)
    chosen = _make_faces(out, cfg, stage)
    lap("faces")
    url = _fresh_catalog(out)
    with Catalog.open(url, upgrade=True) as cat:
        pixel = _harvest(TOY_DDPM, out / "faces", url, cfg, stage, device, labels=set(cfg.labels), half="pixel")
        lap("harvest")
        done = _harvest(TOY_SD, write_manifest(out / "faces", cfg.latent_labels), url, cfg, stage, device,
                        half="latent")
        res.latent = LatentHalf(model_id=done.model_id, fingerprint=done.fingerprint, params=done.params.to_dict(),
                                seconds=done.seconds)
        res.directions = len(cat.list_directions())
        lap("latent harvest")
        clip = load_clip("toy", device=device)
        index_dir = catalog_folder(out, cat.catalog_id)  # where `LOCOBANK_HOME=out locobank search` looks
        _index(cat, clip, index_dir, min(pixel.params.steps, 20), device, stage)
        lap("index")
        run = QueryRun(cat, clip, out, index_dir, cfg.k, device)
        (out / "sheets").mkdir(exist_ok=True)
        (out / "edits").mkdir(exist_ok=True)
        cb = stage("search+apply", len(cfg.queries) * cfg.unseen)  # one step per edited face
        for q in cfg.queries:
            res.queries[q] = pixel_query(run, q, chosen[q], pixel.fingerprint, pixel.params.steps, cb)
        lap("search+apply")
        _latent_queries(run, res.latent, chosen, cfg, stage)
        lap("latent search+apply")
        gallery(cat, out / "gallery", clip_id=clip.clip_id)
    write_report(res, pixel.model_id, pixel.params)
    write_summary(res)
    lap("report")
    return res


def _laps(seconds: dict[str, float]) -> Callable[[str], None]:
    """A stopwatch: each call records the seconds since the last one (or since it was made) under its name."""
    last = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = now - last[0]
        last[0] = now

    return lap


def _make_faces(out: Path, cfg: DemoConfig, stage: Stage) -> dict:
    """The harvest's faces, and each query's unseen faces that lack its attribute."""
    write_dataset(out / "faces", cfg.faces, HELD_OUT_SEED, progress=stage("faces", cfg.faces))
    chosen = {q: faces_for(q, cfg.unseen, HELD_OUT_SEED + 10_000) for q in dict.fromkeys(cfg.queries + cfg.latent_queries)}
    last = max(s for seeds, _ in chosen.values() for s in seeds)
    write_dataset(out / "unseen", last - HELD_OUT_SEED - 10_000 + 1, HELD_OUT_SEED + 10_000)
    return chosen


def _fresh_catalog(out: Path) -> str:
    """The URL of the run's own SQLite catalog, emptied of an earlier run's."""
    for f in (out / "catalog.db", out / "catalog.db-wal", out / "catalog.db-shm"):
        f.unlink(missing_ok=True)
    return f"sqlite:///{(out / 'catalog.db').resolve()}"


def _harvest(model: Path, images: Path, url: str, cfg: DemoConfig, stage: Stage, device: str | None, *,
             labels: set[str] | None = None, half: str) -> HarvestOutcome:
    """One half's faces harvested into the catalog at ``url`` as ``locobank harvest`` does it: the
    model's settings, with the demo's rank, steps and iterations."""
    from ...harvest.run import HarvestRequest, run_harvest

    req = HarvestRequest(model=str(model), images=images, labels=labels, db_url=url, device=device,
                         given={"rank": cfg.rank, "steps": cfg.steps, "iters": cfg.iters})
    done = run_harvest(req, stage)
    if done.failed:
        raise LocobankError(f"the {half} half's harvest failed: " + "; ".join(done.failures))
    return done


def _latent_queries(run: QueryRun, half: LatentHalf, chosen: dict, cfg: DemoConfig, stage: Stage) -> None:
    """The latent half's queries, each over both families, its top latent hit applied to unseen faces."""
    describe_directions(run.cat, half, run.out)
    for q in cfg.latent_queries:
        seeds = chosen[q][0][: cfg.latent_unseen]
        half.queries[q] = latent_query(run, q, seeds, half.fingerprint, cfg.steps, stage(f"latent: {q}", len(seeds)))


def _index(cat, clip, index_dir: Path, steps: int, device: str | None, stage: Stage) -> None:
    """Embed every direction's effect, name it, and build the index."""
    from ...embed import embed_directions
    from ...index import build_index
    from ...search import name_directions

    todo = cat.directions_without_effect(clip.clip_id)
    done = embed_directions(cat, clip, steps=steps, n_probes=3, device=device, progress=stage("embed", len(todo)))
    if done.failed:  # e.g. a model folder changed on disk since the harvest: its directions no longer fit it
        raise LocobankError(f"{done.failed} directions could not be rendered: {'; '.join(dict.fromkeys(done.errors))}")
    name_directions(cat, clip)
    build_index(cat, clip.clip_id, folder=index_dir)
