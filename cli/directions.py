"""``locobank directions``: find LOCO directions on one image and preview them, no catalog needed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import fail_on_library_errors, parse_floats


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
@click.option("--t-edit", type=float, default=None, help="Edit time as a fraction of T [model default, else 0.6].")
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
    import numpy as np
    import torch
    from PIL import Image

    from locobank import engine
    from locobank.images import load_image, load_mask, to_uint8
    from locobank.models import load_model
    from locobank.paths import resolve_model

    lm = load_model(resolve_model(model), device=device)
    d = lm.defaults
    t_edit = t_edit if t_edit is not None else d.get("t_edit", engine.DEFAULT_T_EDIT)
    null_rank = null_rank if null_rank is not None else d.get("null_rank", 5)
    steps = steps or d.get("steps", engine.DEFAULT_STEPS)
    stem = Path(mask_path).stem  # <stem>_<label>.png, as the harvester names masks
    s = lm.strength_for(stem.rsplit("_", 1)[1] if "_" in stem else None)
    values = parse_floats(strengths) if strengths else [-s, 0.0, s]
    x = load_image(image, lm.resolution, resize=resize)
    m = load_mask(mask_path, lm.resolution, resize=resize)
    xt = engine.invert(lm, x, t_edit, steps)
    basis = basis or d.get("basis", "projected")
    found = engine.find_directions(lm, xt, t_edit, m, rank=rank, null_rank=null_rank, constrained=basis == "constrained")
    rows = []
    with click.progressbar(range(rank), label="previewing") as bar:
        for i in bar:
            xs = torch.cat([xt + v * found.vectors[i] for v in values])
            imgs = engine.sample(lm, xs, found.t, steps)
            rows.append(np.concatenate([to_uint8(im) for im in imgs], 1))
    grid = np.concatenate(rows, 0)
    scale = max(1, 128 // lm.resolution)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(out)
    info = {"singular_values": found.singular_values.tolist(), "t": found.t, "strengths": values,
            "fingerprint": found.fingerprint, "diagnostics": found.diagnostics, "preview": str(out)}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"{rank} directions at t={found.t} in {found.diagnostics['seconds']:.1f} s "
                   f"({found.diagnostics['iterations']} iterations)")
        for i, (sv, r) in enumerate(zip(found.singular_values.tolist(), found.diagnostics["outside_residual"])):
            click.echo(f"  #{i}  singular value {sv:8.3f}   change outside mask {100 * r:5.1f}%")
        click.echo(f"preview: {out}")
