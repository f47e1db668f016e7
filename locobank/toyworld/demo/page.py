"""What a demo run leaves for people and scripts: ``report.html`` (each query, its hits and the
before | image-blind | image-aware edits of unseen faces, the pixel half then the latent half) and
``summary.json``."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

from ...settings import edit_times
from ...views import format_number
from .latent import LatentHalf
from .queries import POOL

if TYPE_CHECKING:
    from ...harvest import HarvestParams
    from .run import DemoResult

FIGURE = (".3f", "–")  # how the report prints a score, and a score not measured


def write_summary(res: DemoResult) -> None:
    """summary.json: the directions, the seconds of each stage, and each query's hits and edits."""
    latent = None if res.latent is None else {"model": res.latent.model_id, "total": res.latent.total,
                                               "directions": res.latent.directions, "queries": res.latent.queries}
    (res.out / "summary.json").write_text(json.dumps({"directions": res.directions, "seconds": res.seconds,
                                                       "queries": res.queries, "latent": latent}, indent=2))


def write_report(res: DemoResult, model_id: str, params: HarvestParams) -> None:
    """report.html: each query, its hits, and before/after pairs on unseen faces, then the latent half."""
    from ...search import named

    e = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>locobank demo</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
             "img{image-rendering:pixelated;margin:4px;border:1px solid #ddd}"
             "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}"
             "</style>",
             f"<h1>locobank demo</h1><p>Model <code>{e(model_id)}</code>, rank {params.rank}, null rank {params.null_rank}, "
             f"t_edit {edit_times(params.t_edit, params.t_edit_by_label)}, "
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
            parts.append(f"<tr><td>{h['id']}</td><td>{format_number(h['match'], *FIGURE)}</td><td>{h['score']:.3f}</td>"
                         f"<td>{format_number(h['transfer'], *FIGURE)}</td><td>{'+' if h['sign'] > 0 else '−'}</td>"
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
            parts.append(f"<p>Image-blind: the top hit #{a['id']} applied at strength {a['strength']:g} to {n} unseen "
                         f"faces{which}{how}. Image-aware: each face's own top hit among the top {POOL}, ranked by "
                         f"its preview on that face (<code>apply --query</code>), at its calibrated strength "
                         f"({aware_list(a)}). Before | image-blind | image-aware:<br>"
                         + "".join(f"<img src='{e(x)}'>" for x in entry["edits"]) + "</p>")
    if res.latent is not None:
        parts += latent_section(res.latent)
    res.report.write_text("\n".join(parts))


def aware_list(applied: dict) -> str:
    """Each face's image-aware hit: id, strength and the gain its preview predicted."""
    return "; ".join(f"#{x['id']} at {x['strength']:+.3g}, predicted gain {x['gain']:+.2f}"
                     for x in applied.get("aware", [])) or "none"


def latent_section(half: LatentHalf) -> list[str]:
    """The report's HTML for the latent half."""
    e = html.escape
    p = half.params
    parts = [f"<h1>The latent world</h1><p>The same faces, harvested with the toy latent text-to-image model "
             f"<code>{e(half.model_id)}</code> (T-LOCO: each face DDIM-inverted under its caption to t_edit "
             f"{e(edit_times(p.get('t_edit'), p.get('t_edit_by_label')))}, rank {p.get('rank')}, "
             f"null rank {p.get('null_rank')}, {p.get('basis')} basis) in "
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
            parts.append(f"<tr><td>{h['id']}</td><td>{e(h['model_id'])}</td><td>{format_number(h['match'], *FIGURE)}</td>"
                         f"<td>{'+' if h['sign'] > 0 else '−'}</td><td>{e(h['mask_label'])}</td>"
                         f"<td>{e(c.get('prompt', '–'))}</td></tr>")
        parts.append("</table>")
        a = entry.get("applied")
        if a:
            how = f" (text-supervised → “{e(a['edit_prompt'])}”)" if a["edit_prompt"] else ""
            parts.append(f"<p>Top latent hit #{a['id']}{how} applied at strength {a['strength']:g} to "
                         f"{len(entry['edits'])} unseen faces, each inverted and sampled under its own caption without "
                         f"the query's words (a caption that names what an edit changes undoes it) and "
                         f"re-localised on its own {e(a['mask'])} mask, beside each face's own image-aware top hit "
                         f"among the top {POOL} latent hits ({aware_list(a)}). Before | image-blind | image-aware:<br>"
                         + "".join(f"<img src='{e(x)}'>" for x in entry["edits"]) + "</p>")
    return parts

