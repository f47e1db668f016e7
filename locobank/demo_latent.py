"""The demo's latent half: its faces harvested again with the toy latent text-to-image model
(T-LOCO through inversion under each face's caption), unsupervised and text-supervised, into the
same catalog, so that one index and one search rank both families. Each query's top latent hit is
applied to unseen faces, each inverted and sampled under its own caption without the query's
words (a caption that names what an edit changes undoes it in the steps after the edit time)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import LocobankError
from .paths import TOY_SD, slug

SUPERVISED = ("smile", "blond hair")  # text-supervised jobs: the first harvest face lacking each


@dataclass
class LatentHalf:
    """What the latent half made: its model, its directions, and per query its hits and edits."""

    model_id: str = ""
    fingerprint: str = ""
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    total: int = 0  # latent directions harvested; ``directions`` holds each job's top one
    directions: list[dict] = field(default_factory=list)
    queries: dict[str, dict] = field(default_factory=dict)


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line.strip()]


def write_manifest(faces: Path, labels: tuple[str, ...], supervised: tuple[str, ...] = SUPERVISED) -> Path:
    """``faces/latent.jsonl``: each face under its caption with its part masks, and per query in
    ``supervised`` one text-supervised row (caption -> the caption with the attribute) on the
    first face that lacks it."""
    from .toyworld.faces import caption, sample_attributes
    from .toyworld.probes import lacks, part_for
    from .toyworld.sd_eval import EDITS

    rows = _rows(faces)
    out = [{"image": r["image"], "prompt": r["caption"], "masks": {k: r["masks"][k] for k in labels if k in r["masks"]}}
           for r in rows]
    for q in supervised:
        part = part_for(q)
        lacking = [r for r in rows if lacks(q, r["attributes"]["seed"]) and part in r["masks"]]
        if lacking:
            r = lacking[0]
            edit = caption(EDITS[q](sample_attributes(r["attributes"]["seed"])))
            out.append({"image": r["image"], "prompt": r["caption"], "edit_prompt": edit, "masks": {part: r["masks"][part]}})
    path = faces / "latent.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def harvest(faces: Path, db_url: str, *, labels: tuple[str, ...], rank: int | None, steps: int | None, iters: int,
            stage, device: str | None) -> LatentHalf:
    """Harvest the faces with the toy latent model into the catalog at ``db_url``."""
    from .harvest.run import HarvestRequest, run_harvest

    req = HarvestRequest(model=str(TOY_SD), images=write_manifest(faces, labels), db_url=db_url, device=device,
                         given={"rank": rank, "steps": steps, "iters": iters})
    done = run_harvest(req, stage)
    if done.failed:
        raise LocobankError("the latent half's harvest failed: " + "; ".join(done.failures))
    return LatentHalf(model_id=done.model_id, fingerprint=done.fingerprint, params=done.params.to_dict(),
                      seconds=done.seconds)


def describe_directions(cat, half: LatentHalf, out: Path) -> None:
    """The top latent direction of each job, for the report: how it was found, its part, name and
    preview strip (``half.total`` counts them all)."""
    from .search import named

    (out / "latent").mkdir(exist_ok=True)
    mine = [r for r in cat.list_directions() if r.fingerprint == half.fingerprint]
    half.total = len(mine)
    for r in mine:
        if r.rank_index != 0:
            continue
        c = r.condition or {}
        png = cat.get_preview(r.id)
        preview = None
        if png is not None:
            preview = f"latent/preview_{r.id}.png"
            (out / preview).write_bytes(png)
        half.directions.append({"id": r.id, "mask": r.mask_label, "name": named(r.label, r.label_sign),
                                "prompt": c.get("prompt", ""), "edit_prompt": c.get("edit_prompt"),
                                "image": Path(r.image_uri).name, "preview": preview})


def query(cat, clip, half: LatentHalf, q: str, seeds: list[int], out: Path, index_dir: Path, k: int, steps: int | None,
          device: str | None, cb) -> dict:
    """``q`` searched over both families, and its top latent hit applied to unseen faces (each
    under its own caption without the words for what ``q`` changes, re-localised on its own
    part mask)."""
    from .apply import DirectionSpec, Prepared, apply_to_images, prepare
    from .models import under
    from .images import load_image, to_uint8
    from .search import search
    from .toyworld.captions import caption_without
    from .toyworld.faces import sample_attributes

    both = search(cat, clip, q, k=k, index_folder=index_dir)
    hits = search(cat, clip, q, k=1, model=half.fingerprint, index_folder=index_dir)
    entry = {"both": [h.to_dict() for h in both], "edits": []}
    if not hits:
        cb(len(seeds))
        return entry
    top, unseen = hits[0], out / "unseen"
    captions = {Path(r["image"]).stem: caption_without(sample_attributes(r["attributes"]["seed"]), q)
                for r in _rows(unseen)}  # a caption naming what the edit changes undoes it (docs/latent.md)
    found = prepare(cat, [DirectionSpec(top.id)], device=device)  # loaded once, then bound to each caption
    found.strengths[0] *= top.sign
    for s in seeds:
        p = unseen / f"face_{s:07d}.png"
        prep = Prepared(under(found.model, {"prompt": captions[p.stem]}), found.directions, found.strengths)
        mask = unseen / f"{p.stem}_{top.mask_label}.png"
        (after,) = apply_to_images(prep, [p], mask=mask if mask.exists() else None, steps=steps, progress=cb)
        res = prep.model.resolution
        pair = np.concatenate([to_uint8(load_image(p, res)), to_uint8(after)], 1)
        name = f"edits/latent_{slug(q, 'query')}_{p.stem}.png"
        Image.fromarray(pair).resize((pair.shape[1] * 4, pair.shape[0] * 4), Image.NEAREST).save(out / name)
        entry["edits"].append(name)
        entry.setdefault("prompts", []).append(captions[p.stem])
    entry["applied"] = {"id": top.id, "strength": found.strengths[0], "mask": top.mask_label,
                        "edit_prompt": (top.condition or {}).get("edit_prompt")}
    return entry


def report_section(half: LatentHalf) -> list[str]:
    """The report's HTML for the latent half."""
    import html

    e = html.escape
    p = half.params
    parts = [f"<h1>The latent world</h1><p>The same faces, harvested with the toy latent text-to-image model "
             f"<code>{e(half.model_id)}</code> (T-LOCO: each face DDIM-inverted under its caption to t_edit "
             f"{p.get('t_edit')}, rank {p.get('rank')}, null rank {p.get('null_rank')}, {p.get('basis')} basis) in "
             f"{half.seconds:.1f} s, into the same catalog and index as the pixel model's. Text-supervised directions "
             f"come from a (caption, edit prompt) pair: <code>v = J<sup>T</sup>(x̂<sub>0</sub>(edit) − "
             f"x̂<sub>0</sub>(caption))</code> inside the mask, off the null space outside it.</p>",
             f"<p>{half.total} latent directions; the top one of each (face, part, prompt) job:</p>",
             "<table><tr><th>id</th><th>found by</th><th>mask</th><th>name</th><th>face, caption</th>"
             "<th>preview (−λ, 0, +λ)</th></tr>"]
    for d in half.directions:
        how = f"text-supervised → “{e(d['edit_prompt'])}”" if d["edit_prompt"] else "unsupervised"
        img = f"<img src='{e(d['preview'])}'>" if d["preview"] else "–"
        parts.append(f"<tr><td>{d['id']}</td><td>{how}</td><td>{e(d['mask'])}</td><td>{e(d['name'])}</td>"
                     f"<td>{e(d['image'])}: “{e(d['prompt'])}”</td><td>{img}</td></tr>")
    parts.append("</table>")
    for q, entry in half.queries.items():
        parts.append(f"<h2>“{e(q)}” over both families</h2><table><tr><th>id</th><th>model</th><th>match</th>"
                     "<th>sign</th><th>mask</th><th>prompt</th></tr>")
        for h in entry["both"]:
            c = h.get("condition") or {}
            parts.append(f"<tr><td>{h['id']}</td><td>{e(h['model_id'])}</td><td>{_num(h['match'])}</td>"
                         f"<td>{'+' if h['sign'] > 0 else '−'}</td><td>{e(h['mask_label'])}</td>"
                         f"<td>{e(c.get('prompt', '–'))}</td></tr>")
        parts.append("</table>")
        a = entry.get("applied")
        if a:
            how = f" (text-supervised → “{e(a['edit_prompt'])}”)" if a["edit_prompt"] else ""
            parts.append(f"<p>Top latent hit #{a['id']}{how} applied at strength {a['strength']:g} to "
                         f"{len(entry['edits'])} unseen faces, each inverted and sampled under its own caption without "
                         f"the query's words (a caption that names what an edit changes undoes it) and "
                         f"re-localised on its own {e(a['mask'])} mask (before | after):<br>"
                         + "".join(f"<img src='{e(x)}'>" for x in entry["edits"]) + "</p>")
    return parts


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
