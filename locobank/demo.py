"""The main job end to end on the toy world: faces -> harvest -> embed -> index -> search -> apply -> report.

Everything it makes goes under one folder (its own catalog and index included), so running it
never touches the user's catalog.
"""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import demo_latent
from .demo_latent import LatentHalf
from .errors import LocobankError
from .paths import TOY_DDPM, slug

log = logging.getLogger(__name__)

QUERIES = ("smile", "frown", "blue eyes", "bigger eyes", "blond hair", "black hair")
REACH = 50  # how many unseen faces per face shown are searched for ones that lack the attribute


def faces_for(query: str, n: int, seed0: int, reach: int = REACH) -> tuple[list[int], int]:
    """Seeds of ``n`` unseen faces for ``query``: the first from ``seed0`` on that do not show
    it yet, so that its edit can show, searching ``reach * n`` faces; then the first others fill
    in when too few lack it, or when the toy world has no probe for ``query``. Returns the seeds
    and how many of them lack it."""
    from .toyworld.probes import has_probe, targets_for

    lacking = targets_for(query, n, seed0, within=reach * n) if has_probe(query) else []
    others = [s for s in range(seed0, seed0 + 2 * n) if s not in lacking]  # at least n of them
    return (lacking + others)[:n], len(lacking)


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
        """The reduced demo CI runs: two faces harvested, two shown per query, fewer steps."""
        return cls(faces=2, unseen=2, labels=("mouth", "hair"), rank=2, steps=10, iters=8,
                   queries=("smile", "blond hair"), k=3, latent_labels=("mouth",), latent_queries=("smile",),
                   latent_unseen=1)


@dataclass
class DemoResult:
    out: Path
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)
    directions: int = 0
    queries: dict[str, list[dict]] = field(default_factory=dict)
    latent: LatentHalf | None = None


Stage = Callable[[str, int], Callable[[int], None]]


def run_demo(out: Path, config: DemoConfig | None = None, *, stage: Stage | None = None, device: str | None = None) -> DemoResult:
    """Run every step of locobank on the toy world into ``out``; ``stage(name, total)`` returns a progress callback."""
    from .catalog import Catalog
    from .clip import load_clip
    from .index import catalog_folder
    from .models import load_model
    from .views import gallery

    cfg = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = stage or (lambda name, total: (lambda n: None))
    res = DemoResult(out=out, report=out / "report.html")
    t0 = time.perf_counter()
    chosen = _make_faces(out, cfg, stage)
    res.seconds["faces"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = load_model(TOY_DDPM, device=device)
    for f in (out / "catalog.db", out / "catalog.db-wal", out / "catalog.db-shm"):
        f.unlink(missing_ok=True)
    url = f"sqlite:///{(out / 'catalog.db').resolve()}"
    with Catalog.open(url, upgrade=True) as cat:
        params = _harvest(cat, model, out / "faces", cfg, stage)
        res.seconds["harvest"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res.latent = demo_latent.harvest(out / "faces", url, labels=cfg.latent_labels, rank=cfg.rank, steps=cfg.steps,
                                         iters=cfg.iters, stage=stage, device=device)
        res.directions = len(cat.list_directions())
        res.seconds["latent harvest"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        clip = load_clip("toy", device=device)
        index_dir = catalog_folder(out, cat.url)  # where `LOCOBANK_HOME=out locobank search` looks
        _index(cat, clip, index_dir, min(params.steps, 20), device, stage)
        res.seconds["index"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        (out / "sheets").mkdir(exist_ok=True)
        (out / "edits").mkdir(exist_ok=True)
        cb = stage("search+apply", len(cfg.queries) * cfg.unseen)  # one step per edited face
        for q in cfg.queries:
            res.queries[q] = _query(cat, clip, model, q, chosen[q], out, index_dir, cfg, params.steps, device, cb)
        res.seconds["search+apply"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _latent_queries(cat, clip, res.latent, chosen, out, index_dir, cfg, stage, device)
        res.seconds["latent search+apply"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        gallery(cat, out / "gallery", clip_id=clip.clip_id)
    _write_report(res, model.model_id, params)
    latent = None if res.latent is None else {"model": res.latent.model_id, "total": res.latent.total,
                                               "directions": res.latent.directions, "queries": res.latent.queries}
    (out / "summary.json").write_text(json.dumps({"directions": res.directions, "seconds": res.seconds,
                                                   "queries": res.queries, "latent": latent}, indent=2))
    res.seconds["report"] = time.perf_counter() - t0
    return res


def _make_faces(out: Path, cfg: DemoConfig, stage) -> dict:
    """The harvest's faces, and each query's unseen faces that lack its attribute."""
    from .toyworld import HELD_OUT_SEED, write_dataset

    write_dataset(out / "faces", cfg.faces, HELD_OUT_SEED, progress=stage("faces", cfg.faces))
    chosen = {q: faces_for(q, cfg.unseen, HELD_OUT_SEED + 10_000) for q in dict.fromkeys(cfg.queries + cfg.latent_queries)}
    last = max(s for seeds, _ in chosen.values() for s in seeds)
    write_dataset(out / "unseen", last - HELD_OUT_SEED - 10_000 + 1, HELD_OUT_SEED + 10_000)
    return chosen


def _harvest(cat, model, faces_dir: Path, cfg: DemoConfig, stage):
    """Harvest the faces' parts with the model's settings (and the demo's rank, steps, iterations)."""
    from .harvest import HarvestParams, discover, plan, work

    params = HarvestParams.from_defaults(model.settings, rank=cfg.rank, steps=cfg.steps, iters=cfg.iters)
    pairs = discover(faces_dir, labels=set(cfg.labels))
    run = plan(cat, model, pairs, params)
    work(cat, model, run.id, params, on_job=lambda kind, n, cb=stage("harvest", len(pairs)): cb(1))
    return params


def _latent_queries(cat, clip, half: LatentHalf, chosen: dict, out: Path, index_dir: Path, cfg: DemoConfig, stage,
                    device) -> None:
    """The latent half's queries, each over both families, its top latent hit applied to unseen faces."""
    demo_latent.describe_directions(cat, half, out)
    for q in cfg.latent_queries:
        seeds = chosen[q][0][: cfg.latent_unseen]
        half.queries[q] = demo_latent.query(cat, clip, half, q, seeds, out, index_dir, cfg.k, cfg.steps, device,
                                            stage(f"latent: {q}", len(seeds)))


def _index(cat, clip, index_dir: Path, steps: int, device, stage) -> None:
    """Embed every direction's effect, name it, and build the index."""
    from .embed import embed_directions
    from .index import build_index
    from .search import name_directions

    todo = cat.directions_without_effect(clip.clip_id)
    done = embed_directions(cat, clip, steps=steps, n_probes=3, device=device, progress=stage("embed", len(todo)))
    if done.failed:  # e.g. a model folder changed on disk since the harvest: its directions no longer fit it
        raise LocobankError(f"{done.failed} directions could not be rendered: {'; '.join(dict.fromkeys(done.errors))}")
    name_directions(cat, clip)
    build_index(cat, clip.clip_id, folder=index_dir)


def _query(cat, clip, model, q: str, chosen, out: Path, index_dir: Path, cfg: DemoConfig, steps: int, device,
           cb) -> dict:
    """Search ``q``, draw its sheet, and apply its top hit to its unseen faces (as `apply --mask`)."""
    from .apply import DirectionSpec, apply_to_images, prepare
    from .images import load_image, to_uint8
    from .search import search
    from .views import search_sheet

    seeds, lacking = chosen
    unseen_dir = out / "unseen"
    unseen = [unseen_dir / f"face_{s:07d}.png" for s in seeds]
    hits = search(cat, clip, q, k=cfg.k, model=model.fingerprint, index_folder=index_dir)
    entry = {"hits": [h.to_dict() for h in hits], "sheet": None, "edits": []}
    if not hits:
        cb(len(unseen))
        return entry
    entry["sheet"] = f"sheets/{search_sheet(cat, q, hits, out / 'sheets', clip_id=clip.clip_id).name}"
    top = hits[0]
    prep = prepare(cat, [DirectionSpec(top.id)], device=device)
    prep.strengths[0] *= top.sign
    afters, masked = [], 0
    for p in unseen:  # as `apply --mask`: re-localised on each face's own part
        mask = unseen_dir / f"{p.stem}_{top.mask_label}.png"
        afters += apply_to_images(prep, [p], mask=mask if mask.exists() else None, steps=steps, progress=cb)
        masked += mask.exists()
    for p, after in zip(unseen, afters):
        pair = np.concatenate([to_uint8(load_image(p, model.resolution)), to_uint8(after)], 1)
        name = f"edits/{slug(q, 'query')}_{p.stem}.png"
        Image.fromarray(pair).resize((pair.shape[1] * 4, pair.shape[0] * 4), Image.NEAREST).save(out / name)
        entry["edits"].append(name)
    entry["applied"] = {"id": top.id, "strength": prep.strengths[0], "mask": top.mask_label, "masked": masked,
                        "lacking": lacking}
    return entry


def _write_report(res: DemoResult, model_id: str, params) -> None:
    """report.html: each query, its hits, and before/after pairs on unseen faces."""
    from .search import named

    e = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>locobank demo</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
             "img{image-rendering:pixelated;margin:4px;border:1px solid #ddd}"
             "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}"
             "</style>",
             f"<h1>locobank demo</h1><p>Model <code>{e(model_id)}</code>, rank {params.rank}, null rank {params.null_rank}, "
             f"t_edit {params.t_edit}{''.join(f' ({k} {v:g})' for k, v in params.t_edit_by_label)}, "
             f"Jacobian at {params.jacobian_at} states, {params.basis} basis. "
             f"{res.directions} directions harvested. "
             f"<a href='gallery/index.html'>Open the gallery</a>.</p>",
             "<p>Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items()) + "</p>"]
    for q, entry in res.queries.items():
        parts.append(f"<h2>“{e(q)}”</h2>")
        if not entry["hits"]:
            parts.append("<p>no hits</p>")
            continue
        parts.append("<table><tr><th>id</th><th>match</th><th>score</th><th>transfer</th><th>sign</th><th>mask</th>"
                     "<th>name</th></tr>")
        for h in entry["hits"]:
            parts.append(f"<tr><td>{h['id']}</td><td>{_num(h['match'])}</td><td>{h['score']:.3f}</td>"
                         f"<td>{_num(h['transfer'])}</td><td>{'+' if h['sign'] > 0 else '−'}</td>"
                         f"<td>{e(h['mask_label'])}</td><td>{e(named(h['label'], h['label_sign']))}</td></tr>")
        parts.append("</table>")
        if entry.get("sheet"):
            parts.append(f"<p>Contact sheet of the hits (rows: directions; columns: −λ, 0, +λ):<br>"
                         f"<img src='{e(entry['sheet'])}'></p>")
        if entry.get("applied"):
            a = entry["applied"]
            n, k, masked = len(entry["edits"]), a.get("lacking", 0), a.get("masked", 0)
            whose = "each with its own" if masked == n else f"{masked} of them with their own"
            how = f", {whose} {e(str(a['mask']))} mask (<code>locobank apply --mask</code>)" if masked else ""
            which = " that lack it" if k == n else f" ({k} of them lack it)" if k else ""
            parts.append(f"<p>Top hit #{a['id']} applied at strength {a['strength']:g} to {n} unseen faces{which}{how} "
                         f"(before | after):<br>" + "".join(f"<img src='{e(x)}'>" for x in entry["edits"]) + "</p>")
    if res.latent is not None:
        parts += demo_latent.report_section(res.latent)
    res.report.write_text("\n".join(parts))


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
