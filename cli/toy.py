"""``locobank toy``: the procedural face world and the training of its models."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Finite, Stages, fail_on_library_errors

from locobank.paths import DATA, TOY_CLIP, TOY_DDPM, TOY_SD

DDPM_DIR, CLIP_DIR, SD_DIR = TOY_DDPM, TOY_CLIP, TOY_SD


@click.group()
def toy() -> None:
    """Make toy faces with exact part masks, and train the toy DDPM, CLIP and latent model."""


@toy.command("faces")
@click.option("--n", "n", type=click.IntRange(min=1), default=100, show_default=True, help="How many faces.")
@click.option("--seed", type=click.IntRange(min=0), default=1_000_000, show_default=True,
              help="First seed; face i has seed SEED+i. Seeds from 1,000,000 up are never used in training.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@fail_on_library_errors
def faces_cmd(n: int, seed: int, out: Path) -> None:
    """Write N faces: <stem>.png, masks <stem>_<part>.png and manifest.jsonl.

    Parts: eyes, mouth, hair, face, background, and glasses when worn. The folder is a
    valid input for `locobank harvest --images`.
    """
    from tqdm import tqdm

    from locobank.toyworld import write_dataset

    with tqdm(total=n, desc="faces", unit="face") as bar:
        manifest = write_dataset(out, n, seed, progress=bar.update)
    click.echo(f"wrote {n} faces to {out} ({manifest.name})")


def _train_options(default_out: Path, default_steps: int, default_batch: int):
    def deco(f):
        f = click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=default_out,
                         show_default=True, help="Model folder to write (save_pretrained layout).")(f)
        f = click.option("--state", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="Training-state file (weights, EMA, Adam moments; safetensors). "
                              "Default: data/training/<model>.safetensors")(f)
        f = click.option("--steps", type=click.IntRange(min=1), default=default_steps, show_default=True,
                         help="Train until this many optimiser steps in total.")(f)
        f = click.option("--batch", type=click.IntRange(min=1), default=default_batch, show_default=True)(f)
        f = click.option("--seed", type=int, default=0, show_default=True)(f)
        f = click.option("--device", default=None, help="cuda, cuda:1, cpu... Default: cuda when present.")(f)
        f = click.option("--resume/--no-resume", default=True, show_default=True,
                         help="Continue from the training state if it exists.")(f)
        return f

    return deco


def _progress(total: int, start: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, desc=desc, unit="step")

    def on_step(step: int, loss: float) -> None:
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")

    return bar, on_step


@toy.command("train-ddpm")
@_train_options(DDPM_DIR, 60000, 32)
@fail_on_library_errors
def train_ddpm_cmd(out, state, steps, batch, seed, device, resume) -> None:
    """Train the toy DDPM (UNet2DModel + DDPMScheduler, EMA weights) on procedural faces.

    Checkpoints every 500 steps; stop at any time and run again to resume.
    """
    from locobank.toyworld.training.ddpm import train_ddpm
    from locobank.toyworld.training.state import read_step

    state = state or Path("data/training/toyfaces-ddpm.safetensors")
    bar, on_step = _progress(steps, read_step(state) if resume else 0, "train-ddpm")
    with bar:
        meta = train_ddpm(out, state, steps=steps, batch_size=batch, seed=seed, device=device, resume=resume, on_step=on_step)
    click.echo(f"toy DDPM at step {meta['step']} ({meta['seconds'] / 3600:.2f} h of training) in {out}")


@toy.command("train-clip")
@_train_options(CLIP_DIR, 4000, 128)
@click.option("--init", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Start from this toy CLIP folder's weights when there is no state to resume: a "
                   "fine-tune, e.g. after the face generator or the captions changed.")
@click.option("--lr", type=Finite(0, 1, open_lo=True), default=5e-4, show_default=True,
              help="Peak learning rate (cosine decay after a 200-step warm-up); lower it for a fine-tune.")
@fail_on_library_errors
def train_clip_cmd(out, state, steps, batch, seed, device, resume, init, lr) -> None:
    """Train the toy CLIP (an open_clip model from its own JSON config) on faces and captions."""
    from locobank.toyworld.training.clip import train_clip
    from locobank.toyworld.training.state import read_step

    state = state or Path("data/training/toyfaces-clip.safetensors")
    bar, on_step = _progress(steps, read_step(state) if resume else 0, "train-clip")
    with bar:
        meta = train_clip(out, state, steps=steps, batch_size=batch, seed=seed, device=device, resume=resume,
                          init=init, lr=lr, on_step=on_step)
    click.echo(f"toy CLIP at step {meta['step']} ({meta['seconds'] / 3600:.2f} h of training) in {out}")


@toy.command("train-sd")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=SD_DIR, show_default=True,
              help="Pipeline folder to write (StableDiffusionPipeline.save_pretrained layout).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=DATA / "training",
              show_default=True, help="Folder of the two training states (VAE, UNet; safetensors).")
@click.option("--vae-steps", type=click.IntRange(min=1), default=2500, show_default=True,
              help="Train the VAE until this many steps, then the UNet on its latents.")
@click.option("--steps", type=click.IntRange(min=1), default=30000, show_default=True,
              help="Train the UNet until this many optimiser steps in total.")
@click.option("--export-every", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Write the pipeline folder every this many UNet steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cuda, cuda:1, cpu... Default: cuda when present.")
@fail_on_library_errors
def train_sd_cmd(out, state_dir, vae_steps, steps, export_every, seed, device) -> None:
    """Train the toy latent text-to-image model (VAE, then a UNet2DConditionModel on its latents,
    conditioned by the toy CLIP's text tower as a frozen CLIPTextModel) on faces and captions.

    Checkpoints as it goes; stop at any time and run again to resume.
    """
    from locobank.toyworld.training.latent import train_sd
    from locobank.toyworld.training.state import read_step

    bars = {}

    def on_step(phase: str, step: int, loss: float) -> None:
        if phase not in bars:
            for b in bars.values():
                b.close()
            total = vae_steps if phase == "vae" else steps
            state = state_dir / f"toyfaces-sd-{phase}.safetensors"
            bars[phase], _ = _progress(total, read_step(state), f"train-sd {phase}")
        bars[phase].update(1)
        if step % 10 == 0:
            bars[phase].set_postfix(loss=f"{loss:.4f}")

    info = train_sd(out, state_dir, CLIP_DIR, vae_steps=vae_steps, steps=steps, seed=seed, device=device,
                    export_every=export_every, on_step=on_step)
    for b in bars.values():
        b.close()
    click.echo(f"toy latent model at UNet step {info['unet']['step']} in {out}")


@toy.command("eval-sd")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A toy latent pipeline folder, e.g. a training export [the shipped toyfaces-sd].")
@click.option("--faces", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Held-out faces per study (sources, transfer targets, round trip, text-supervised edits).")
@click.option("--adherence-faces", type=click.IntRange(1, 1000), default=200, show_default=True,
              help="Faces generated from held-out captions for prompt adherence.")
@click.option("--t-edit", type=Finite(0, 1, open_lo=True, open_hi=True), default=None,
              help="Edit time for every part [the model's locobank.json, per part].")
@click.option("--null-rank", type=click.IntRange(0, 256), default=None, help="Null-space rank [model default].")
@click.option("--strength", type=Finite(0, 100, open_lo=True), default=None, help="Lambda [model default per part].")
@click.option("--basis", type=click.Choice(["projected", "constrained"]), default=None, help="[model default]")
@click.option("--steps", type=click.IntRange(1, 1000), default=20, show_default=True, help="DDIM steps of the edits.")
@click.option("--samples", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the first 64 caption samples as a grid here.")
@click.option("--json", "as_json", is_flag=True)
@fail_on_library_errors
def eval_sd_cmd(model_dir, faces, adherence_faces, t_edit, null_rank, strength, basis, steps, samples, as_json) -> None:
    """Measure the toy latent text-to-image model's bars on held-out faces: VAE reconstruction,
    prompt adherence (toy CLIP zero-shot), round trip under the caption, T-LOCO locality
    (unsupervised, on the source and on transfer) and text-supervised edits (probe and locality)."""
    import json

    from locobank.settings import edit_times
    from locobank.toyworld.reports.latent import eval_report

    with Stages() as progress:
        r = eval_report(model_dir, faces=faces, adherence_faces=adherence_faces, t_edit=t_edit,
                           null_rank=null_rank, strength=strength, basis=basis, steps=steps, samples=samples,
                           progress=progress)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"t_edit {edit_times(r['t_edit'], r['t_edit_by_part'])}, null rank {r['null_rank']}, "
               f"basis {r['basis']}, guidance {r['guidance']}")
    click.echo(f"VAE reconstruction: PSNR mean {r['vae_psnr']['mean']:.1f} dB, min {r['vae_psnr']['min']:.1f} dB")
    for task, a in r["adherence"].items():
        click.echo(f"adherence {task:15s}: {a['accuracy']:.0%} of {a['n']}")
    click.echo(f"round trip under the caption: PSNR mean {r['round_trip_psnr']['mean']:.1f} dB")
    for part, s in r["locality"].items():
        click.echo(f"locality {part:6s} (λ {s['strength']:g}): source median {s['source']['median']:.2f}, "
                   f"transfer median {s['transfer']['median']:.2f}, re-projected on each target "
                   f"{s['transfer_reprojected']['median']:.2f}, RMS change {s['rms_change']:.3f}")
        click.echo(f"  after {s['spill_passes']} spill passes (as apply --mask): source median "
                   f"{s['source_spill']['median']:.2f}, re-projected transfer {s['transfer_reprojected_spill']['median']:.2f}")
    for q, s in r["supervised"].items():
        click.echo(f"text-supervised {q!r:13s}: moved the right way on {s['moved_right_way']}/{s['n']}, "
                   f"locality median {s['locality'].get('median', float('nan')):.2f}; after {s['spill_passes']} "
                   f"spill passes {s['moved_right_way_spill']}/{s['n']}, "
                   f"{s['locality_spill'].get('median', float('nan')):.2f}")
        click.echo(f"  under the caption without the attribute: {s['moved_right_way_caption_without']}/{s['n']}, "
                   f"{s['locality_caption_without'].get('median', float('nan')):.2f}")
        click.echo(f"  sampled on under the edit caption: {s['moved_right_way_under_edit_caption']}/{s['n']}, "
                   f"{s['locality_under_edit_caption'].get('median', float('nan')):.2f}; the caption switch alone "
                   f"{s['moved_right_way_caption_switch']}/{s['n']}, "
                   f"{s['locality_caption_switch'].get('median', float('nan')):.2f}")


@toy.command("eval")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A toy DDPM folder to measure, e.g. a training export [the shipped toy DDPM].")
@click.option("--faces", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Held-out source faces per part (and as many transfer targets).")
@click.option("--parts", default="mouth,eyes,hair", show_default=True)
@click.option("--t-edit", type=Finite(0, 1, open_lo=True, open_hi=True), default=None, help="Edit time [the model's locobank.json, else 0.6].")
@click.option("--null-rank", type=int, default=None, help="Null-space rank [model default, else 5].")
@click.option("--strength", type=Finite(0, 100, open_lo=True), default=None, help="Lambda [the model's default for each part, else 8].")
@click.option("--basis", type=click.Choice(["projected", "constrained"]), default=None,
              help="How the null basis is applied (see `locobank harvest --help`) [model default, else projected].")
@click.option("--jacobian-at", type=click.Choice(["inverted", "noised"]), default=None,
              help="State whose Jacobian gives the directions (see `locobank harvest --help`) [model default, else inverted].")
@click.option("--steps", type=int, default=20, show_default=True, help="DDIM steps for the locality study.")
@click.option("--samples", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write a grid of 64 DDIM samples here (e.g. data/models/toyfaces-ddpm/samples.png).")
@click.option("--skip-clip", is_flag=True, help="Leave out the CLIP zero-shot accuracy.")
@click.option("--json", "as_json", is_flag=True)
@fail_on_library_errors
def eval_cmd(model_dir, faces, parts, t_edit, null_rank, strength, basis, jacobian_at, steps, samples, skip_clip, as_json) -> None:
    """Measure the toy world's quality bars on held-out faces: reconstruction PSNR, LOCO
    locality on the source and on transfer, and CLIP zero-shot accuracy."""
    import json

    from locobank.toyworld.reports.pixel import eval_report

    with Stages() as progress:
        report = eval_report(model_dir, faces=faces, parts=parts.split(","), t_edit=t_edit, null_rank=null_rank,
                             strength=strength, basis=basis, jacobian_at=jacobian_at, steps=steps, samples=samples,
                             clip=not skip_clip, progress=progress)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    per_part, strengths, psnr = report.get("t_edit_by_label", {}), report["strength"], report["reconstruction_psnr"]
    click.echo(f"reconstruction at t_edit={report['t_edit']}: PSNR mean {psnr['mean']:.1f} dB, min {psnr['min']:.1f} dB")
    for part, s in report["locality"].items():
        at = (f" (t_edit {per_part[part]:g}, λ {strengths[part]:g})" if part in per_part
              else f" (λ {strengths[part]:g})")
        click.echo(f"locality {part:6s}{at}: source median {s['source']['median']:.2f} (worst {s['source']['worst']:.2f}), "
                   f"transfer median {s['transfer']['median']:.2f} (worst {s['transfer']['worst']:.2f})")
    for task, acc in report.get("clip_zero_shot", {}).items():
        click.echo(f"CLIP zero-shot {task}: {100 * acc:.1f}%")


@toy.command("quality")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("quality"), show_default=True,
              help="Folder for the run (catalog, index, sheets, quality.json).")
@click.option("--faces", type=click.IntRange(1, 500), default=24, show_default=True,
              help="Held-out faces to harvest (eyes, mouth and hair masks).")
@click.option("--targets", type=click.IntRange(1, 200), default=10, show_default=True,
              help="Other held-out faces each query's top hit is applied to: the first ones that do not "
                   "already show the attribute.")
@click.option("--targets-from", type=click.IntRange(0), default=None,
              help="First seed the --targets faces are taken from [the first unseen face's, 1010000].")
@click.option("--unseen", type=click.IntRange(1, 200), default=20, show_default=True,
              help="Unseen faces for the locality, linearity and composition bars.")
@click.option("--rank", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--iters", type=click.IntRange(1, 200), default=12, show_default=True, help="Iteration cap of the SVD, counted in whole blocks (as harvest --iters).")
@click.option("--reuse", is_flag=True, help="Measure an existing run in --out instead of harvesting again.")
@click.option("--spill-passes", type=click.IntRange(0, 20), default=None,
              help="Spill passes of the apply bars' edits, as `apply --spill-passes` [model default, else 2].")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register each direction from its source mask onto each face's mask first, as `apply --mask` does.")
@click.option("--device", default=None, help="cuda, cpu, ... [cuda when present]")
@click.option("--json", "as_json", is_flag=True)
@fail_on_library_errors
def quality_cmd(out, faces, targets, targets_from, unseen, rank, iters, reuse, spill_passes, register, device,
                as_json) -> None:
    """Measure search and apply quality on the toy world, with pixel probes rather than CLIP.

    Harvests --faces held-out faces through the demo's path (harvest with the toy DDPM and the
    toy latent model into one catalog, embed, name, index, sheets, and the demo's own masked
    edits), then prints, for each model's hits (each searched over both families), the queries
    smile, frown, blue/brown eyes, bigger eyes, blond/black/long hair and glasses: the top hit's
    mask, precision@5 and how many of --targets faces (that lack the attribute) the top hit
    moves the right way; then how many the hit each face picks among the top 5 moves
    (`apply --query --candidates 5`), and how many the best of the 5 by the probe would.
    Then the apply bars on --unseen faces, each direction re-localised on each face as
    `apply --mask` does (registered from its source mask, re-projected, then its spill
    passes): locality with each face's own part mask (also on as many faces that lack the
    attribute), monotonicity across the sweep -8..8 (also on as many faces that lack a smile),
    and smile + blond hair composed (also on as many faces that lack both).
    """
    import json

    from locobank.toyworld.reports.quality import quality_report

    with Stages() as progress:
        report = quality_report(out, faces=faces, targets=targets, targets_from=targets_from, unseen=unseen, rank=rank,
                                iters=iters, reuse=reuse, spill_passes=spill_passes, register=register, device=device,
                                progress=progress)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in _quality_lines(report):
        click.echo(line)
    click.echo(f"wrote {out / 'quality.json'}; the contact sheets are in {out / 'sheets'}")


def _search_table(rows: list[dict]) -> list[str]:
    """The search bars, a line per query."""
    out = [f"{'':37s} {'top hit':>17s}   {'pick of 5':>17s} {'probe':>5s}",
           f"{'query':12s} {'top-hit mask':12s} {'sign':>4s} {'P@5':>5s} {'success':>8s} {'gain':>8s}   "
           f"{'success':>8s} {'gain':>8s} {'best':>5s}"]
    for r in rows:
        ok = "" if r["top_mask"] == r["part"] else "  (want " + r["part"] + ")"
        picked = (f"{r['picked_success']:>3d}/{r['tried']:<4d} {r['picked_gain']:8.3f} {r['best_success']:>5d}"
                  if r["picked_success"] is not None else f"{'-':>8s} {'-':>8s} {'-':>5s}")
        out.append(f"{r['query']:12s} {str(r['top_mask']):12s} {'+' if r['sign'] > 0 else '-':>4s} "
                   f"{r['precision_at_5']:5.2f} {r['success']:>3d}/{r['tried']:<4d} {r['mean_gain']:8.3f}   {picked}{ok}")
    return out


def _quality_lines(report: dict) -> list[str]:
    """The quality report as a table of the search bars and lines of the apply bars."""
    rep = report["apply"]
    lams = {q: v["strength"] for q, v in rep["locality"].items()}
    out = [f"\n{report['directions']} directions from {report['faces']} faces; strengths "
           f"{', '.join(f'{q} {s:g}' for q, s in lams.items()) if rep['strength'] is None else rep['strength']}; "
           f"apply bars {'registered, ' if rep['registered'] else ''}with {rep['spill_passes']} spill passes\n",
           f"search over both families, the pixel model's hits ({report['model']['model_id']}):"]
    out += _search_table(report["search"])
    if report.get("search_latent"):
        out += ["", f"the latent model's hits ({report['latent_model']['model_id']}; each face inverted and "
                    f"sampled under its caption):"] + _search_table(report["search_latent"])
    out.append("")
    for q, s in rep["locality"].items():
        out.append(f'locality of "{q}" (#{s["id"]}) on {s["n"]} unseen faces, {s["part"]} mask: mean {s["mean"]:.2f}, '
                   f'worst {s["worst"]:.2f}, {s["at_least_85"]}/{s["n"]} at >= 0.85; moved right way '
                   f'{s["moved_right_way"]}/{s["n"]}')
        if "lacking" in s:
            la = s["lacking"]
            out.append(f'  on {la["n"]} unseen faces that lack it: mean {la["mean"]:.2f}, worst {la["worst"]:.2f}, '
                       f'{la["at_least_85"]}/{la["n"]} at >= 0.85; moved right way {la["moved_right_way"]}/{la["n"]}')
    if rep["linearity"]:
        li = rep["linearity"]
        out.append(f'linearity of "{li["query"]}" (#{li["id"]}) across {li["sweep"]}: '
                   f'monotone on {li["monotone"]}/{li["n"]} unseen faces')
        if "lacking" in li:
            out.append(f'  on {li["lacking"]["n"]} unseen faces that lack it: monotone on '
                       f'{li["lacking"]["monotone"]}/{li["lacking"]["n"]}')
    if rep["composition"]:
        c = rep["composition"]
        out.append(f'composition {" + ".join(c["queries"])} on {c["n"]} unseen faces: {_composed(c)}')
        if "lacking" in c:
            out.append(f'  on {c["lacking"]["n"]} unseen faces that lack both: {_composed(c["lacking"])}')
    return out


def _composed(c: dict) -> str:
    """One line of composition figures: each attribute's gain together against alone, locality."""
    def ratio(x) -> str:
        return "-" if x is None else f"{x:.2f}"

    per = ", ".join(f'{q}: mean ratio {ratio(v.get("mean_ratio"))}, median {v["median_ratio"]:.2f}, '
                    f'{v["within_20pct"]}/{c["n"]} within 20%' for q, v in c["per_query"].items())
    return (f'{per}; both within 20% on {c["both_within_20pct"]}/{c["n"]}; locality to the union mean '
            f'{c["locality_union_mean"]:.2f}, worst {c["locality_union_worst"]:.2f}')
