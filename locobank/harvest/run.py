"""``locobank harvest`` as one library call: load the model, discover the pairs, plan the run,
work its jobs (here or in a local pool) and say what happened."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..catalog.records import RunRecord
from ..errors import InputError
from ..progress import Progress, note, stage
from .estimate import Estimate, Pace, estimate
from .inputs import discover
from .worker import HarvestParams, Summary, failure_lines, plan_jobs, work


@dataclass
class HarvestRequest:
    """What to harvest and how; ``given`` holds the :class:`HarvestParams` the user set (None:
    the model's settings)."""

    model: str
    images: Path
    masks: Path | None = None
    labels: set[str] | None = None
    given: dict = field(default_factory=dict)
    workers: int = 1
    device: str | None = None
    batch: int = 4
    lease_seconds: float = 600.0
    max_attempts: int = 3
    retry_failed: bool = False
    plan_only: bool = False
    db_url: str | None = None
    warm_start: bool = False  # jobs start from the bases of those done before (harvest.warm); no faster measured
    together: bool = False  # a batch's jobs on one state go through the model together


@dataclass
class HarvestOutcome:
    """A run and its job counts before and after this call, and what the workers did."""

    run: RunRecord
    params: HarvestParams
    model_id: str
    fingerprint: str
    before: dict
    after: dict
    summary: Summary | None
    seconds: float = 0.0
    requeued: int | None = None  # failed jobs put back in the queue, when asked
    unmatched_labels: list[str] = field(default_factory=list)  # asked for, but no mask has them
    labels_found: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "b.png [mouth]: why", per failed job of the run
    # Running jobs when this call ended, by lease owner: (jobs, when its last lease ends).
    leased: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Some job of the run failed (``--retry-failed`` runs them again)."""
        return bool(self.after["failed"])

    @property
    def unfinished(self) -> bool:
        """Work was done here but jobs are left: leased by workers still alive elsewhere, or pending."""
        return self.summary is not None and bool(self.after["running"] or self.after["pending"])


def run_harvest(req: HarvestRequest, progress: Progress | None = None) -> HarvestOutcome:
    """Plan the run in the catalog (created or migrated as needed) and work it to the end."""
    from ..catalog import Catalog, resolve_url

    source, lm, params, pairs, unmatched = _inputs(req)
    url = resolve_url(req.db_url)
    with Catalog.open(url, upgrade=True) as cat:
        run, files = plan_jobs(cat, lm, pairs, params, progress=stage(progress, "planning", len(pairs)))
        requeued = cat.retry_failed(run.id) if req.retry_failed else None
        before = cat.job_counts(run.id)
        out = HarvestOutcome(run, params, lm.model_id, lm.fingerprint, before, before, None, requeued=requeued,
                             unmatched_labels=unmatched, labels_found=sorted({p.label for p in pairs}))
        if req.plan_only:
            return out
        start = time.perf_counter()
        update = stage(progress, "harvest", sum(before.values()))
        update(before["done"] + before["failed"])
        out.summary = _work(cat, lm, url, source, run.id, params, req, update)
        out.after = cat.job_counts(run.id)
        out.seconds = time.perf_counter() - start
        out.failures = failure_lines(cat.list_jobs(run.id, "failed"), files)
        out.leased = cat.lease_holders(run.id)
    return out


def _inputs(req: HarvestRequest) -> tuple:
    """The model (its source and the loaded model), the run's parameters, the pairs found and the
    labels asked for that no mask has."""
    from ..models import load_model
    from ..paths import resolve_model

    source = resolve_model(req.model)
    lm = load_model(source, device=req.device)
    params = HarvestParams.from_defaults(lm.settings, **req.given)
    pairs = discover(req.images, req.masks, req.labels)
    if not pairs:
        found = sorted({p.label for p in discover(req.images, req.masks, None)}) if req.labels else []
        raise InputError(f"no (image, mask) pairs found in {req.images}"
                         + (f" with labels {sorted(req.labels)} (labels there: {', '.join(found) or 'none'})"
                            if req.labels else ""))
    return source, lm, params, pairs, sorted(set(req.labels or ()) - {p.label for p in pairs})


def dry_run(req: HarvestRequest) -> Estimate:
    """What ``req`` would cost, in forward-pass equivalents and in seconds on this machine, before
    any work: nothing is written, and the catalog is read (when it exists) only for the rounds
    its earlier jobs of this model took."""
    _, lm, params, pairs, _ = _inputs(req)
    rounds = _recorded_rounds(req.db_url, lm.fingerprint, params.rank, params.null_rank)
    if rounds is None:
        return estimate(lm, pairs, params)
    return estimate(lm, pairs, params, rounds=rounds[0], rounds_from=f"{rounds[1]} earlier jobs")


def _recorded_rounds(db_url: str | None, fingerprint: str, rank: int, null_rank: int) -> tuple[float, int] | None:
    """The mean rounds of the catalog's finished jobs of this model whose bases grew as these ranks'
    would now (the same Krylov block widths), and how many; None without."""
    from ..catalog import Catalog, resolve_url
    from ..loco import jacobian
    from ..errors import LocobankError

    try:
        with Catalog.open(resolve_url(db_url), read_only=True) as cat:
            diags = {d.job_id: d.diagnostics for d in cat.list_directions(fingerprint)}
    except (LocobankError, OSError):
        return None
    widths = jacobian.basis_widths(rank, null_rank)
    rounds = [max(d["iterations"], d.get("null_iterations", 0)) for d in diags.values()
              if "iterations" in d and d.get("krylov_widths") == widths]  # older jobs did not record them
    return (sum(rounds) / len(rounds), len(rounds)) if rounds else None


def _work(cat, lm, url: str, source: str, run_id: int, params: HarvestParams, req: HarvestRequest, update) -> Summary:
    """The jobs worked in this process, or by ``req.workers`` local processes."""
    counts = cat.job_counts(run_id)
    pace = Pace(total=counts["pending"] + counts["running"])

    def paced(jobs: int, directions: int) -> None:
        update(jobs)
        pace.add(jobs, directions)
        note(update, pace.text())

    if req.workers == 1:
        return work(cat, lm, run_id, params, batch=req.batch, lease_seconds=req.lease_seconds,
                    max_attempts=req.max_attempts, on_job=lambda kind, n: paced(1, n), warm_start=req.warm_start,
                    together=req.together)
    from .pool import run_pool

    seen = {"n": None}

    def poll() -> None:
        c = cat.job_counts(run_id)
        n = c["done"] + c["failed"]
        if seen["n"] is not None and n > seen["n"]:
            paced(n - seen["n"], (n - seen["n"]) * params.rank)  # the pool counts jobs: rank directions each
        seen["n"] = n

    poll()
    return run_pool(url, source, run_id, params, req.workers, device=req.device, batch=req.batch,
                    lease_seconds=req.lease_seconds, max_attempts=req.max_attempts, poll=poll,
                    options={"warm_start": req.warm_start, "together": req.together})
