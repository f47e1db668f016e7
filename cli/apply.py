"""``locobank apply``: edit your own images with directions from the catalog."""

from __future__ import annotations

from pathlib import Path

import click

from .common import fail_on_library_errors, parse_floats
from .db import db_option, open_catalog


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output PNG for one image; a folder for several (one <stem>.png each) or for --sweep strips.")
@click.option("--query", default=None, help="Apply the top search hit for this text, with its sign (no ids needed).")
@click.option("--candidates", type=click.IntRange(1, 100), default=1, show_default=True, metavar="N",
              help="With --query: edit each image with each of the top N hits (of the top hit's model, each "
                   "with its sign, --mask and all) and keep the edit that CLIP sees furthest towards the text; "
                   "N edits per image, which share its inversion and, with --mask, its re-projection (1: the top "
                   "hit). With --sweep, each image's hit is picked so at "
                   "its own strength, then swept with its sign.")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help="CLIP model for --query.")
@click.option("--domain", default="face", show_default=True, help="Prompt noun for --query.")
@click.option("--strength", type=float, default=None,
              help="Strength for ids given without one [the model's default for its mask label, else 8]; "
                   "negative reverses the edit.")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="Mask of the part to edit on the target image (repeat it to give one per direction): each "
                   "direction is re-projected off the image's own null space outside the masks.")
@click.option("--register/--no-register", default=True, show_default=True,
              help="With --mask: first move each direction from the part it was harvested on to the part under "
                   "its --mask: the shift that lays the one mask over the other, then a sub-pixel offset and "
                   "the part's size fitted from both images (the model's register_scale axes).")
@click.option("--max-shift", type=click.IntRange(0, 256), default=None,
              help="Then shift each direction by up to this many more pixels onto its --mask, where most of its "
                   "energy falls inside [model default, else 0: no shift].")
@click.option("--spill-passes", type=click.IntRange(0, 20), default=None,
              help="With --mask: sample the edit, subtract its change outside the masks from the direction, "
                   "and sample again, this many times (one sampling each, and one of the unedited image; "
                   "0: the projection alone) [model default, else 2].")
@click.option("--orthogonalize", is_flag=True, help="Gram-Schmidt the composed directions, in the order given.")
@click.option("--sweep", default=None,
              help="Comma-separated strengths, e.g. -8,-4,0,4,8: one PNG strip per image (with --mask, the "
                   "direction is re-localised once and scaled; the spill passes run at each strength; with "
                   "--query, each strength times the hit's sign).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the stochastic tail (reproducible).")
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="DDIM steps [model default, else 50].")
@click.option("--resize", is_flag=True, help="Resize images (and --mask) to the model's size instead of refusing.")
@click.option("--batch", type=click.IntRange(1, 1024), default=16, show_default=True, help="Images per batch.")
@click.option("--model", "model_override", default=None,
              help="Model to use instead of the one recorded in the catalog (must have the same fingerprint).")
@click.option("--device", default=None, help="cuda, cpu, ... [cuda when present]")
@db_option
@fail_on_library_errors
def apply(args, out, query, candidates, clip_spec, domain, strength, mask, register, max_shift, spill_passes,
          orthogonalize, sweep, seed, steps, resize, batch, model_override, device, db_url):
    """Apply ID[:STRENGTH] ... to IMAGE... (files, folders or globs).

    \b
    locobank apply 12 face.png --out smile.png
    locobank apply 12:6 40:-4 faces/ --out edited/        # composition, many images
    locobank apply --query "smile" face.png --out smile.png
    locobank apply --query "blond hair" --candidates 5 faces/ --out blond/   # the best of 5 hits per image
    locobank apply 12 face.png --sweep -8,-4,0,4,8 --out sweep.png
    locobank apply 12 face.png --mask mouth.png --out smile.png   # re-localised

    Each image is inverted to the directions' edit time, edited and sampled back. Directions
    found at different edit times compose too: the image is inverted to the highest, and each
    direction is added when the sampler passes its own time.
    """
    from PIL import Image

    import numpy as np

    from locobank.apply import apply_to_images, expand_images, parse_spec, prepare
    from locobank.apply import sweep as run_sweep
    from locobank.images import save_image, to_uint8

    specs, images = [], []
    for a in args:
        if not images and _looks_like_spec(a):
            specs.append(parse_spec(a))
        else:
            images.append(a)
    if not images:
        raise click.UsageError("give at least one IMAGE after the direction ids")
    paths = expand_images(images)  # before the catalog and the models load: bad input fails at once
    many = len(paths) > 1
    if not many and out.suffix.lower() != ".png":
        raise click.UsageError("--out must end in .png for a single image (or be a folder for several)")
    if candidates > 1 and not query:
        raise click.UsageError("--candidates chooses among the hits of --query; give --query too")
    if query and len(mask) > 1:
        raise click.UsageError("--query applies one direction: give one --mask")
    picks: list[int] = [0] * len(paths)  # which candidate each image keeps (one without --candidates)
    with open_catalog(db_url) as cat:
        if query:
            if specs:
                raise click.UsageError("give direction ids or --query, not both")
            from locobank.apply import query_candidates
            from locobank.clip import load_clip

            clip = load_clip(clip_spec, device=device)
            cands = query_candidates(cat, clip, query, k=candidates, domain=domain, default_strength=strength,
                                     model_override=model_override, device=device)
            if len(cands) == 1:
                h = cands[0].hit
                only = f" (the only hit of its model; {candidates} asked for)" if candidates > 1 else ""
                click.echo(f"query {query!r}: direction {h.id} (match {h.match:.3f}, score {h.score:.3f}, "
                           f"sign {'+' if h.sign > 0 else '-'}){only}")
            else:
                listed = ", ".join(f"#{c.hit.id} ({'+' if c.hit.sign > 0 else '-'}, match {c.hit.match:.3f})"
                                   for c in cands)
                fewer = f" ({candidates} asked for; the index holds no more of the top hit's model)" \
                    if len(cands) < candidates else ""
                click.echo(f"query {query!r}: {len(cands)} candidates{fewer}: {listed}")
        elif specs:
            cands = None
            prep = prepare(cat, specs, default_strength=strength, model_override=model_override, device=device)
        else:
            raise click.UsageError("give at least one direction ID[:STRENGTH] before the images, or --query")
    pool = [c.prep for c in cands] if cands is not None else [prep]
    best_of = len(pool) > 1
    prep = pool[0] if not best_of else None
    options = dict(mask=list(mask) or None, resize=resize, seed=seed, steps=steps, max_shift=max_shift,
                   spill_passes=spill_passes, register=register)  # what apply, sweep and the pick share
    if best_of:
        from locobank.apply import apply_best_of
        from locobank.search import text_direction

        text = text_direction(clip, query, domain)
    if many:
        out.mkdir(parents=True, exist_ok=True)
    shifts: list = []
    if sweep is not None:
        values = parse_floats(sweep)
        if best_of:  # each image's pick among its edits at the candidates' own strengths
            with click.progressbar(length=len(paths) * len(pool), label=f"try {len(pool)} hits") as bar:
                picks = apply_best_of(pool, clip, text, paths, batch=batch, progress=bar.update, **options)[1]
            _chosen_note(cands, picks)
            prep = _kept(pool, picks)
        with click.progressbar(list(zip(paths, picks)), label="sweep") as bar:
            for p, j in bar:
                sign = cands[j].hit.sign if cands is not None else 1  # a query's hit sweeps with its sign
                strip = run_sweep(pool[j], p, [sign * v for v in values], shifts=shifts, **options)
                arr = np.concatenate([to_uint8(s) for s in strip], 1)
                target = out / f"{p.stem}_sweep.png" if many else out
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(target)
        click.echo(f"wrote {len(paths)} sweep strip{'s' if many else ''} ({', '.join(f'{v:g}' for v in values)}) to {out}")
        if mask:
            _relocalised_note(prep, register, spill_passes, shifts[0] if shifts and not many else None)
        return
    if best_of:
        with click.progressbar(length=len(paths) * len(pool), label=f"apply {len(pool)} hits, keep the best") as bar:
            edited, picks = apply_best_of(pool, clip, text, paths, batch=batch, progress=bar.update, shifts=shifts,
                                          **options)
        _chosen_note(cands, picks)
        prep = _kept(pool, picks)
    else:
        with click.progressbar(length=len(paths), label="apply") as bar:
            edited = apply_to_images(prep, paths, orthogonalize=orthogonalize, batch=batch, progress=bar.update,
                                     shifts=shifts, **options)
    for p, img in zip(paths, edited):
        save_image(img, out / f"{p.stem}.png" if many else out)
    desc = ", ".join(f"{d.name}:{s:g}" for d, s in zip(prep.directions, prep.strengths))
    if best_of and len(prep.directions) > 1:
        click.echo(f"applied the kept one of {desc} to each of {len(paths)} images -> {out}")
    else:
        click.echo(f"applied {desc} to {len(paths)} image{'s' if many else ''} -> {out}")
    if mask:
        _relocalised_note(prep, register, spill_passes, shifts[0] if shifts and not many else None)


def _kept(pool, picks: list[int]):
    """The candidates some image kept, as one Prepared for the summary lines."""
    from locobank.apply import Prepared

    used = sorted(set(picks))
    return Prepared(pool[0].model, [pool[j].directions[0] for j in used], [pool[j].strengths[0] for j in used])


def _chosen_note(cands, picks: list[int]) -> None:
    """Say which candidate each image kept, most kept first."""
    counts = sorted(((picks.count(j), j) for j in set(picks)), reverse=True)
    click.echo("kept per image: " + ", ".join(f"#{cands[j].hit.id} ({'+' if cands[j].hit.sign > 0 else '-'}v) on "
                                             f"{n} image{'s' if n != 1 else ''}" for n, j in counts))


def _relocalised_note(prep, register: bool, spill_passes: int | None, moves: list | None) -> None:
    """Say how the directions were re-localised on the mask: registered (``moves``: one image's
    ((dy, dx), (sy, sx)) per direction; None for several images), re-projected, spill passes."""
    from locobank.engine import spill_passes_for

    n = spill_passes_for(prep.model) if spill_passes is None else spill_passes
    passes = f", {n} spill pass{'es' if n != 1 else ''}" if n else ""
    unknown = [d.name for d in prep.directions if d.source is None]
    if register and unknown:
        click.echo(f"not registered (the mask it was harvested with is not recorded, nor its file there): "
                   f"{', '.join(unknown)}")
    if moves and any(m != ((0, 0), (1, 1)) for m in moves):
        moved = "; ".join(f"{d.name} by ({dy:+.2f}, {dx:+.2f}) px (down, right), scaled ({sy:.2f}, {sx:.2f}) "
                          f"(height, width)" for d, ((dy, dx), (sy, sx)) in zip(prep.directions, moves))
        click.echo(f"re-localised on the mask: moved {moved}; then re-projected{passes}")
    else:
        click.echo(f"re-localised on the mask: re-projected{passes}")


def _looks_like_spec(text: str) -> bool:
    head = text.split(":", 1)[0]
    return head.isdigit() and not Path(text).exists()
