"""Browse the catalog: ``locobank list``, ``show``, ``stats``, ``export`` and ``import``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from .common import fail_on_library_errors
from .db import db_option, open_catalog


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _size(n: int) -> str:
    """Bytes in the unit a person reads at a glance."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A small left-aligned text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) and rows for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=False)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


@click.command("list")
@click.option(
    "--model", "model", metavar="M", help="Only directions of this model (Hub id, local:<name>, or fingerprint)."
)
@click.option("--label", "label", metavar="L", help="Only directions with this automatic name.")
@click.option(
    "--mask", "mask_label", metavar="PART", help="Only directions found in masks with this label (e.g. mouth)."
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of direction records.")
@db_option
@fail_on_library_errors
def list_cmd(
    model: str | None, label: str | None, mask_label: str | None, limit: int | None, as_json: bool, db_url: str | None
) -> None:
    """List the directions in the catalog, oldest first.

    Each row is one direction: its id (what `show`, `apply` and `export` take), the model it was
    found with, the mask it edits, its rank in the edit basis and its singular value.
    """
    with open_catalog(db_url) as catalog:
        records = catalog.list_directions(model=model, label=label, limit=limit, mask_label=mask_label)
    if as_json:
        _echo_json([r.to_dict() for r in records])
        return
    if not records:
        click.echo("no directions match" if (model or label or mask_label) else "the catalog has no directions yet")
        return
    rows = [
        (r.id, r.model_id, r.mask_label, r.rank_index, round(r.singular_value, 4), r.t_edit, r.label or "-")
        for r in records
    ]
    click.echo(_table(["ID", "MODEL", "MASK", "RANK", "SIGMA", "T_EDIT", "LABEL"], rows))


@click.command("show")
@click.argument("direction_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the record as a JSON object.")
@db_option
@fail_on_library_errors
def show_cmd(direction_id: int, as_json: bool, db_url: str | None) -> None:
    """Show one direction and where it came from (model, image, mask, parameters, checks)."""
    with open_catalog(db_url) as catalog:
        record = catalog.get_direction(direction_id)
    data = record.to_dict()
    if as_json:
        _echo_json(data)
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        if key == "diagnostics" and isinstance(value.get("source_part"), dict):  # bits and profiles: --json has them
            h, w = value["source_part"].get("mask", {}).get("shape", ["?", "?"])
            value = {**value, "source_part": f"the {w}x{h} mask it was found with, and its profiles (--json)"}
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        click.echo(f"{key.ljust(width)}  {'-' if value is None else value}")


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as a JSON object.")
@db_option
@fail_on_library_errors
def stats_cmd(as_json: bool, db_url: str | None) -> None:
    """Count what the catalog holds: jobs per status, directions per model, name and mask label."""
    with open_catalog(db_url) as catalog:
        stats = catalog.stats()
        stats["state_token"] = catalog.state_token()
        stats["catalog"] = catalog.url
    if as_json:
        _echo_json(stats)
        return
    click.echo(f"catalog     {stats['catalog']}")
    click.echo(f"directions  {stats['directions']} ({stats['deleted']} deleted)")
    click.echo(f"runs        {stats['runs']}    images {stats['images']}    masks {stats['masks']}")
    click.echo(f"vectors     {stats['vectors']} ({_size(stats['vector_bytes'])})")
    click.echo("jobs        " + "  ".join(f"{k} {v}" for k, v in stats["jobs"].items()))
    for title, key in (("MODEL", "models"), ("LABEL", "labels"), ("MASK", "mask_labels")):
        if stats[key]:
            click.echo("")
            click.echo(_table([title, "DIRECTIONS"], sorted(stats[key].items())))


@click.command("export")
@click.argument("ids", metavar="ID...", type=int, nargs=-1, required=True)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="Pack file to write, e.g. pack.safetensors.",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@db_option
@fail_on_library_errors
def export_cmd(ids: tuple[int, ...], out: str, force: bool, db_url: str | None) -> None:
    """Write directions and their provenance to one safetensors pack that another catalog can import.

    The pack holds one tensor per direction and, in its header, the model id, revision and
    fingerprint, t_edit, rank, singular value, mask and image hashes and file names, a sha256 per
    tensor, and a seal (a sha256) over all of that. It holds no path of this machine.
    """
    from locobank.catalog.packs import pack_seal

    with open_catalog(db_url) as catalog:
        path = catalog.export_pack(ids, out, overwrite=force)
    click.echo(f"wrote {len(set(ids))} direction(s) to {path}")
    click.echo(f"seal {pack_seal(path)} (publish it with the pack: `import` refuses a pack edited after export)")


@click.command("import")
@click.argument("pack", type=click.Path(exists=True, dir_okay=False))
@db_option
@fail_on_library_errors
def import_cmd(pack: str, db_url: str | None) -> None:
    """Add the directions of a pack to the catalog; ones already there are skipped.

    The whole pack is checked first (format, metadata, a sha256 per tensor, shapes, and the seal
    over its provenance); a pack that fails any check, or was edited after export, is refused and
    nothing is written. Packs of older locobank versions carry no seal and are refused.
    """
    with open_catalog(db_url) as catalog:
        new_ids = catalog.import_pack(pack)
    if new_ids:
        click.echo(f"imported {len(new_ids)} new direction(s): ids {', '.join(map(str, new_ids))}")
    else:
        click.echo("nothing new: every direction in the pack is already in the catalog")
