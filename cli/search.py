"""``locobank search`` and ``locobank label``: find directions by text, and name them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import Finite, fail_on_library_errors
from .db import db_option, open_catalog

CLIP_HELP = "CLIP model: 'toy' (shipped), ARCH/TAG like ViT-B-32/laion2b_s34b_b79k, ARCH@CHECKPOINT, or a folder."


@click.command()
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 10_000), default=10, show_default=True, help="How many hits.")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help=CLIP_HELP)
@click.option("--domain", default="face", show_default=True, help='Noun in the prompt "a DOMAIN with TEXT".')
@click.option("--model", default=None, help="Only directions of this model (id or fingerprint).")
@click.option("--label", default=None, help="Only directions with this automatic name.")
@click.option("--mask", "mask_label", default=None, help="Only directions harvested with this mask label.")
@click.option("--min-score", type=Finite(-1, 1), default=None, help="Only hits whose score (cosine) is at least this.")
@click.option("--nprobe", type=click.IntRange(1), default=None, help="IVF cells to visit (IVF indexes only).")
@click.option("--json", "as_json", is_flag=True, help="Print hits as a JSON list.")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a contact sheet PNG of the hits' preview strips.")
@db_option
@fail_on_library_errors
def search(query, k, clip_spec, domain, model, label, mask_label, min_score, nprobe, as_json, sheet, db_url):
    """Find directions whose visible effect matches QUERY ("smile", "blond hair", "frown -> smile").

    Each hit shows the command that does the edit: its id with the strength to pass, whose sign
    says whether v or -v does it. The automatic name is secondary: it names +v.
    Hits are ranked by match: score (the cosine between the query and the direction's mean
    effect) times how consistently the effect shows on the images it was rendered on
    (transfer), about the mean cosine per image. A direction that does different things on
    different faces ranks below one that does the query's edit on each of them.
    """
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
    click.echo(f"{'id':>6}  {'match':>6}  {'score':>6}  {'transf':>6}  {'mask':<8}  {'command':<34}  {'auto-name':<20}  model")
    for h in hits:
        tr = "     -" if h.transfer is None else f"{h.transfer:6.3f}"
        click.echo(f"{h.id:>6}  {h.match:6.3f}  {h.score:6.3f}  {tr}  {h.mask_label:<8}  "
                   f"{h.command('IMAGE', 'OUT.png'):<34}  {named(h.label, h.label_sign):<20}  {h.model_id}")
    if hits[0].match is not None and hits[0].match < WEAK_MATCH:
        click.echo(f"note: the best match is weak ({hits[0].match:.2f} < {WEAK_MATCH}): nothing in this catalog "
                   f"seems to do {query!r}")
    if sheet is not None:
        click.echo(f"sheet: {sheet}")


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
