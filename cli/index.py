"""``locobank index build`` and ``index status``: the FAISS search index, one per CLIP model."""

from __future__ import annotations

import json

import click

from .common import Finite, Stages, fail_on_library_errors
from .db import db_option, open_catalog

CLIP_HELP = "CLIP model whose effect embeddings to index: 'toy' (shipped), ARCH/TAG like ViT-B-32/laion2b_s34b_b79k."
FACTORY_HELP = (
    "FAISS index_factory string. Flat: exact (the default for a new index). IVF: inverted lists, nlist sized to "
    "the catalog (4*sqrt(n)); or explicit, e.g. 'IVF1024,Flat'. HNSW32: graph (a deletion rebuilds it). "
    "Default: keep the existing index's factory. A different factory rebuilds the index."
)


@click.group("index")
def index() -> None:
    """Build or inspect the FAISS search index of direction effects (one index per CLIP model).

    The index lives under $LOCOBANK_HOME/index/<catalog id> (or beside a SQLite catalog file, where
    `locobank demo` builds it) and records the catalog state it was built from;
    the catalog stays the truth, so an index can always be rebuilt.
    """


@index.command("build")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help=CLIP_HELP)
@click.option("--index-factory", "factory", metavar="STR", default=None, help=FACTORY_HELP)
@click.option("--rebuild", is_flag=True, help="Build from scratch instead of applying only what changed.")
@click.option("--no-embed", is_flag=True, help="Only index effects already in the catalog; render none.")
@click.option("--strength", type=Finite(0, 100, open_lo=True), default=None, help="Lambda for rendering effects [model default, else 8].")
@click.option("--probes", type=click.IntRange(0, 64), default=4, show_default=True,
              help="Other images of the same model each effect is also rendered on.")
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="DDIM steps for rendering [model default].")
@click.option("--domain", default="face", show_default=True, help="Vocabulary data/vocab/DOMAIN.txt for the names.")
@click.option("--device", default=None, help="cuda, cpu, ... [cuda when present]")
@db_option
@fail_on_library_errors
def build_cmd(clip_spec: str, factory: str | None, rebuild: bool, no_embed: bool, strength: float | None, probes: int,
              steps: int | None, domain: str, device: str | None, db_url: str | None) -> None:
    """Embed new directions' effects, name them, and bring the search index up to date.

    Each direction not yet embedded for this CLIP is rendered at -lambda and +lambda on its
    source image and on --probes other images of its model, embedded with CLIP, named from the
    vocabulary, and added to the index; deleted directions are dropped. Its card also records its
    strength scale: the unit strength (`apply ID:1x`, about the same size of change for every
    direction) and the largest strength at which it stayed linear and local; cards indexed
    before catalogs recorded it get it measured now. Only what changed since the last build is
    read, unless --rebuild is given or the factory changes.
    """
    from locobank.clip import clip_id
    from locobank.index import build_index, index_files

    cid = clip_id(clip_spec)
    if not no_embed:
        from locobank.clip import load_clip
        from locobank.embed import embed_directions
        from locobank.search import name_directions

        with open_catalog(db_url) as catalog:
            todo = catalog.directions_without_effect(cid)
            if todo:
                clip = load_clip(clip_spec, device=device)
                with Stages() as stages:
                    summary = embed_directions(catalog, clip, ids=todo, strength=strength, n_probes=probes, steps=steps,
                                               device=device, progress=stages("embedding effects", len(todo)))
                for err in summary.errors[:10]:
                    click.echo(f"  not embedded: {err}", err=True)
                named, _ = name_directions(catalog, clip, domain=domain, ids=todo)
                click.echo(f"embedded {summary.embedded} new directions in {summary.seconds:.1f} s; named {named}")
            _measure_old_ranges(catalog, probes, steps, device)
    with open_catalog(db_url) as catalog, Stages() as progress:
        info = build_index(catalog, cid, factory=factory, rebuild=rebuild, progress=progress)
        saved = index_files(cid, catalog=catalog)[0]
    how = "built from scratch" if info.rebuilt else "updated"
    click.echo(
        f"index of {cid} {how}: {info.ntotal} directions ({info.resolved_factory}, dim {info.dim}); "
        f"added {info.added}, removed {info.removed}"
    )
    click.echo(f"saved to {saved}")


def _measure_old_ranges(catalog, probes: int, steps: int | None, device: str | None) -> None:
    """The strength scale of the cards that have none yet (indexed before catalog revision 0008)."""
    from locobank.ranges import measure_ranges

    old = catalog.directions_without_range()
    if not old:
        return
    with Stages() as stages:
        summary = measure_ranges(catalog, ids=old, n_probes=probes, steps=steps, device=device,
                                 progress=stages("measuring strength scales", len(old)))
    for err in summary.errors[:10]:
        click.echo(f"  no strength scale: {err}", err=True)
    click.echo(f"measured the strength scale of {summary.measured} directions in {summary.seconds:.1f} s")


@index.command("status")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help=CLIP_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as a JSON object.")
@db_option
@fail_on_library_errors
def status_cmd(clip_spec: str, as_json: bool, db_url: str | None) -> None:
    """Say whether the search index matches the catalog, and what changed if not."""
    from locobank.clip import clip_id
    from locobank.index import index_status

    cid = clip_id(clip_spec)
    with open_catalog(db_url) as catalog:
        status = index_status(catalog, cid)
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    click.echo(f"clip        {cid}")
    click.echo(f"index       {status['path']}")
    if status["exists"]:
        click.echo(f"holds       {status['ntotal']} directions ({status['resolved_factory']}, dim {status['dim']})")
        click.echo(f"built       {status['built_at']} from {status['catalog']}")
    click.echo(f"catalog     {status['effects']} embedded directions")
    state = "STALE: " + "; ".join(status["reasons"]) if status["stale"] else "up to date"
    click.echo(f"state       {state}")
    for note in status["notes"]:
        click.echo(f"note        {note}")
