"""``locobank apply``: edit your own images with directions from the catalog."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import click

from .common import Finite, MaskPath, Stages, fail_on_library_errors, parse_floats, parse_seeds, precision_option, refine_option
from .db import db_option, open_catalog

if TYPE_CHECKING:
    from locobank.apply import DirectionSpec


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=False)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output PNG for one image; a folder for several (one <stem>.png each) or for --sweep strips.")
@click.option("--query", default=None,
              help="Apply the search hit for this text that works on each image: the top --pool text hits are "
                   "previewed on the image (with --mask, re-localised on it) and ranked by what CLIP sees "
                   "change towards the text; the top one is applied with its sign at the strength calibrated on "
                   "the image (--strength: as given). No ids needed.")
@click.option("--candidates", type=click.IntRange(1, 100), default=1, show_default=True, metavar="N",
              help="With --query: edit each image in full with each of its top N hits (each with its sign and "
                   "strength, --mask and all) and keep the edit that CLIP sees furthest towards the text; N "
                   "edits per image, which share its inversion and, with --mask, its re-projection. With "
                   "--sweep, each image's hit is picked so at its own strength, then swept with its sign.")
@click.option("--pool", type=click.IntRange(1, 1000), default=32, show_default=True, metavar="N",
              help="With --query: how many text hits (of the top hit's model) each image's previews rank.")
@click.option("--blind", is_flag=True,
              help="With --query: rank by the text alone (the hits' effects on the images they were found on), "
                   "at each part's default strength, without previews; a prompt's --generate samples always "
                   "are.")
@click.option("--preview-steps", type=click.IntRange(1, 100), default=1, show_default=True,
              help="With --query: DDIM steps from the edit time to each hit's preview on the image, which ranks "
                   "the hits and calibrates their strength. 5 predicts the full edit better (its strength too: "
                   "about half the spread of the change on our own toy faces) at about 5 times the previews' "
                   "cost (docs/image_search.md).")
@refine_option("--query")
@precision_option("--query")
@click.option("--own", is_flag=True,
              help="With --query and --mask: apply, instead of each image's top hit, the image's own direction "
                   "in the mask that the hit points to: its own LOCO directions there, found at the hit's edit "
                   "time and started from it, each previewed both ways; the one CLIP sees move furthest towards "
                   "the text, or the hit itself if it previews better, is applied at the part's default "
                   "strength (--strength: as given). One more search of directions per image. On the toy "
                   "latent model it made \"frown\" work on 9 faces of 10 instead of 6, more locally, and "
                   "lost faces on eye colours (docs/latent.md).")
@click.option("--clip", "clip_spec", default="toy", show_default=True, help="CLIP model for --query.")
@click.option("--domain", default="face", show_default=True, help="Prompt noun for --query.")
@click.option("--strength", type=Finite(-100, 100), default=None,
              help="Strength for ids given without one [the model's default for its mask label, else 8]; "
                   "negative reverses the edit; at most 100 in size.")
@click.option("--mask", type=MaskPath(), multiple=True,
              help="Mask of the part to edit on the target image; repeat it to give one per direction. Each "
                   "direction is re-projected off the image's own null space outside the masks. For several "
                   "images give each its own with a pattern: {stem} stands for each image's file name without "
                   "its suffix (--mask 'masks/{stem}_mouth.png'); the images are then edited together, a batch "
                   "at a time (--batch).")
@click.option("--register/--no-register", default=True, show_default=True,
              help="With --mask: first move each direction from the part it was harvested on to the part under "
                   "its --mask: the shift that lays the one mask over the other, then a sub-pixel offset and "
                   "the part's size fitted from both images (the model's register_scale axes).")
@click.option("--max-shift", type=click.IntRange(0, 256), default=None,
              help="Then shift each direction by up to this many more pixels onto its --mask, where most of its "
                   "energy falls inside [model default, else 0: no shift].")
@click.option("--spill-passes", type=click.IntRange(0, 16), default=None,
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
@click.option("--prompt", default=None,
              help="Text-to-image models: the prompt the images are inverted and sampled under (a caption of "
                   "the image) [the empty prompt]; with --generate, the prompt to sample.")
@click.option("--negative-prompt", default="", help="Text-to-image models: the negative prompt.")
@click.option("--guidance", type=Finite(0, 50), default=None,
              help="Text-to-image models: classifier-free guidance scale [the model's, else 7.5].")
@click.option("--generate", default=None, metavar="SEEDS",
              help="Text-to-image models: instead of IMAGE files, edit the prompt's samples from these seeds "
                   "(comma-separated, e.g. 0,1,2) on their own sampling trajectories.")
@click.option("--model", "model_override", default=None,
              help="Model to use instead of the one recorded in the catalog (must have the same fingerprint).")
@click.option("--device", default=None, help="cuda, cpu, ... [cuda when present]")
@db_option
@fail_on_library_errors
def apply(args, out, query, candidates, pool, blind, preview_steps, refine, preview_precision, own, clip_spec, domain, strength, mask, register, max_shift, spill_passes,
          orthogonalize, sweep, seed, steps, resize, batch, prompt, negative_prompt, guidance, generate,
          model_override, device, db_url):
    """Apply ID[:STRENGTH] ... to IMAGE... (files, folders or globs).

    \b
    locobank apply 12 face.png --out smile.png
    locobank apply 12:6 40:-4 faces/ --out edited/        # composition, many images
    locobank apply 12:1.5x face.png --out smile.png        # 1.5 units of 12's change
    locobank apply --query "smile" face.png --out smile.png
    locobank apply --query "blond hair" --candidates 5 faces/ --out blond/   # best of each image's top 5
    locobank apply 12 face.png --sweep -8,-4,0,4,8 --out sweep.png
    locobank apply 12 face.png --mask mouth.png --out smile.png   # re-localised
    locobank apply 12 faces/ --mask "masks/{stem}_mouth.png" --out edited/   # each its own mask
    locobank apply --query smile face.png --mask mouth.png --own --out smile.png  # the face's own direction
    locobank apply 7 photo.png --prompt "a photo of a man" --out edited.png     # SD: under a caption
    locobank apply 7 --prompt "a photo of a man" --generate 0,1 --out samples/  # SD: edit samples

    STRENGTH is lambda, the step along the direction (default: the model's for its part);
    written Nx it is N units of the direction's own strength scale, measured when it was
    indexed (`search` shows it): 1x changes the part by about the same amount for every
    direction.

    Each image is inverted to the directions' edit time, edited and sampled back. Directions
    found at different edit times compose too: the image is inverted to the highest, and each
    direction is added when the sampler passes its own time.
    """
    from locobank.apply import ApplyRequest, expand_images, run_apply

    specs, words = split_args(args)
    req = ApplyRequest(images=expand_images(words) if words else [], out=out, specs=specs, query=query,
                       candidates=candidates, pool=pool, blind=blind, preview_steps=preview_steps, refine=refine,
                       preview_precision=preview_precision, own=own, clip=clip_spec, domain=domain, strength=strength, masks=list(mask),
                       orthogonalize=orthogonalize, sweep=parse_floats(sweep) if sweep is not None else None,
                       resize=resize, batch=batch, model_override=model_override, device=device, seed=seed,
                       steps=steps, max_shift=max_shift, spill_passes=spill_passes, register=register,
                       prompt=prompt, negative_prompt=negative_prompt, guidance=guidance,
                       generate=parse_seeds(generate) if generate is not None else []).check()
    with open_catalog(db_url) as cat, Stages() as progress:
        outcome = run_apply(cat, req, progress=progress)
    for line in outcome.notes:
        click.echo(line)


def split_args(args: Sequence[str]) -> tuple[list[DirectionSpec], list[str]]:
    """The command line's words as direction specs (the leading ``ID[:STRENGTH]`` words) and image
    words (the rest); a word that is no file and was probably meant as something else is refused
    with what was meant."""
    from locobank.apply import SPEC, parse_spec

    specs, images = [], []
    for a in args:
        if not images and SPEC.match(a.strip()) and not Path(a).exists():
            specs.append(parse_spec(a))
        else:
            images.append(a)
    for word in images:
        hint = None if Path(word).exists() or any(c in word for c in "*?[") else meant(word)
        if hint:
            raise click.ClickException(hint)
    return specs, images


def meant(word: str) -> str | None:
    """What a word that is neither a file nor a folder was probably meant to be (None: no guess)."""
    if re.fullmatch(r"-\d+(:.*)?", word):
        return (f"{word}: direction ids are positive whole numbers (a negative strength goes after the colon, "
                f"e.g. 12:-4)")
    if word.startswith("--"):
        return f"{word}: no such option; see `locobank apply --help`"
    if not Path(word).suffix and "/" not in word and "\\" not in word:
        return (f"{word!r} is neither a direction id nor an image file; to apply the best match for a text, "
                f"use --query {word!r}")
    return None
