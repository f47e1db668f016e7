"""Planning a harvest run and the worker loop that claims jobs, finds directions and commits them.

A run is (model, the parameters that change what is found); a job is (run, image bytes, mask
bytes). Jobs are leased, so a worker that dies leaves its jobs to be picked up again: at once by a
worker on the same host (the dead process is seen), else when the lease expires. Each finished job
is committed in one transaction with all its directions: repeating a command does no work twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import core
from ..catalog.records import JobRecord, NewDirection, RunRecord
from ..errors import InputError, LocobankError
from ..files import file_sha256
from ..images import check_mask, load_image, load_mask, pack_part
from ..models import LoadedModel, under
from ..settings import DEFAULT_NULL_RANK, DEFAULT_RANK, DEFAULT_STEPS, DEFAULT_T_EDIT, JACOBIAN_AT, ModelSettings
from ..tally import Tally
from . import conditions, warm
from .inputs import Pair
from .leases import dead_owners, default_owner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HarvestParams:
    """Everything that changes what a harvest finds; two runs with equal params are the same run."""

    rank: int = DEFAULT_RANK
    null_rank: int = DEFAULT_NULL_RANK
    t_edit: float = DEFAULT_T_EDIT
    steps: int = DEFAULT_STEPS
    iters: int = 50
    tol: float = 1e-3
    seed: int = 0
    resize: bool = False
    basis: str = "projected"  # or "constrained": see core.find_directions
    # Edit times for particular mask labels, overriding t_edit: ((label, fraction), ...).
    t_edit_by_label: tuple[tuple[str, float], ...] = ()
    # The state whose Jacobian is taken: "inverted" (DDIM inversion of the image, as LOCO does for
    # real images) or "noised" (the image noised to t_edit with noise seeded by the image's hash).
    # Either way, the directions are applied to DDIM-inverted states.
    jacobian_at: str = "inverted"

    def __post_init__(self) -> None:
        if self.basis not in ("projected", "constrained"):
            raise InputError(f"basis must be 'projected' or 'constrained', not {self.basis!r}")
        if self.jacobian_at not in JACOBIAN_AT:
            raise InputError(f"jacobian_at must be one of {', '.join(JACOBIAN_AT)}, not {self.jacobian_at!r}")
        by = self.t_edit_by_label
        pairs = by.items() if isinstance(by, dict) else by
        try:
            clean = tuple(sorted((str(k), float(v)) for k, v in pairs))
        except (TypeError, ValueError) as e:
            raise InputError(f"t_edit_by_label must map mask labels to fractions of T: {e}") from None
        for label, t in clean:
            if not 0 < t < 1:
                raise InputError(f"t_edit for label {label!r} must be a fraction of T strictly between 0 and 1, not {t:g}")
        object.__setattr__(self, "t_edit_by_label", clean)

    @classmethod
    def from_defaults(cls, settings: "ModelSettings | dict", **given) -> "HarvestParams":
        """Values given (None = not given), else the model's settings (a ``locobank.json`` as
        :class:`~locobank.settings.ModelSettings` or as its dict).

        A t_edit given without per-label times also replaces the model's per-label times."""
        st = settings if isinstance(settings, ModelSettings) else ModelSettings.from_dict(settings)
        vals = {k: v for k, v in given.items() if v is not None}
        if "t_edit" in vals and "t_edit_by_label" not in vals:
            vals["t_edit_by_label"] = {}
        for key in ("rank", "null_rank", "t_edit", "steps", "basis", "t_edit_by_label", "jacobian_at"):
            if key not in vals:
                vals[key] = getattr(st, key)
        return cls(**vals)

    def t_for(self, label: str) -> float:
        """The edit time (fraction of T) used for masks with this label."""
        return dict(self.t_edit_by_label).get(label, self.t_edit)

    def to_dict(self) -> dict:
        d = asdict(self)
        # Options left at their default are omitted, so runs planned before they existed keep their identity.
        if d["basis"] == "projected":
            del d["basis"]
        if d["jacobian_at"] == "inverted":
            del d["jacobian_at"]
        if d["t_edit_by_label"]:
            d["t_edit_by_label"] = dict(d["t_edit_by_label"])
        else:
            del d["t_edit_by_label"]
        return d


@dataclass
class Summary(Tally):
    """Counts for the end-of-run message and the exit code."""

    done: int = 0
    directions: int = 0
    find_seconds: float = 0.0  # finding directions: states at the edit time and the LOCO basis (no catalog, no I/O)
    crashes: list[str] = field(default_factory=list)  # workers that died or stopped without reporting
    last: int = 0  # directions of the last job done


def _peek_image(path: Path) -> tuple[int, int, int]:
    """Width, height and channels from the header; zeros when the file can't be read (the job fails later)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[0], im.size[1], len(im.getbands())
    except Exception:  # any unreadable file becomes a failed job with its reason, not a crash here
        return 0, 0, 0


def _mask_area(path: Path) -> int:
    try:
        return int(load_mask(path).sum())
    except LocobankError:
        return 0


JobFiles = dict[tuple[int, int], list[Pair]]  # (image id, mask id) -> the files a job stands for


def plan(catalog, model: LoadedModel, pairs: Sequence[Pair], params: HarvestParams,
         progress: Callable[[int], None] | None = None) -> RunRecord:
    """Register the model, images and masks, get or create the run, and enqueue its jobs."""
    return plan_jobs(catalog, model, pairs, params, progress)[0]


def plan_jobs(catalog, model: LoadedModel, pairs: Sequence[Pair], params: HarvestParams,
              progress: Callable[[int], None] | None = None) -> tuple[RunRecord, JobFiles]:
    """``plan``, and which files each job stands for: images and masks are keyed by their bytes,
    so copies of one file are one job, recorded under the first path seen; reports name them all."""
    mrec = catalog.get_or_create_model(model.model_id, fingerprint=model.fingerprint, resolution=model.resolution,
                                       channels=model.channels, kind=model.kind, revision=model.revision,
                                       config={"source": model.source, "unet": dict(model.unet.config)})
    run = catalog.get_or_create_run(mrec, {"model": model.fingerprint, **params.to_dict()})
    images: dict[Path, int] = {}
    files: JobFiles = {}
    queued: list[tuple] = []  # (image id, mask id, condition): enqueue_jobs drops repeats
    conditions.generate_images(model, pairs, params.steps)  # a prompt's samples, before their files are read
    for p in pairs:
        cond = conditions.resolved(model, p.condition)
        if p.image not in images:
            w, h, c = _peek_image(p.image)
            # stored absolute, so the file is found again from any folder (index build, apply --mask)
            uri = str(Path(p.image).resolve())
            images[p.image] = catalog.add_image(uri, file_sha256(p.image), width=w, height=h, channels=c).id
        m = catalog.add_mask(images[p.image], p.label, file_sha256(p.mask), area=_mask_area(p.mask),
                             uri=str(Path(p.mask).resolve()))
        files.setdefault((images[p.image], m.id), []).append(p)
        queued.append((images[p.image], m.id, cond))
        if progress is not None:
            progress(1)
    catalog.enqueue_jobs(run.id, queued)
    return run, files


def failure_lines(jobs: Sequence[JobRecord], files: JobFiles) -> list[str]:
    """``b.png [mouth]: why`` per failed job, naming the files of this call the job stands for (a
    job of identical bytes stands for several), else the files the catalog recorded for it."""
    lines = []
    for job in jobs:
        pairs = files.get((job.image_id, job.mask_id), [])
        names = sorted({p.image.name for p in pairs}) or [Path(job.image_uri).name]
        what = f"{', '.join(names)} [{job.mask_label}]"
        if job.mask_uri and Path(job.mask_uri).name not in {p.mask.name for p in pairs}:
            what += f" (mask {Path(job.mask_uri).name})"
        if Path(job.image_uri).name not in names:
            what += f" (same bytes as {Path(job.image_uri).name})"
        lines.append(f"{what}: {job.error}")
    return lines


def _prepare(job: JobRecord, model: LoadedModel, params: HarvestParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Load and check one job's image and mask; any problem is an InputError with the reason."""
    path = Path(job.image_uri)
    if not path.exists():
        raise InputError(f"{path}: the image is gone")
    if file_sha256(path) != job.image_sha256:
        raise InputError(f"{path}: the file changed since it was queued")
    x = load_image(path, model.resolution, resize=params.resize, channels=model.channels)
    if job.mask_uri is None:
        raise InputError("the job has no mask file")
    m = load_mask(Path(job.mask_uri), model.resolution, resize=params.resize)
    m = check_mask(m, (model.resolution, model.resolution), need_outside=params.null_rank > 0,
                   name=f"mask {Path(job.mask_uri).name}")
    return x, m


def _reason(e: BaseException) -> str:
    if isinstance(e, LocobankError):
        return str(e)
    return f"{type(e).__name__}: {e}"


def noise_seed(params: HarvestParams, image_sha256: str) -> int:
    """The seed of an image's noise for ``jacobian_at="noised"``: the same for every mask of the
    image, every worker and every batch."""
    return int(hashlib.sha256(f"{params.seed}:{image_sha256}".encode()).hexdigest()[:15], 16)


def edit_times(model: LoadedModel, params: HarvestParams) -> dict[str | None, core.EditTime]:
    """Every edit time of a run, resolved once: the default (key None) and each label's."""
    total = model.denoiser.num_timesteps
    times: dict[str | None, core.EditTime] = {None: core.EditTime.of(total, float(params.t_edit))}
    times.update({label: core.EditTime.of(total, float(f)) for label, f in params.t_edit_by_label})
    return times


def _states_by_time(model: LoadedModel, times: dict, ready: list, params: HarvestParams) -> tuple[list, list]:
    """The states of a claimed batch at their edit times, one batched pass per distinct edit
    time (DDIM inversion, or seeded noise with ``jacobian_at="noised"``); per job: x_t and t."""
    ts = [times.get(job.mask_label, times[None]) for job, _, _ in ready]
    xts: list = [None] * len(ready)
    if any(job.condition for job, _, _ in ready):  # text-to-image: each job under its own prompt
        return conditions.states_of(model, ready, ts, params.steps), ts
    for t in sorted(set(ts)):
        idx = [i for i, ti in enumerate(ts) if ti == t]
        first = {}  # an image's jobs (its masks) share its state: each image brought to t once
        for i in idx:
            first.setdefault(ready[i][0].image_sha256, i)
        x = torch.stack([ready[i][1] for i in first.values()])
        if params.jacobian_at == "noised":
            out = core.noise_to(model, x, t, [noise_seed(params, sha) for sha in first])
        else:
            out = core.invert(model, x, t, params.steps)
        state = dict(zip(first, out))
        for i in idx:
            xts[i] = state[ready[i][0].image_sha256]
    return xts, ts


def work(catalog, model: LoadedModel, run_id: int, params: HarvestParams, *, owner: str | None = None,
         batch: int = 4, lease_seconds: float = 600.0, max_attempts: int = 3,
         on_job: Callable[[str, int], None] | None = None, warm_start: bool = False,
         together: bool = False) -> Summary:
    """Claim and run jobs of ``run_id`` until none is left; returns what this worker did.

    Images of a claimed batch are brought to their edit time together (one batched DDIM
    inversion, or seeded noise with ``jacobian_at="noised"``); then each job's
    directions are found and committed with its job in one transaction. With ``warm_start`` each
    unsupervised job starts from the catalog's bases for its mask label and edit time and from
    the jobs this worker finished last (:func:`locobank.harvest.warm.warm_start`; off by default:
    on the toy models other faces' bases start no closer than random vectors, and in small Krylov
    blocks warm jobs ran 0.73-0.99 times as fast as cold ones, docs/performance.md). Each job's
    diagnostics record its cost in forward-pass equivalents (``fpe``: one forward pass of the
    model, timed on the batch's first state, is the unit). With ``together``, the batch's jobs on
    one state go through the model together (:func:`conditions.find_together`).
    """
    owner = owner or default_owner()
    summary = Summary()
    start = time.perf_counter()
    times = edit_times(model, params)  # a bad edit time stops here, before any job is claimed
    starts = warm.Starts(catalog, model, params) if warm_start else None
    while True:
        jobs = _claim(catalog, run_id, owner, batch, lease_seconds, max_attempts)
        if not jobs:
            break
        ready: list[tuple[JobRecord, torch.Tensor, torch.Tensor]] = []
        for job in jobs:
            try:
                x, m = _prepare(job, model, params)
                ready.append((job, x, m))
            except Exception as e:  # record every bad input and go on with the rest
                _fail(catalog, job, owner, _reason(e), summary, on_job)
        if not ready:
            continue
        t0 = time.perf_counter()
        try:
            xts, ts = _states_by_time(model, times, ready, params)
            unit = core.forward_seconds(under(model, ready[0][0].condition), xts[0], ts[0])
        except Exception as e:
            for job, _, _ in ready:
                _fail(catalog, job, owner, _reason(e), summary, on_job)
            continue
        state_seconds = (time.perf_counter() - t0) / len(ready)
        grouped = _together(model, ready, xts, ts, params, starts) if together else {}
        summary.find_seconds += time.perf_counter() - t0
        for (job, x, m), xt, t in zip(ready, xts, ts):
            try:
                _run_job(catalog, model, params, owner, (job, x, m), xt, t, starts, summary,
                         {"forward_seconds": unit, "state_fpe": core.fpe(state_seconds, unit)}, grouped.get(job.id))
                if on_job is not None:
                    on_job("done", summary.last)
            except Exception as e:
                _fail(catalog, job, owner, _reason(e), summary, on_job)
            _renew_rest(catalog, ready, job, owner, lease_seconds)
    summary.seconds = time.perf_counter() - start
    return summary


def _together(model: LoadedModel, ready, xts, ts, params: HarvestParams, starts) -> dict:
    """The batch's jobs that share a state, found together; on any error, none (each job alone)."""
    try:
        return conditions.find_together(model, ready, xts, ts, params, starts)
    except Exception as e:  # each job then runs alone and fails, if it does, with its own reason
        log.warning("finding jobs together failed (%s); running them one by one", _reason(e))
        return {}


def _run_job(catalog, model: LoadedModel, params: HarvestParams, owner: str, item: tuple, xt: torch.Tensor,
             t: core.EditTime, starts: warm.Starts | None, summary: Summary, cost: dict,
             found: core.Directions | None = None) -> None:
    """Find one job's directions (warm-started where ``starts`` knows something; ``found`` when
    found together with others already) and commit them."""
    job, x, m = item
    if found is None:
        t1 = time.perf_counter()
        start = starts.start(job, x, m, t) if starts is not None else None
        found = conditions.find_for(model, job.condition, xt, t, m, params, start=start)
        seconds = time.perf_counter() - t1
        summary.find_seconds += seconds
    else:
        seconds = found.diagnostics["seconds"]  # its share of the group's
    found.diagnostics.update(cost, fpe=core.fpe(seconds, cost["forward_seconds"]))
    new = _new_directions(found, t, params, x, m)
    catalog.complete_job(job.id, owner, new)
    if starts is not None and not (job.condition or {}).get("edit_prompt"):
        starts.recent.add(job.mask_label, t.step, found, x, m)
    summary.done += 1
    summary.directions += len(new)
    summary.last = len(new)


def _claim(catalog, run_id: int, owner: str, n: int, lease_seconds: float, max_attempts: int) -> list[JobRecord]:
    """The next batch, taking back at once the jobs of workers whose process is gone from this host."""
    gone = dead_owners(catalog.lease_holders(run_id))
    if gone:
        log.info("taking back the jobs of %s: no such process on this host", ", ".join(sorted(gone)))
    return catalog.claim_jobs(run_id, owner, n=n, lease_seconds=lease_seconds, max_attempts=max_attempts,
                              dead_owners=gone)


def _new_directions(found: core.Directions, t: core.EditTime, params: HarvestParams, image: torch.Tensor,
                    mask: torch.Tensor) -> list[NewDirection]:
    """A job's found directions as catalog rows, each with its provenance and diagnostics."""
    return [NewDirection(rank_index=i, singular_value=float(found.singular_values[i]),
                         vector=found.vectors[i].detach().cpu().float().contiguous(), t_edit=t.step,
                         t_edit_frac=t.fraction, null_rank=params.null_rank,
                         diagnostics=_direction_diagnostics(found.diagnostics, i, image, mask))
            for i in range(len(found))]


def _direction_diagnostics(diag: dict, i: int, image: torch.Tensor, mask: torch.Tensor) -> dict:
    """Direction ``i``'s share of the job's diagnostics, with the part it was found on (the mask
    at the model's resolution and the part's profiles), so ``apply --mask`` can register it on
    another image."""
    out = {k: v for k, v in diag.items() if k != "outside_residual"}
    if "outside_residual" in diag:  # per direction (a text-supervised job has none)
        out["outside_residual"] = diag["outside_residual"][i]
    out["source_part"] = pack_part(image, mask)
    return out


def _renew_rest(catalog, ready, current: JobRecord, owner: str, lease_seconds: float) -> None:
    """Extend the leases of this batch's jobs still waiting, so a slow batch keeps them."""
    after = False
    for job, _, _ in ready:
        if after:
            try:
                catalog.renew_lease(job.id, owner, lease_seconds)
            except LocobankError:
                pass  # lost already; complete_job will refuse and the job is someone else's
        after = after or job.id == current.id


def _fail(catalog, job: JobRecord, owner: str, reason: str, summary: Summary, on_job) -> None:
    log.warning("job %d (%s, mask %s) failed: %s", job.id, job.image_uri, job.mask_uri, reason)
    try:
        catalog.fail_job(job.id, owner, reason)
    except LocobankError as e:  # lease lost meanwhile: someone else owns the job now
        log.warning("could not record the failure of job %d: %s", job.id, e)
        return
    summary.fail(f"{Path(job.image_uri).name} [{job.mask_label}] (mask {Path(job.mask_uri or '-').name}): {reason}")
    if on_job is not None:
        on_job("failed", 0)


