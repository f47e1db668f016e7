"""``locobank sheet`` and ``locobank gallery``: look at what the catalog holds."""

from __future__ import annotations

from pathlib import Path

import click

from .common import fail_on_library_errors
from .db import db_option, open_catalog

CLIP_HELP = (
    "CLIP model whose transfer consistency to show (the one `locobank index build` used): 'toy' (shipped), "
    "ARCH/TAG, ARCH@CHECKPOINT, or a folder."
)


def _clip_id_or_none(spec: str) -> str | None:
    """The CLIP id for ``spec``; the default 'toy' may be missing (a warning), an explicit one may not."""
    from locobank.clip import clip_id
    from locobank.errors import LocobankError

    try:
        return clip_id(spec)
    except LocobankError as e:
        ctx = click.get_current_context()
        if ctx.get_parameter_source("clip_spec") is not click.core.ParameterSource.DEFAULT:
            raise
        click.echo(f"warning: transfer consistency not shown: {e}", err=True)
        return None


@click.command("sheet")
@click.argument("ids", metavar="ID...", type=int, nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG file to write, e.g. sheet.png.")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help=CLIP_HELP)
@click.option("--title", default=None, help="A line of text above the grid.")
@db_option
@fail_on_library_errors
def sheet(ids: tuple[int, ...], out: Path, clip_spec: str, title: str | None, db_url: str | None) -> None:
    """Draw a contact sheet of directions: one row per ID, one column per strength.

    Each row is the preview strip stored by `locobank index build` (the direction's source image
    edited at -strength, 0 and +strength), turned so it reads "less -> more" of the direction's
    name, and labelled with its id, name and sign, mask, singular value, transfer consistency and
    locality. Over each tile is the strength to type in `locobank apply ID:STRENGTH` for it, as
    that strip was rendered (the gallery and search hits use the same signed strengths). A
    direction without a preview gets a grey placeholder. No model is loaded.
    """
    from locobank.views import contact_sheet

    cid = _clip_id_or_none(clip_spec)
    with open_catalog(db_url) as catalog:
        path = contact_sheet(catalog, list(ids), out, title=title, clip_id=cid)
    click.echo(f"wrote {path}")


@click.command("gallery")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write index.html and previews/ into (created if missing).")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help=CLIP_HELP)
@click.option("--title", default="locobank gallery", show_default=True, help="Page title.")
@db_option
@fail_on_library_errors
def gallery(out: Path, clip_spec: str, title: str, db_url: str | None) -> None:
    """Write a static HTML gallery of every direction in the catalog.

    Open the printed file:// address in a browser; no server or network is needed. Each card shows
    the preview strip, name, mask, model, singular value, transfer consistency and locality (and,
    for text-to-image models, the prompt and any edit prompt), and a `locobank apply` command to copy. Filter by model, mask and name in the page, or from the
    address: index.html#mask=mouth&name=smile.
    """
    from locobank.catalog.connect import safe_url
    from locobank.views import gallery as write_gallery

    cid = _clip_id_or_none(clip_spec)
    with open_catalog(db_url) as catalog:
        index = write_gallery(catalog, out, clip_id=cid, title=title, db=None if db_url is None else safe_url(db_url))
    click.echo(f"open {index.resolve().as_uri()}")
