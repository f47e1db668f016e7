"""``locobank directions``: find LOCO directions on one image and preview them, no catalog needed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import Finite, Stages, fail_on_library_errors, parse_floats


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mask", "mask_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="PNG mask; white marks the region to edit.")
@click.option("--model", default="toy", show_default=True, help="Hub id or folder of a diffusers pixel model.")
@click.option("--rank", type=click.IntRange(1, 64), default=3, show_default=True, help="How many directions.")
@click.option("--null-rank", type=click.IntRange(0, 256), default=None,
              help="Rank of the outside-mask basis projected out [model default, else 5].")
@click.option("--basis", type=click.Choice(["projected", "constrained"]), default=None,
              help="projected: LOCO's top in-mask directions, then the null basis projected out. "
                   "constrained: the top in-mask directions among those already orthogonal to the "
                   "null basis (more local when the top in-mask direction is a global one). "
                   "[model default, else projected]")
@click.option("--t-edit", type=Finite(0, 1, open_lo=True, open_hi=True), default=None, help="Edit time as a fraction of T [model default, else 0.6].")
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="DDIM steps to and from the edit time.")
@click.option("--strengths", default=None, help="Comma-separated strengths for the preview [-S,0,S].")
@click.option("--resize", is_flag=True, help="Resize image and mask to the model's size instead of refusing.")
@click.option("--device", default=None, help="cuda, cpu, ... [cuda when present]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("directions.png"),
              show_default=True, help="Preview grid: one row per direction, one column per strength.")
@click.option("--json", "as_json", is_flag=True, help="Print singular values and diagnostics as JSON.")
@fail_on_library_errors
def directions(image, mask_path, model, rank, null_rank, basis, t_edit, steps, strengths, resize, device, out, as_json):
    """Find the top LOCO edit directions of IMAGE inside --mask, and write a preview grid."""
    from locobank.models import load_model
    from locobank.paths import resolve_model
    from locobank.preview import preview_directions, save_grid

    lm = load_model(resolve_model(model), device=device)
    values = parse_floats(strengths) if strengths else None
    with Stages() as stages:
        pv = preview_directions(lm, image, mask_path, rank=rank, null_rank=null_rank, basis=basis, t_edit=t_edit,
                                steps=steps, strengths=values, resize=resize, progress=stages("previewing", rank))
    save_grid(pv.grid, out, lm.resolution)
    found = pv.found
    info = {**pv.info(), "preview": str(out)}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"{rank} directions at t={found.t_edit} in {found.diagnostics['seconds']:.1f} s "
                   f"({found.diagnostics['iterations']} iterations)")
        for i, (sv, r) in enumerate(zip(found.singular_values.tolist(), found.diagnostics["outside_residual"])):
            click.echo(f"  #{i}  singular value {sv:8.3f}   change outside mask {100 * r:5.1f}%")
        click.echo(f"preview: {out}")
