"""Warm starts for harvest jobs: the bases a job's subspace iterations begin from, built from the
catalog's directions for the same model, mask label and edit time, and from the jobs a worker
has just finished (:class:`Recent`), as :func:`locobank.core.warm.start_from` carries them onto
this image's mask. Convergence is judged as from a random start, so only the iterations change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import core
from ..apply.prepare import source_part
from ..core.warm import part_of, start_from
from ..loco.register import PartPrint
from ..models import LoadedModel

KEEP = 8  # bases kept per (mask label, edit time), catalog and recent jobs alike


@dataclass
class Recent:
    """The bases of the jobs a worker finished last, per (mask label, edit timestep), newest last."""

    keep: int = KEEP
    bases: dict = field(default_factory=dict)

    def add(self, label: str, t: int, found: core.Directions, image: Tensor, mask: Tensor) -> None:
        """Remember a finished job's converged bases and the part they were found on."""
        if found.basis is None or found.basis.edit is None:
            return
        q = self.bases.setdefault((label, int(t)), deque(maxlen=self.keep))
        q.append((found.basis, part_of(image, mask)))

    def of(self, label: str, t: int) -> list[tuple[core.Start, PartPrint]]:
        """The remembered bases for this label and edit time."""
        return list(self.bases.get((label, int(t)), ()))


def catalog_bases(catalog, model: LoadedModel, mask_label: str, t_edit: int, *,
                  limit: int = KEEP) -> list[tuple[Tensor, PartPrint | None]]:
    """The newest catalog edit bases of ``model`` for ``mask_label`` at timestep ``t_edit``: per
    job (at most ``limit``), its stored directions (rows) and the part they were found on. Only
    the newest directions are read (16 per job asked for), not the whole catalog."""
    recs = [r for r in catalog.list_directions(model.fingerprint, mask_label=mask_label, newest_first=True,
                                               limit=16 * limit)
            if r.t_edit == int(t_edit) and not (r.condition or {}).get("edit_prompt")]
    jobs: dict[int, list] = {}
    for r in recs:
        if r.job_id in jobs or len(jobs) < limit:
            jobs.setdefault(r.job_id, []).append(r)
    out = []
    for rows in jobs.values():
        vecs = torch.stack([catalog.load_vector(r.id, expected_fingerprint=model.fingerprint).float() for r in rows])
        out.append((vecs, source_part(rows[0], model.resolution, model.channels)))
    return out


def warm_start(catalog, model: LoadedModel, mask_label: str, t_edit: int, mask: Tensor, image: Tensor, *,
               recent: Recent | None = None, known: list | None = None, rank: int | None = None,
               null_rank: int | None = None) -> core.Start | None:
    """The start of a job on ``image`` (clean) and ``mask``: the edit bases of the catalog (None:
    none) and of ``recent`` jobs for this label and edit time registered onto the mask, and the
    recent jobs' null bases, each cut to its top principal directions (:func:`start_from`); None when
    nothing is known yet (the job starts from random vectors). ``known`` stands for the
    catalog's bases when a caller has read them already (:func:`catalog_bases`)."""
    if known is None:
        known = catalog_bases(catalog, model, mask_label, t_edit) if catalog is not None else []
    mine = recent.of(mask_label, t_edit) if recent is not None else []
    edit = [v for v, _ in known] + [b.edit for b, _ in mine]
    if not edit:
        return None
    nulls = [b.null for b, _ in mine if b.null is not None]
    return start_from(model, mask, edit=edit, sources=[p for _, p in known] + [p for _, p in mine], image=image,
                      null=nulls, rank=rank, null_rank=null_rank)


class Starts:
    """Warm starts for one worker: the catalog's bases, read once per (mask label, edit time),
    and the bases of the jobs it finished since (:mod:`locobank.harvest.warm`)."""

    def __init__(self, catalog, model: LoadedModel, params):
        self.model, self.params, self.recent, self.known = model, params, Recent(), {}
        self.catalog = catalog

    def start(self, job, x: torch.Tensor, m: torch.Tensor, t: core.EditTime) -> core.Start | None:
        """Where this job starts (None: random), for unsupervised jobs of the projected basis."""
        if (job.condition or {}).get("edit_prompt") or self.params.basis != "projected":
            return None
        key = (job.mask_label, t.step)
        if key not in self.known:
            self.known[key] = catalog_bases(self.catalog, self.model, job.mask_label, t.step)
        return warm_start(None, self.model, job.mask_label, t.step, m, x, recent=self.recent,
                          known=self.known[key], rank=self.params.rank, null_rank=self.params.null_rank)


__all__ = ["KEEP", "Recent", "Starts", "catalog_bases", "warm_start"]
