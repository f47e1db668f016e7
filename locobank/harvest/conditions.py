"""Harvesting text-to-image models: what conditions a job (a prompt, a negative prompt, the
guidance; a seed when the image is the prompt's own sample; an edit prompt for a text-supervised
direction), the state each job starts from, and how its directions are found.

A pixel model's jobs have no condition and go through the plain LOCO path unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .. import core
from ..errors import InputError
from ..images import save_image
from ..models import LoadedModel, under

KEYS = ("prompt", "negative_prompt", "guidance", "seed", "edit_prompt", "edit_guidance")
EDIT_GUIDANCE = 4.0  # the T-LOCO reference's guidance of the edit prompt


def condition_of(row: dict, where: str) -> dict[str, Any] | None:
    """The condition a manifest row asks for (None: none), checked: text in the prompts, a
    finite guidance, a whole non-negative seed."""
    cond = {k: row[k] for k in KEYS if row.get(k) is not None}
    if not cond:
        return None
    for k in ("prompt", "negative_prompt", "edit_prompt"):
        if k in cond and not isinstance(cond[k], str):
            raise InputError(f"{where}: {k} must be text, not {cond[k]!r}")
    for k in ("guidance", "edit_guidance"):
        if k in cond and (isinstance(cond[k], bool) or not isinstance(cond[k], (int, float))
                          or not 0 < float(cond[k]) <= 50):
            raise InputError(f"{where}: {k} must be a number in (0, 50], not {cond[k]!r}")
    if "seed" in cond and (isinstance(cond["seed"], bool) or not isinstance(cond["seed"], int) or cond["seed"] < 0):
        raise InputError(f"{where}: seed must be a whole number >= 0, not {cond['seed']!r}")
    if "seed" in cond and "prompt" not in cond:
        raise InputError(f"{where}: a seed samples a prompt; give the row's prompt too")
    return cond


def resolved(model: LoadedModel, cond: dict | None) -> dict | None:
    """The condition with the model's defaults written in (the guidance; the edit guidance), so a
    job's identity says everything that changes it. A pixel model refuses a condition."""
    if cond is None:
        return None
    if model.family.cond is None:
        raise InputError(f"{model.model_id} is an unconditional {model.kind} model: its manifest rows take no "
                         f"prompt, seed or edit prompt")
    out = {"prompt": "", "negative_prompt": "", "guidance": model.settings.guidance, **cond}
    if "edit_prompt" in out:
        out.setdefault("edit_guidance", EDIT_GUIDANCE)
    out["guidance"] = float(out["guidance"])
    return out


def generate_images(model: LoadedModel, pairs: Sequence, steps: int) -> int:
    """Write the sample of each pair whose condition has a seed and whose image file is not there
    yet (the prompt's image, DDIM from the seed's noise); returns how many were written."""
    done: set[Path] = set()
    for p in pairs:
        cond = p.condition or {}
        if "seed" not in cond or p.image in done or Path(p.image).exists():
            continue
        m = under(model, cond)
        with torch.no_grad():
            img = core.generate(m, core.noise_for(m, [cond["seed"]]), steps)[0]
        Path(p.image).parent.mkdir(parents=True, exist_ok=True)
        save_image(img.clamp(-1, 1).cpu(), Path(p.image))
        done.add(p.image)
    return len(done)


def state_of(model: LoadedModel, cond: dict | None, image: torch.Tensor, t: core.EditTime, steps: int) -> torch.Tensor:
    """A job's state at the edit time: on the seed's own sampling trajectory for a prompt's
    sample, else the image DDIM-inverted under the job's prompt."""
    m = under(model, cond)
    if cond and "seed" in cond:
        return core.generate_to(m, core.noise_for(m, [cond["seed"]]), t, steps)[0]
    return core.invert(m, image[None], t, steps)[0]


def states_of(model: LoadedModel, ready: Sequence, ts: Sequence[core.EditTime], steps: int) -> list[torch.Tensor]:
    """:func:`state_of` for each (job, image, mask) of a batch, each distinct state computed once:
    jobs that differ only in their mask or edit prompt share the image's state."""
    done: dict[tuple, torch.Tensor] = {}
    out = []
    for (job, x, _), t in zip(ready, ts):
        cond = job.condition or {}
        key = (job.image_sha256, t) + tuple(cond.get(k) for k in ("prompt", "negative_prompt", "guidance", "seed"))
        if key not in done:
            done[key] = state_of(model, job.condition, x, t, steps)
        out.append(done[key])
    return out


def find_for(model: LoadedModel, cond: dict | None, x_t: torch.Tensor, t: core.EditTime, mask: torch.Tensor,
             params, start: core.Start | None = None) -> core.Directions:
    """A job's directions: text-supervised (``J^T delta`` towards the edit prompt) when its
    condition has an edit prompt, else the unsupervised LOCO basis, both under the job's prompt
    (from ``start``, when given: :func:`locobank.harvest.warm.warm_start`)."""
    m = under(model, cond)
    if cond and "edit_prompt" in cond:
        return core.find_supervised(m, under(model, cond, edit=True), x_t, t, mask, null_rank=params.null_rank, iters=params.iters,
                                    seed=params.seed)
    return core.find_directions(m, x_t, t, mask, rank=params.rank, null_rank=params.null_rank, iters=params.iters,
                                tol=params.tol, seed=params.seed, constrained=params.basis == "constrained", start=start)


def find_together(model: LoadedModel, ready: Sequence, xts: Sequence[torch.Tensor], ts: Sequence[core.EditTime],
                  params, starts=None) -> dict[int, core.Directions]:
    """The unsupervised jobs of a batch that share a state (one image, edit time and prompt; the
    projected basis), found together: one linearisation, and their blocks in the same batched
    model calls (:func:`locobank.core.find_many`). ``starts`` (:class:`~locobank.harvest.warm.Starts`)
    warm-starts them. Returns each grouped job's directions by job id; a job alone is left out."""
    groups: dict[tuple, list] = {}
    for (job, x, m), xt, t in zip(ready, xts, ts):
        cond = job.condition or {}
        if "edit_prompt" in cond or params.basis != "projected":
            continue
        key = (job.image_sha256, t.step) + tuple(cond.get(k) for k in ("prompt", "negative_prompt", "guidance", "seed"))
        groups.setdefault(key, []).append((job, x, m, xt, t))
    out: dict[int, core.Directions] = {}
    for items in (g for g in groups.values() if len(g) > 1):
        job0, _, _, xt, t = items[0]
        begin = [starts.start(j, x, m, t) if starts is not None else None for j, x, m, _, _ in items]
        found = core.find_many(under(model, job0.condition), xt, t, [m for _, _, m, _, _ in items], rank=params.rank,
                               null_rank=params.null_rank, iters=params.iters, tol=params.tol, seed=params.seed,
                               starts=begin)
        out.update({j.id: f for (j, *_), f in zip(items, found)})
    return out
