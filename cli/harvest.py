"""``locobank harvest``: run unsupervised LOCO Edit over many (image, mask) pairs into the catalog."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Finite, Stages, fail_on_library_errors
from .db import db_option


@click.command()
@click.option("--model", default="toy", show_default=True,
              help="Hub id or folder of a diffusers pixel model (google/ddpm-celebahq-256) or Stable Diffusion "
                   "1.x/2.x pipeline (stable-diffusion-v1-5/stable-diffusion-v1-5); 'toy' and 'toy-sd' are the shipped toy models.")
@click.option("--images", type=click.Path(exists=True, path_type=Path), required=True,
              help="Folder of images with masks <stem>_<label>.png, a folder with manifest.jsonl, a "
                   "CelebAMask-HQ root, or a manifest.jsonl file. For SD models its rows add \"prompt\" (the image's "
                   "caption), or \"prompt\" and \"seed\" without \"image\" (the prompt's sample), and optionally "
                   "\"negative_prompt\", \"guidance\", \"edit_prompt\" (a text-supervised direction).")
@click.option("--masks", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder holding the <stem>_<label>.png masks, when not beside the images.")
@click.option("--labels", default=None, help="Comma-separated mask labels to use (e.g. eyes,mouth,hair). Default: all.")
@click.option("--rank", type=click.IntRange(1, 64), default=None, help="Directions per (image, mask) [model default, else 5].")
@click.option("--null-rank", type=click.IntRange(0, 256), default=None,
              help="Rank of the outside-mask basis projected out [model default, else 5].")
@click.option("--basis", type=click.Choice(["projected", "constrained"]), default=None,
              help="projected: LOCO's top in-mask directions, then the null basis projected out. "
                   "constrained: the top in-mask directions among those already orthogonal to the "
                   "null basis (more local when the top in-mask direction is a global one). "
                   "[model default, else projected]")
@click.option("--t-edit", type=Finite(0, 1, open_lo=True, open_hi=True), default=None,
              help="Edit time as a fraction of T for every label; given alone, it also replaces the "
                   "model's per-label times [model default, else 0.6].")
@click.option("--t-edit-for", "t_edit_for", multiple=True, metavar="LABEL=FRACTION",
              help="Edit time for one mask label, overriding --t-edit for it (repeatable: "
                   "--t-edit-for hair=0.5). [the model's t_edit_by_label]")
@click.option("--jacobian-at", type=click.Choice(["inverted", "noised"]), default=None,
              help="The state whose Jacobian gives the directions. inverted: the image's DDIM inversion "
                   "(LOCO's choice for real images). noised: the image noised to t_edit with noise "
                   "seeded by its hash, a typical state as on a sampling trajectory (on the toy model "
                   "the inverted states are atypical and the mouth directions there are not local). "
                   "Directions are applied to inverted states either way. [model default, else inverted]")
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="DDIM inversion steps [model default, else 50].")
@click.option("--iters", type=click.IntRange(1, 1000), default=50, show_default=True, help="Subspace-iteration cap, counted in whole blocks: a basis grown a few vectors "
                   "at a time (locobank.loco.jacobian.KRYLOV_BLOCK) may take proportionally more, cheaper "
                   "iterations.")
@click.option("--tol", type=Finite(0, 1, open_lo=True), default=1e-3, show_default=True, help="Convergence: subspace change in radians.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resize", is_flag=True, help="Resize images and masks to the model's size instead of failing the job.")
@click.option("--batch", type=click.IntRange(1, 1024), default=4, show_default=True,
              help="Jobs claimed and inverted together.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Local worker processes (one per GPU when GPUs are visible).")
@click.option("--device", default=None, help="cuda, cuda:1, cpu... [cuda when present]")
@click.option("--lease", type=Finite(1, 7 * 86400), default=600.0, show_default=True,
              help="Seconds a claimed job stays ours; a dead worker's jobs return after this.")
@click.option("--max-attempts", type=click.IntRange(1), default=3, show_default=True,
              help="A job whose worker died this many times is marked failed (a likely poison pill).")
@click.option("--retry-failed", is_flag=True,
              help="Put this run's failed jobs back in the queue first. The run is the model plus the options "
                   "that change what is found; --resize, --batch, --workers and --labels do not make another "
                   "run, so `--resize --retry-failed` reruns the jobs that failed for their size.")
@click.option("--plan-only", is_flag=True, help="Register the run and its jobs, then stop (workers can join later).")
@click.option("--dry-run", is_flag=True,
              help="Estimate the cost in forward-pass equivalents (FPE: one forward pass of the model) and in "
                   "seconds on this machine, from one timed forward pass, JVP and VJP; writes nothing.")
@click.option("--together", is_flag=True,
              help="Find a batch's jobs on the same image (its masks) together: one linearisation and their "
                   "vectors in the same model calls (a GPU win; on the 2-core CPU no faster).")
@click.option("--warm", is_flag=True,
              help="Start each job from the catalog's bases for its mask label and edit time and from the jobs "
                   "done before, instead of random vectors. The answer is the same to the tolerance; on the toy "
                   "models it was no faster (other faces' bases start no closer than random ones), so jobs "
                   "start cold unless asked (docs/performance.md).")
@db_option
@fail_on_library_errors
def harvest(model, images, masks, labels, rank, null_rank, basis, t_edit, t_edit_for, jacobian_at, steps, iters, tol, seed, resize, batch, workers,
            device, lease, max_attempts, retry_failed, plan_only, dry_run, together, warm, db_url):
    """Find LOCO directions for every (image, mask) pair and store them in the catalog.

    Safe to repeat and to kill: finished jobs are kept, a job that was running is taken back at
    once when its worker's process is gone from this machine (else after its lease expires), and
    the same work (model, settings, image and mask bytes) is never stored twice. Several workers,
    on one machine (--workers) or many (the same command against one Postgres --db), share the jobs.
    Exits 1 when any job failed (--retry-failed runs those again), and 75 when jobs are still
    leased by workers elsewhere (rerun later to resume them).
    """
    from locobank.harvest.run import HarvestRequest, run_harvest
    from locobank.harvest.run import dry_run as estimate

    given = dict(rank=rank, null_rank=null_rank, t_edit=t_edit, steps=steps, iters=iters, tol=tol, seed=seed,
                 resize=resize, basis=basis, t_edit_by_label=_t_edit_for(t_edit_for) if t_edit_for else None,
                 jacobian_at=jacobian_at)
    req = HarvestRequest(model=model, images=images, masks=masks,
                         labels={s.strip() for s in labels.split(",") if s.strip()} if labels else None, given=given,
                         workers=workers, device=device, batch=batch, lease_seconds=lease, max_attempts=max_attempts,
                         retry_failed=retry_failed, plan_only=plan_only, db_url=db_url, warm_start=warm,
                         together=together)
    if dry_run:
        _estimate(estimate(req))
        return
    with Stages() as progress:
        out = run_harvest(req, progress=progress)
    _report(out)
    if out.failed:
        click.echo("some jobs failed; fix the inputs and run again with --retry-failed", err=True)
        raise SystemExit(1)
    if out.unfinished:
        raise SystemExit(75)  # EX_TEMPFAIL: not done yet, try again later


def _estimate(e) -> None:
    """A dry run's estimate, part by part."""
    from locobank.harvest.estimate import duration

    click.echo(f"{e.jobs} jobs on {e.images} images; one forward pass {1000 * e.forward_seconds:.1f} ms (1 FPE)")
    click.echo(f"per image: inversion {e.inversion_fpe:.0f} FPE; per job: {e.rounds:.1f} rounds ({e.rounds_from}) "
               f"at {e.jvp_fpe:.2f} FPE per J v and {e.vjp_fpe:.2f} per J^T u: {e.job_fpe:.0f} FPE")
    click.echo(f"estimate: {e.total_fpe:,.0f} FPE, about {duration(e.seconds)} on this machine with one worker "
               f"(an upper bound: it counts both bases iterating every round, and the edit basis stops sooner)")


def _report(out) -> None:
    """What the run was and what this call did."""
    p, before = out.params, out.before
    for label in out.unmatched_labels:
        click.echo(f"no mask is labelled {label!r}; skipped (labels are exact and case-sensitive; "
                   f"used: {', '.join(out.labels_found)})", err=True)
    if out.requeued is not None:
        click.echo(f"requeued {out.requeued} failed job{'s' if out.requeued != 1 else ''}")
    click.echo(f"run {out.run.id} on {out.model_id} ({out.fingerprint}): {sum(before.values())} jobs, "
               f"{before['done']} already done, rank {p.rank}, null rank {p.null_rank} ({p.basis}), Jacobian at "
               f"{p.jacobian_at} states, t_edit {p.t_edit}" + "".join(f", {k} at {v:g}" for k, v in p.t_edit_by_label))
    s, after = out.summary, out.after
    if s is None:
        return
    click.echo(f"done {s.done}, skipped {before['done']} (already done), failed {after['failed']}, "
               f"{s.directions} new directions in {out.seconds:.1f} s"
               + (f" ({60 * s.directions / out.seconds:.1f} directions/min)" if s.directions and out.seconds else ""))
    for line in s.crashes:
        click.echo(f"  {line}", err=True)
    for err in out.failures[:20]:
        click.echo(f"  failed: {err}", err=True)
    if len(out.failures) > 20:
        click.echo(f"  ... and {len(out.failures) - 20} more (locobank stats)", err=True)
    if out.unfinished:
        _unfinished(out)


def _unfinished(out) -> None:
    """Say that the run is not finished, which workers hold its jobs, and how to resume."""
    after = out.after
    held = ", ".join(f"{owner} ({n} job{'s' if n != 1 else ''}"
                     + (f", lease ends {until:%Y-%m-%d %H:%M:%S} UTC)" if until else ")")
                     for owner, (n, until) in out.leased.items())
    click.echo(f"run {out.run.id} is not finished: {after['running']} job{'s' if after['running'] != 1 else ''} "
               f"still leased by other workers{': ' + held if held else ''}; {after['pending']} pending. "
               f"Those workers may still finish them; rerun this command later to resume the rest (a job "
               f"whose worker died is taken back when its lease ends, at once on that worker's machine).",
               err=True)


def _t_edit_for(items: tuple[str, ...]) -> dict[str, float]:
    """Parse repeated ``LABEL=FRACTION`` options."""
    out: dict[str, float] = {}
    for item in items:
        label, sep, value = item.partition("=")
        try:
            if not sep or not label.strip():
                raise ValueError
            out[label.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not LABEL=FRACTION (for example hair=0.5)",
                                     param_hint="--t-edit-for") from None
    return out
