"""``locobank search`` and ``locobank label``: find directions by text, and name them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import Finite, Stages, fail_on_library_errors, precision_option, refine_option
from .db import db_option, open_catalog

CLIP_HELP = "CLIP model: 'toy' (shipped), ARCH/TAG like ViT-B-32/laion2b_s34b_b79k, ARCH@CHECKPOINT, or a folder."


@click.command()
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="How many hits (with --image: how many of each image's ranking to show).")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help=CLIP_HELP)
@click.option("--domain", default="face", show_default=True, help='Noun in the prompt "a DOMAIN with TEXT".')
@click.option("--model", default=None, help="Only directions of this model: its name as the hits list it (e.g. local:toyfaces-sd) or its "
                   "fingerprint.")
@click.option("--label", default=None, help="Only directions with this automatic name.")
@click.option("--mask", "masks", multiple=True,
              help="Without --image: only directions harvested with this mask label. With --image: the mask "
                   "file of the part to edit (white = edit), one for every image or one per --image; the "
                   "candidates are re-localised on it as `apply --mask` does.")
@click.option("--min-score", type=Finite(-1, 1), default=None, help="Only hits whose score (cosine) is at least this.")
@click.option("--nprobe", type=click.IntRange(1), default=None, help="IVF cells to visit (IVF indexes only).")
@click.option("--image", "images", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rank the hits for this image by previewing each on it; repeatable (one ranking per image).")
@click.option("--prompt", default=None,
              help="With --image, text-to-image models: the prompt the image is inverted under (a caption of "
                   "the image, best without the query's words) [the empty prompt].")
@click.option("--pool", type=click.IntRange(1, 1000), default=32, show_default=True,
              help="With --image: how many text-search hits to preview.")
@click.option("--strength", type=Finite(0, 100, open_lo=True), default=None,
              help="With --image: preview every hit at this strength (along its sign) instead of calibrating one.")
@click.option("--steps", type=click.IntRange(1, 1000), default=None,
              help="With --image: DDIM steps of the inversion [model default, else 50].")
@click.option("--preview-steps", type=click.IntRange(1, 100), default=1, show_default=True,
              help="With --image: DDIM steps from the edit time to each preview. 1 is the model's one-pass "
                   "prediction of the edited image; 5 predicts the full edit's ranking far better, at about "
                   "5 times the previews' cost (docs/image_search.md).")
@refine_option("--image")
@precision_option("--image")
@click.option("--resize", is_flag=True, help="With --image: resize images and masks to the model's size.")
@click.option("--device", default=None, help="With --image: torch device for the model (default: best available).")
@click.option("--json", "as_json", is_flag=True, help="Print hits as a JSON list (with --image: one entry per image).")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a contact sheet PNG of the hits' preview strips (with --image: their previews on "
                   "the image; with several images, one sheet each, named SHEET_IMAGESTEM.png).")
@db_option
@fail_on_library_errors
def search(query, k, clip_spec, domain, model, label, masks, min_score, nprobe, images, prompt, pool, strength,
           steps, preview_steps, refine, preview_precision, resize, device, as_json, sheet, db_url):
    """Find directions whose visible effect matches QUERY ("smile", "blond hair", "frown -> smile").

    Each hit shows the command that does the edit: its id with the strength to pass, whose sign
    says whether v or -v does it. The automatic name is secondary: it names +v.
    Hits are ranked by match: score (the cosine between the query and the direction's mean
    effect) times how consistently the effect shows on the images it was rendered on
    (transfer), about the mean cosine per image. A direction that does different things on
    different faces ranks below one that does the query's edit on each of them.

    With --image, the hits are ranked for that image: the top --pool hits (of one model) are
    each previewed on it (the model's prediction of the edited image, one inversion and one
    batched pass) and ordered by what the preview shows: gain (how the image's CLIP embedding
    moves towards QUERY, a cosine), locality (the share of the change inside --mask) and what it
    loses of the image; --refine hits (the text search's first and the preview ranking's first)
    are then looked at again, each sampled down in 5 DDIM steps (closer to the full edit), and
    re-ordered. Each hit comes with the strength that makes its change inside the mask about the
    same size as every other hit's (an RMS pixel change of 0.20, pixels in [-1, 1], about 1.3
    units of ID:1x; from the default strength of its part up to three times it), or --strength
    as given.

    \b
    locobank search smile --image face.png --mask face_mouth.png
    locobank search "blond hair" --image a.png --image b.png --json
    locobank search smile --image face.png --prompt "a face with red hair" --sheet smile.png   # SD
    """
    if images:
        return _search_image(query, k, clip_spec, domain, model, label, list(masks), min_score, nprobe, list(images),
                             prompt, pool, strength, steps, preview_steps, refine, preview_precision, resize, device,
                             as_json, sheet, db_url)
    for flag, given in (("--prompt", prompt is not None), ("--strength", strength is not None), ("--resize", resize),
                        ("--device", device is not None), ("--pool", pool != 32), ("--steps", steps is not None),
                        ("--preview-steps", preview_steps != 1), ("--refine", refine is not None),
                        ("--preview-precision", preview_precision is not None)):
        if given:
            raise click.UsageError(f"{flag} goes with --image")
    if len(masks) > 1:
        raise click.UsageError("without --image, --mask is one mask label to filter by")
    _search_text(query, k, clip_spec, domain, model, label, masks[0] if masks else None, min_score, nprobe, as_json,
                 sheet, db_url)


def _search_text(query, k, clip_spec, domain, model, label, mask_label, min_score, nprobe, as_json, sheet,
                 db_url) -> None:
    """``search`` without ``--image``: the hits ranked by their mean effect."""
    from locobank.clip import load_clip
    from locobank.search import search as run_search

    with open_catalog(db_url) as cat:
        clip = load_clip(clip_spec)
        hits = run_search(cat, clip, query, k=k, domain=domain, model=model, label=label, mask_label=mask_label,
                          min_score=min_score, nprobe=nprobe)
        if sheet is not None:
            from locobank.views import contact_sheet

            contact_sheet(cat, [h.id for h in hits], sheet, signs=[h.sign for h in hits], title=f"search: {query}",
                          clip_id=clip.clip_id)
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    if not hits:
        click.echo("no hits")
        return
    from locobank.search import WEAK_MATCH, named

    click.echo(f"each hit does {query!r} with the command shown (the automatic name is what its +v is called)")
    click.echo(f"{'id':>6}  {'match':>6}  {'score':>6}  {'transf':>6}  {'mask':<8}  {'1x':>6}  {'limit':>6}  "
               f"{'command':<34}  {'auto-name':<20}  model")
    for h in hits:
        tr = "     -" if h.transfer is None else f"{h.transfer:6.3f}"
        unit, limit = ("     -" if v is None else f"{v:6.3g}" for v in (h.unit, h.limit))
        click.echo(f"{h.id:>6}  {h.match:6.3f}  {h.score:6.3f}  {tr}  {h.mask_label:<8}  {unit}  {limit}  "
                   f"{h.command('IMAGE', 'OUT.png'):<34}  {named(h.label, h.label_sign):<20}  {h.model_id}")
    click.echo("1x: the strength of one unit of change for that direction (apply ID:1x); limit: the strength up to "
               "which it stayed linear and local when indexed")
    if hits[0].match is not None and hits[0].match < WEAK_MATCH:
        click.echo(f"note: the best match is weak ({hits[0].match:.2f} < {WEAK_MATCH}): nothing in this catalog "
                   f"seems to do {query!r}")
    if sheet is not None:
        click.echo(f"sheet: {sheet}")


def _search_image(query, k, clip_spec, domain, model, label, masks, min_score, nprobe, images, prompt, pool, strength,
                  steps, preview_steps, refine, preview_precision, resize, device, as_json, sheet, db_url) -> None:
    """``search --image``: one image-aware ranking per image (:func:`locobank.rank.rank_for_images`)."""
    for flag, given in (("--label", label is not None), ("--min-score", min_score is not None),
                        ("--nprobe", nprobe is not None)):
        if given:
            raise click.UsageError(f"{flag} filters the text search alone; leave it out with --image")
    from locobank.rank import masks_per_image, rank_for_images, ranking_sheet

    per = [None if m is None else str(m) for m in masks_per_image(masks, len(images))]
    missing = [m for m in masks if not Path(m).is_file()]
    if missing:
        raise click.BadParameter(f"{missing[0]} is not a mask file (with --image, --mask takes a mask image)",
                                 param_hint="--mask")
    from locobank.clip import load_clip

    with open_catalog(db_url) as cat, Stages() as progress:
        clip = load_clip(clip_spec, device=device)
        rankings = rank_for_images(cat, clip, query, images, masks=[Path(m) for m in masks] or None, prompt=prompt,
                                   pool=pool, model=model, domain=domain, strength=strength, resize=resize,
                                   device=device, progress=progress, steps=steps, preview_steps=preview_steps,
                                   refine=refine, precision=preview_precision)
        sheets = []
        if sheet is not None:
            for image, ranked in zip(images, rankings):
                out = sheet if len(images) == 1 else sheet.with_name(f"{sheet.stem}_{image.stem}{sheet.suffix}")
                sheets.append(ranking_sheet(cat, ranked[:k], out, title=f'search: "{query}" on {image.name}',
                                            clip_id=clip.clip_id))
    if as_json:
        click.echo(json.dumps([{"image": str(image), "hits": [h.to_dict(str(image), prompt, m) for h in ranked[:k]]}
                               for image, m, ranked in zip(images, per, rankings)], indent=2))
        return
    for image, m, ranked in zip(images, per, rankings):
        _print_ranking(query, image, ranked[:k], prompt, m)
    for out in sheets:
        click.echo(f"sheet: {out}")


def _print_ranking(query: str, image: Path, ranked, prompt: str | None, mask: str | None) -> None:
    """One image's ranking as a table, best first."""
    click.echo(f"{image}: the hits for {query!r} previewed on it, best first")
    click.echo(f"{'id':>6}  {'score':>6}  {'gain':>6}  {'local':>6}  {'lost':>6}  {'steps':>5}  {'mask':<8}  command")
    for h in ranked:
        click.echo(f"{h.id:>6}  {h.score:6.3f}  {h.gain:6.3f}  {h.locality:6.3f}  {h.lost:6.3f}  {h.steps:>5}  "
                   f"{h.hit.mask_label:<8}  {h.command(str(image), prompt=prompt, mask=mask)}")
    if any(h.steps > 1 for h in ranked) and any(h.steps == 1 for h in ranked):
        click.echo("steps: DDIM steps of the hit's preview; the first hits were looked at again in more steps "
                   "(--refine), so their scores are not on the same footing as the others'")
    if ranked and ranked[0].gain <= 0:
        click.echo(f"note: no preview moves this image towards {query!r}")


@click.command()
@click.option("--clip", "clip_spec", default="toy", show_default=True, help=CLIP_HELP)
@click.option("--domain", default="face", show_default=True, help="Vocabulary data/vocab/DOMAIN.txt and prompt noun.")
@click.option("--vocab", "vocab_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your own vocabulary file (one phrase a line); repeatable.")
@click.option("--phrase", "phrases", multiple=True, help="An extra phrase; repeatable.")
@db_option
@fail_on_library_errors
def label(clip_spec, domain, vocab_files, phrases, db_url):
    """Name every embedded direction with its best vocabulary phrase (run again after editing the vocabulary)."""
    from locobank.clip import load_clip
    from locobank.search import name_directions

    with open_catalog(db_url) as cat:
        clip = load_clip(clip_spec)
        n, counts = name_directions(cat, clip, domain=domain, files=list(vocab_files), extra=list(phrases))
    click.echo(f"named {n} directions")
    for name, c in sorted(counts.items(), key=lambda kv: -kv[1])[:20]:
        click.echo(f"  {c:5d}  {name}")
