"""``locobank demo``: the whole pipeline on the shipped toy world, offline, in minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Stages, fail_on_library_errors


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"), show_default=True,
              help="Folder for everything the demo makes (its own catalog and index included).")
@click.option("--quick", is_flag=True, help="Fewer faces and steps, same code path (what CI runs).")
@click.option("--device", default=None, help="cuda, cpu, ... [cuda when present]")
@fail_on_library_errors
def demo(out: Path, quick: bool, device: str | None) -> None:
    """Run locobank end to end on the toy world.

    Generates faces with masks, harvests eyes, mouth and hair directions, embeds and indexes
    them, searches by text, applies the top hits to unseen faces that lack them (each face
    with its own part mask, as `apply --mask` does), and writes report.html, contact sheets
    and a gallery under --out.

    Then the latent world: the same faces harvested with the toy text-to-image model (T-LOCO,
    unsupervised, and text-supervised from a caption and an edit prompt) into the same catalog
    and index; searches rank both families together, and the top latent hits are applied to
    unseen faces, each inverted under its own caption.
    """
    import shlex
    import time

    from locobank.toyworld.demo import DemoConfig, run_demo

    start = time.perf_counter()
    with Stages() as stage:
        res = run_demo(out, DemoConfig.quick() if quick else DemoConfig(), stage=stage, device=device)
    click.echo(f"\n{res.directions} directions harvested; {len(res.queries)} searches; "
               f"{time.perf_counter() - start:.0f} s in all")
    for q, entry in res.queries.items():
        top = entry["hits"][0] if entry["hits"] else None
        if top:
            click.echo(f'  "{q}": #{top["id"]} ({top["mask_label"]} mask, {"+" if top["sign"] > 0 else "-"}, '
                       f'match {top["match"]:.2f}, score {top["score"]:.2f})')
        else:
            click.echo(f'  "{q}": no hits')
    click.echo(f"open {res.report.resolve().as_uri()}")
    click.echo(f"the folder is a locobank home (catalog and index): try  "
               f"LOCOBANK_HOME={shlex.quote(str(out))} locobank search \"smile\"")
    click.echo(f"or in the browser:  locobank serve --db {shlex.quote(str(out / 'catalog.db'))}")
