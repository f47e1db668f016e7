"""The job queue: enqueue (image, mask) pairs, lease them to workers, and record each outcome.

Postgres claims with ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite serialises writers with
``BEGIN IMMEDIATE``. A running job whose lease expired, or whose owner the claimer knows is dead,
can be claimed again, and the worker that lost it can no longer finish it. Runs are keyed here too
(``_ensure_run``): by model and the parameters that change what is found, so the same work maps to
the same jobs and is stored once.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from locobank.catalog.base import CatalogBase
from locobank import __version__
from locobank.catalog.canonical import canonical_json, params_hash, run_identity
from locobank.catalog.records import JobRecord, NewDirection
from locobank.catalog.rows import job_record
from locobank.catalog.safetensors_io import encode_vector, sha256_hex, to_raw
from locobank.catalog.schema import JOB_STATUSES, Direction, HarvestRun, Image, Job, Mask, Model, Vector
from locobank.errors import InputError, LeaseLost, NotFound

MAX_ERROR_CHARS = 4000
_CHUNK = 500


class JobQueue(CatalogBase):
    """Job methods of ``Catalog``."""

    def _ensure_run(
        self, s: Session, model_db_id: int, params: dict[str, Any], now: datetime, version: str = __version__
    ) -> HarvestRun:
        """The run of (model, identifying params), made on first sight: the one place runs are keyed.

        ``params`` lose their input options (``run_identity``), so ``--resize`` continues the same run;
        a run recorded before that rule, whose params still hold them, is found and continued too.
        """
        params = json.loads(canonical_json(run_identity(params)))
        key = params_hash(params)
        same = s.scalars(
            select(HarvestRun).where(HarvestRun.model_id == model_db_id, HarvestRun.params_hash == key)
        ).one_or_none()
        if same is not None:
            return same
        for old in s.scalars(select(HarvestRun).where(HarvestRun.model_id == model_db_id).order_by(HarvestRun.id)):
            if params_hash(run_identity(old.params)) == key:
                return old
        values = dict(model_id=model_db_id, params=params, params_hash=key, locobank_version=version, created_at=now)
        return self._ensure(s, HarvestRun, values, ["model_id", "params_hash"])

    def enqueue_jobs(self, run_id: int, pairs: Iterable[tuple]) -> int:
        """Add (image_id, mask_id) jobs to a run, or (image_id, mask_id, condition) for text-to-image
        models; existing ones are skipped. Returns how many are new."""
        conds: dict[str, dict | None] = {}  # condition hash -> condition
        keys = set()
        for p in pairs:
            cond = p[2] if len(p) > 2 else None
            h = condition_hash(cond)
            conds[h] = cond
            keys.add((int(p[0]), int(p[1]), h))
        wanted = sorted(keys)  # sorted: concurrent enqueuers lock in one order
        new = 0
        with self._tx(write=True) as s:
            if s.get(HarvestRun, run_id) is None:
                raise NotFound(f"no harvest run {run_id} in the catalog")
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                owners = dict(s.execute(select(Mask.id, Mask.image_id).where(Mask.id.in_({m for _, m, _ in chunk}))).all())
                for image_id, mask_id, _ in chunk:
                    if owners.get(mask_id) != image_id:
                        raise InputError(f"mask {mask_id} does not belong to image {image_id} (or does not exist)")
                rows = [dict(run_id=run_id, image_id=i, mask_id=m, condition=conds[h], condition_hash=h,
                             status="pending", attempts=0) for i, m, h in chunk]
                stmt = (
                    self._insert(Job)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["run_id", "image_id", "mask_id", "condition_hash"])
                )
                new += len(s.execute(stmt.returning(Job.id)).all())
        return new

    def _job_records(self, s: Session, where: Any) -> list[JobRecord]:
        """Jobs with their image and mask locations, in id order."""
        rows = s.execute(
            select(Job, Image.uri, Image.sha256, Mask.label, Mask.uri, Mask.sha256)
            .join(Image, Job.image_id == Image.id)
            .join(Mask, Job.mask_id == Mask.id)
            .where(where)
            .order_by(Job.id)
        ).all()
        return [job_record(*row) for row in rows]

    def claim_jobs(
        self,
        run_id: int,
        owner: str,
        n: int = 1,
        lease_seconds: float = 600.0,
        *,
        max_attempts: int | None = None,
        dead_owners: Collection[str] = (),
    ) -> list[JobRecord]:
        """Lease up to ``n`` pending (or lease-expired) jobs to ``owner``; no two live owners share a job.

        Jobs leased by ``dead_owners`` (workers the caller knows are gone, e.g. a dead process on this
        host) are taken back at once, as if their leases had expired. With ``max_attempts``, a job
        whose lease was lost that many times (its worker keeps dying on it) is marked failed instead
        of handed out again.
        """
        if n < 1:
            return []
        with self._tx(write=True) as s:
            now = self._now(s)
            lost = Job.lease_expires_at < now
            if dead_owners:
                lost = or_(lost, Job.lease_owner.in_(sorted(set(dead_owners))))
            expired = and_(Job.status == "running", lost)
            if max_attempts is not None:
                s.execute(
                    update(Job)
                    .where(Job.run_id == run_id, expired, Job.attempts >= max_attempts)
                    .values(
                        status="failed",
                        finished_at=now,
                        lease_expires_at=None,
                        error=f"gave up after {max_attempts} attempts: the worker lost its lease each time",
                    )
                )
            ids = s.scalars(
                select(Job.id)
                .where(Job.run_id == run_id, or_(Job.status == "pending", expired))
                .order_by(Job.id)
                .limit(n)
                .with_for_update(skip_locked=True)  # Postgres; SQLite's BEGIN IMMEDIATE already serialises
            ).all()
            if not ids:
                return []
            s.execute(
                update(Job)
                .where(Job.id.in_(ids))
                .values(
                    status="running",
                    lease_owner=owner,
                    attempts=Job.attempts + 1,
                    started_at=now,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    finished_at=None,
                )
            )
            return self._job_records(s, Job.id.in_(ids))

    def lease_holders(self, run_id: int) -> dict[str, tuple[int, datetime | None]]:
        """Who holds the running jobs of a run: ``{owner: (jobs, when the last of its leases ends)}``."""
        with self._tx() as s:
            rows = s.execute(
                select(Job.lease_owner, func.count(), func.max(Job.lease_expires_at))
                .where(Job.run_id == run_id, Job.status == "running")
                .group_by(Job.lease_owner)
                .order_by(Job.lease_owner)
            ).all()
        return {str(owner): (int(count), until) for owner, count, until in rows}

    def _locked_job(self, s: Session, job_id: int) -> Job:
        """The job row, locked until the transaction ends."""
        job = s.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
        if job is None:
            raise NotFound(f"no job {job_id} in the catalog")
        return job

    @staticmethod
    def _require_lease(job: Job, owner: str) -> None:
        """Refuse to act on a job someone else now holds (its lease expired and was claimed again)."""
        if job.status != "running" or job.lease_owner != owner:
            holder = f"is {job.status}" + (f", held by {job.lease_owner}" if job.lease_owner else "")
            raise LeaseLost(f"job {job.id} {holder}; {owner} no longer holds its lease")

    def renew_lease(self, job_id: int, owner: str, lease_seconds: float = 600.0) -> datetime:
        """Extend a lease during long work, so the job is not handed to another worker."""
        with self._tx(write=True) as s:
            job = self._locked_job(s, job_id)
            self._require_lease(job, owner)
            job.lease_expires_at = self._now(s) + timedelta(seconds=lease_seconds)
            return job.lease_expires_at

    def release_job(self, job_id: int, owner: str) -> None:
        """Hand a claimed job back untouched (clean shutdown), without waiting for its lease to expire."""
        with self._tx(write=True) as s:
            job = self._locked_job(s, job_id)
            self._require_lease(job, owner)
            job.status, job.lease_owner, job.lease_expires_at = "pending", None, None
            job.attempts = max(job.attempts - 1, 0)

    def complete_job(self, job_id: int, owner: str, directions: Sequence[NewDirection]) -> list[int]:
        """Store a job's directions and vectors and mark it done, all in one transaction.

        Safe to repeat: a second call by the same owner returns the same ids and writes nothing.
        Raises ``LeaseLost`` if another worker holds (or finished) the job. A worker whose lease ran
        out may still finish if nobody has claimed the job since: it is still the only owner.
        """
        ranks = [d.rank_index for d in directions]
        if len(set(ranks)) != len(ranks):
            raise InputError(f"job {job_id}: repeated rank_index in {ranks}")
        fingerprint = self._job_fingerprint(job_id)
        # Encode outside the transaction: the SQLite write lock is held only for the inserts.
        encoded = []
        for d in directions:
            raw, norm = to_raw(d.vector)
            blob = encode_vector(raw, fingerprint)
            encoded.append((d, raw, norm, blob, sha256_hex(blob)))
        with self._tx(write=True) as s:
            job = self._locked_job(s, job_id)
            if job.status == "done" and job.lease_owner == owner:
                return self._job_direction_ids(s, job_id)
            self._require_lease(job, owner)
            now = self._now(s)
            for *_, blob, sha in sorted(encoded, key=lambda e: e[4]):  # one lock order for every writer
                s.execute(
                    self._insert(Vector)
                    .values(sha256=sha, nbytes=len(blob), data=blob, created_at=now)
                    .on_conflict_do_nothing(index_elements=["sha256"])
                )
            model_db_id = s.scalar(select(HarvestRun.model_id).where(HarvestRun.id == job.run_id))
            for d, raw, norm, _blob, sha in encoded:
                s.execute(
                    self._insert(Direction)
                    .values(
                        job_id=job_id,
                        model_id=model_db_id,
                        rank_index=int(d.rank_index),
                        singular_value=float(d.singular_value),
                        t_edit=int(d.t_edit),
                        t_edit_frac=float(d.t_edit_frac),
                        null_rank=int(d.null_rank),
                        vector_sha256=sha,
                        norm=norm,
                        shape=list(raw.shape),
                        diagnostics=json.loads(canonical_json(d.diagnostics)),
                        created_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["job_id", "rank_index"])
                )
            job.status, job.finished_at, job.lease_expires_at, job.error = "done", now, None, None
            return self._job_direction_ids(s, job_id)

    def _job_fingerprint(self, job_id: int) -> str:
        """The model fingerprint a job's vectors are stamped with."""
        with self._tx() as s:
            row = s.execute(
                select(Job.run_id, Model.fingerprint)
                .join(HarvestRun, Job.run_id == HarvestRun.id)
                .join(Model, HarvestRun.model_id == Model.id)
                .where(Job.id == job_id)
            ).one_or_none()
        if row is None:
            raise NotFound(f"no job {job_id} in the catalog")
        return row[1]

    @staticmethod
    def _job_direction_ids(s: Session, job_id: int) -> list[int]:
        """A job's direction ids in rank order: what ``complete_job`` returns, first time or again."""
        return list(s.scalars(select(Direction.id).where(Direction.job_id == job_id).order_by(Direction.rank_index)))

    def fail_job(self, job_id: int, owner: str, error: str) -> None:
        """Record why a job failed, so the run can go on and ``retry_failed`` can pick it up later."""
        with self._tx(write=True) as s:
            job = self._locked_job(s, job_id)
            if not (job.status == "failed" and job.lease_owner == owner):  # repeating a failure is fine
                self._require_lease(job, owner)
            job.status, job.error = "failed", str(error)[:MAX_ERROR_CHARS]
            job.finished_at, job.lease_expires_at = self._now(s), None

    def retry_failed(self, run_id: int | None = None) -> int:
        """Put failed jobs (of one run, or all) back to pending; returns how many."""
        with self._tx(write=True) as s:
            stmt = update(Job).where(Job.status == "failed")
            if run_id is not None:
                stmt = stmt.where(Job.run_id == run_id)
            return s.execute(stmt.values(status="pending", lease_owner=None, lease_expires_at=None)).rowcount

    def get_job(self, job_id: int) -> JobRecord:
        """A job by id."""
        with self._tx() as s:
            jobs = self._job_records(s, Job.id == job_id)
        if not jobs:
            raise NotFound(f"no job {job_id} in the catalog")
        return jobs[0]

    def list_jobs(self, run_id: int, status: str | None = None) -> list[JobRecord]:
        """A run's jobs, optionally of one status (the harvester's summary and failure report)."""
        with self._tx() as s:
            where = Job.run_id == run_id if status is None else and_(Job.run_id == run_id, Job.status == status)
            return self._job_records(s, where)

    def job_counts(self, run_id: int | None = None) -> dict[str, int]:
        """Jobs per status, every status present (zero if none): progress bars and summaries."""
        with self._tx() as s:
            stmt = select(Job.status, func.count()).group_by(Job.status)
            if run_id is not None:
                stmt = stmt.where(Job.run_id == run_id)
            counts = dict(s.execute(stmt).all())
        return {status: int(counts.get(status, 0)) for status in JOB_STATUSES}


def condition_hash(condition: dict | None) -> str:
    """What identifies a job's condition among the jobs of one (run, image, mask): "-" for none."""
    if not condition:
        return "-"
    import hashlib
    import json

    return hashlib.sha256(json.dumps(condition, sort_keys=True).encode()).hexdigest()
