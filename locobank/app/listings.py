"""What the Search and Browse tabs show, read from the catalog and the index: hit cards, a
direction's detail, catalog statistics, runs and jobs. Plain functions, no gradio."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError, NotFound
from ..search import Hit, named, search
from ..views import format_number, oriented, split_strip
from .cache import Resources

TILE = 96  # pixels a preview tile is shown at


@dataclass
class HitCard:
    """One search hit as the page shows it: its −λ/0/+λ strip (a PNG in the app's folder) and its caption."""

    hit: Hit
    strip: Path
    local: float | None

    @property
    def title(self) -> str:
        """``#12 frown (-v)``: the id and its name, with the sign of v that the name describes."""
        return f"#{self.hit.id} {named(self.hit.label, self.hit.label_sign)}"

    @property
    def caption(self) -> str:
        """Every fact of the card on one line."""
        h = self.hit
        return "  ·  ".join([self.title, f"mask {h.mask_label}", f"match {format_number(h.match)}", f"consistency {format_number(h.transfer)}",
                             f"local {format_number(self.local)}", f"{h.model_id} t={h.t_edit}",
                             f"apply at {format_number(h.signed_strength, '+.3g')}"])


def strip_image(png: bytes | None, sign: int) -> Image.Image | None:
    """A stored preview strip turned to read less -> more of the hit's edit, tiles enlarged."""
    if png is None:
        return None
    row = Image.fromarray(np.concatenate(oriented(split_strip(png), sign), 1))
    scale = max(1, TILE // row.height)
    return row.resize((row.width * scale, row.height * scale), Image.NEAREST)


def search_cards(res: Resources, query: str, *, model: str | None = None, mask_label: str | None = None,
                 k: int = 12) -> list[HitCard]:
    """The top ``k`` hits for ``query`` as cards (filters: a model id or fingerprint, a mask part)."""
    if not query or not query.strip():
        raise InputError("type what the edit should do, e.g. smile or blond hair")
    hits = search(res.catalog, res.clip(), query, k=k, domain=res.domain, model=model or None,
                  mask_label=mask_label or None, index_folder=res.index_folder)
    return [HitCard(h, *_strip_file(res, h.id, h.sign)) for h in hits]


def _strip_file(res: Resources, direction_id: int, sign: int) -> tuple[Path, float | None]:
    """A hit's strip as a PNG file and its locality, read from the catalog once per direction and sign."""

    def make() -> tuple[Path | None, float | None]:
        img = strip_image(res.catalog.get_preview(direction_id), sign)
        if img is None:  # not rendered yet (`locobank index build` renders it): a grey strip
            img = Image.new("RGB", (3 * TILE, TILE), (200, 200, 200))
        path = res.work / "cards" / f"{direction_id}{'+' if sign > 0 else '-'}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        return path, res.catalog.preview_locality(direction_id)

    return res.cards.get_or_make((direction_id, sign), make)


def direction_detail(res: Resources, direction_id: int) -> tuple[str, Image.Image | None, Image.Image | None]:
    """A direction's whole card as Markdown, its preview strip, and the image it was harvested on
    with its mask outlined (None when the file is gone)."""
    from ..views.cards import describe

    r = res.catalog.get_direction(int(direction_id))
    clip_id = res.clip().clip_id
    card = describe(res.catalog, r, clip_id=clip_id)
    effect = res.catalog.effect_of(r.id, clip_id)
    rows = [("name", named(r.label, r.label_sign)), ("mask part", r.mask_label), ("model", f"{r.model_id} ({r.fingerprint})"),
            ("edit time", f"t={r.t_edit} ({r.t_edit_frac:g} T)"), ("rank", f"{r.rank_index} (σ={r.singular_value:.4g})"),
            ("consistency", format_number(card.transfer)), ("locality", format_number(card.local)),
            ("probe images", "-" if effect is None else str(effect.n_images)),
            ("default strength", format_number(card.strength, "g")),
            ("unit strength (1x)", format_number(card.unit, ".3g")), ("linear and local up to", format_number(card.limit, ".3g")),
            ("harvested on", f"{r.image_uri} ({r.image_sha256[:12]})"),
            ("mask", f"{r.mask_uri or '-'} ({r.mask_sha256[:12]})"), ("run", str(r.run_id)),
            ("found", r.created_at.isoformat(timespec="seconds")), ("locobank", r.locobank_version),
            ("apply", f"`{card.apply_command()}`")]
    if r.condition is not None:  # text-to-image models: what it was found under
        rows[-1:-1] = [(k.replace("_", " "), str(r.condition[k]).replace("|", "\\|")) for k in
                       ("prompt", "negative_prompt", "guidance", "seed", "edit_prompt") if k in r.condition]
    text = f"### #{r.id} {named(r.label, r.label_sign)}\n\n| | |\n|---|---|\n" + "\n".join(
        f"| {k} | {v} |" for k, v in rows)
    return text, strip_image(res.catalog.get_preview(r.id), card.sign), source_image(r)


def source_image(record) -> Image.Image | None:  # noqa: ANN001 - DirectionRecord
    """The image a direction was harvested on, its mask drawn in red over it; None when the files
    the catalog names are gone or changed."""
    from ..files import file_sha256
    from ..images import load_image, load_mask, to_uint8

    p = Path(record.image_uri)
    if not p.is_file() or file_sha256(p) != record.image_sha256:
        return None
    img = to_uint8(load_image(p)).copy()
    mp = Path(record.mask_uri) if record.mask_uri else None
    if mp is not None and mp.is_file() and file_sha256(mp) == record.mask_sha256:
        m = load_mask(mp, img.shape[:2], resize=True).numpy()
        img[m] = (0.55 * img[m] + 0.45 * np.array([255, 0, 0])).astype(np.uint8)
    out = Image.fromarray(img)
    scale = max(1, 192 // out.height)
    return out.resize((out.width * scale, out.height * scale), Image.NEAREST)


def catalog_stats(res: Resources) -> str:
    """Counts of what the catalog holds, as Markdown."""
    s = res.catalog.stats()
    lines = [f"**catalog** `{res.catalog.url}` (read-only)", "",
             f"- directions: {s['directions']} ({s['deleted']} deleted)",
             f"- runs {s['runs']}, images {s['images']}, masks {s['masks']}, vectors {s['vectors']}",
             "- jobs: " + ", ".join(f"{k} {v}" for k, v in s["jobs"].items())]
    for title, key in (("models", "models"), ("names", "labels"), ("mask parts", "mask_labels")):
        if s[key]:
            lines.append(f"- {title}: " + ", ".join(f"{k} ({v})" for k, v in sorted(s[key].items())))
    return "\n".join(lines)


def runs_table(res: Resources, limit: int = 200) -> list[list]:
    """One row per harvest run: id, model, when, its jobs by status, its parameters."""
    cat = res.catalog
    total, rows, run_id = cat.stats()["runs"], [], 1
    while len(rows) < min(total, limit) and run_id <= total + 1000:  # ids are dense unless runs were removed
        try:
            run = cat.get_run(run_id)
        except NotFound:
            run_id += 1
            continue
        counts = cat.job_counts(run.id)
        model = cat.get_model(run.model_id).model_id
        rows.append([run.id, model, run.created_at.isoformat(timespec="seconds"),
                     ", ".join(f"{k} {v}" for k, v in counts.items() if v),
                     ", ".join(f"{k}={v}" for k, v in sorted(run.params.items()))])
        run_id += 1
    return rows


def failed_jobs(res: Resources, runs: list[list], limit: int = 200) -> list[list]:
    """Failed jobs of the listed runs, with why they failed."""
    out = []
    for row in runs:
        for j in res.catalog.list_jobs(row[0], status="failed"):
            out.append([j.id, j.run_id, j.image_uri, j.mask_label, j.attempts, j.error or "-"])
            if len(out) >= limit:
                return out
    return out


def recent_directions(res: Resources, n: int = 25) -> list[list]:
    """The ``n`` directions found last, newest first."""
    recs = res.catalog.list_directions()[-n:][::-1]
    return [[r.id, named(r.label, r.label_sign), r.mask_label, r.model_id, r.t_edit, round(r.singular_value, 4),
             r.created_at.isoformat(timespec="seconds")] for r in recs]
