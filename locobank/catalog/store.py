"""The catalog store: every read and write of the database goes through ``Catalog``.

Vectors live as safetensors BLOBs in the ``vectors`` table (see ``tests/bench/bench_vectorstore.py``
for the measurement behind that choice): a direction row and its vector commit in one transaction,
and many workers on many machines need nothing but the database URL.

The class is assembled from parts: ``base`` (connection, transactions), ``jobs`` (the queue),
``transfer`` (packs), ``effects`` (effect embeddings and previews); this module holds opening,
models/images/masks/runs, and directions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, or_, select, update

from locobank.catalog.base import ID_CHUNK
from locobank.catalog.canonical import canonical_json
from locobank.catalog.connect import check_schema, make_engine, refuse_writes, resolve_url, safe_url, sqlite_file
from locobank.catalog.connect import upgrade as _upgrade
from locobank.catalog.effects import EffectStore
from locobank.catalog.jobs import JobQueue
from locobank.catalog.records import DirectionRecord, ImageRecord, MaskRecord, ModelRecord, RunRecord
from locobank.catalog.rows import (
    check_fingerprint,
    check_sha,
    direction_query,
    direction_record,
    image_record,
    mask_record,
    model_record,
    run_record,
)
from locobank.catalog.safetensors_io import raw_to_torch
from locobank.catalog.schema import (
    JOB_STATUSES,
    MODEL_KINDS,
    Direction,
    HarvestRun,
    Image,
    Job,
    Mask,
    Model,
    Vector,
    utcnow,
)
from locobank.catalog.exchange import PackExchange
from locobank.errors import InputError, NotFound, SchemaOutOfDate

log = logging.getLogger(__name__)


class Catalog(JobQueue, PackExchange, EffectStore):
    """A connection to one catalog database; cheap to keep open, safe to share between threads."""

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False, read_only: bool = False) -> Catalog:
        """Open the catalog at ``url`` (or the default), refusing a schema that is not at head; with
        ``read_only`` the database refuses every write (``locobank serve`` opens it so)."""
        if read_only and upgrade:
            raise InputError("a catalog opened read-only cannot be upgraded")
        url = resolve_url(url)
        path = sqlite_file(url)
        if path is not None and not upgrade and not path.exists():
            # Do not leave an empty file behind just because someone typed `locobank list`.
            raise SchemaOutOfDate(f"there is no catalog at {path}; run `locobank db upgrade --db {safe_url(url)}`")
        engine = make_engine(url)
        try:
            if upgrade:
                _upgrade(url, engine=engine if path is None else None)
            check_schema(engine, url)
            if read_only:
                refuse_writes(engine)
            return cls(engine, url)
        except BaseException:
            engine.dispose()
            raise

    # -- models, images, masks, runs -------------------------------------------------------------

    def get_or_create_model(
        self,
        model_id: str,
        *,
        fingerprint: str,
        resolution: int,
        channels: int,
        kind: str = "pixel",
        revision: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> ModelRecord:
        """The model row for this config fingerprint, created on first sight (safe under races)."""
        check_fingerprint(fingerprint)
        if kind not in MODEL_KINDS:
            raise InputError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
        values = dict(
            model_id=model_id,
            revision=revision,
            fingerprint=fingerprint,
            resolution=int(resolution),
            channels=int(channels),
            kind=kind,
            config=json.loads(canonical_json(config or {})),
            created_at=utcnow(),
        )
        with self._tx(write=True) as s:
            return model_record(self._ensure(s, Model, values, ["fingerprint"]))

    def get_model(self, fingerprint_or_id: str | int) -> ModelRecord:
        """A model by database id or fingerprint."""
        with self._tx() as s:
            if isinstance(fingerprint_or_id, int):
                m = s.get(Model, fingerprint_or_id)
            else:
                m = s.scalars(select(Model).where(Model.fingerprint == fingerprint_or_id)).one_or_none()
            if m is None:
                raise NotFound(f"no model {fingerprint_or_id!r} in the catalog")
            return model_record(m)

    def add_image(self, uri: str, sha256: str, *, width: int, height: int, channels: int) -> ImageRecord:
        """Register an image by content hash; the same bytes at another path reuse the first row."""
        check_sha(sha256, "image sha256")
        values = dict(uri=str(uri), sha256=sha256, width=int(width), height=int(height), channels=int(channels))
        with self._tx(write=True) as s:
            return image_record(self._ensure(s, Image, values, ["sha256"]))

    def add_mask(self, image_id: int, label: str, sha256: str, *, area: int, uri: str | None = None) -> MaskRecord:
        """Register a labelled mask of an image; re-adding the same one returns the existing row."""
        check_sha(sha256, "mask sha256")
        values = dict(
            image_id=int(image_id),
            label=str(label),
            sha256=sha256,
            area=int(area),
            uri=None if uri is None else str(uri),
        )
        with self._tx(write=True) as s:
            if s.get(Image, image_id) is None:
                raise NotFound(f"no image {image_id} in the catalog")
            return mask_record(self._ensure(s, Mask, values, ["image_id", "label", "sha256"]))

    def get_or_create_run(self, model: ModelRecord | int, params: dict[str, Any]) -> RunRecord:
        """The run for (model, params): running the same command twice continues the same run.

        Input options (``INPUT_OPTIONS``: ``resize``) do not identify a run and are not stored in it.
        """
        model_db_id = model.id if isinstance(model, ModelRecord) else int(model)
        canonical_json(params)  # refuses non-JSON params before the transaction
        with self._tx(write=True) as s:
            if s.get(Model, model_db_id) is None:
                raise NotFound(f"no model with database id {model_db_id} in the catalog")
            return run_record(self._ensure_run(s, model_db_id, params, utcnow()))

    def get_run(self, run_id: int) -> RunRecord:
        """A run by id."""
        with self._tx() as s:
            r = s.get(HarvestRun, run_id)
            if r is None:
                raise NotFound(f"no harvest run {run_id} in the catalog")
            return run_record(r)

    # -- directions ------------------------------------------------------------------------------

    def list_directions(
        self,
        model: str | None = None,
        label: str | None = None,
        limit: int | None = None,
        *,
        mask_label: str | None = None,
        include_deleted: bool = False,
        newest_first: bool = False,
    ) -> list[DirectionRecord]:
        """Directions in id order (newest first with ``newest_first``); ``model`` matches a model id
        or a fingerprint, ``label`` the auto name."""
        stmt = direction_query().order_by(Direction.id.desc() if newest_first else Direction.id)
        if model is not None:
            stmt = stmt.where(or_(Model.model_id == model, Model.fingerprint == model))
        if label is not None:
            stmt = stmt.where(Direction.label == label)
        if mask_label is not None:
            stmt = stmt.where(Mask.label == mask_label)
        if not include_deleted:
            stmt = stmt.where(Direction.deleted_at.is_(None))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._tx() as s:
            return [direction_record(row) for row in s.execute(stmt).all()]

    def harvested_images(self, model: str, limit: int, offset: int = 0) -> list[str]:
        """URIs of distinct images with live directions of ``model`` (model id or fingerprint), in
        the order their first direction was stored; one indexed query, not a scan of directions."""
        first = func.min(Direction.id)
        stmt = (
            select(Image.uri, first)
            .select_from(Direction)
            .join(Job, Direction.job_id == Job.id)
            .join(Image, Job.image_id == Image.id)
            .join(Model, Direction.model_id == Model.id)
            .where(or_(Model.model_id == model, Model.fingerprint == model), Direction.deleted_at.is_(None))
            .group_by(Image.id, Image.uri)
            .order_by(first)
            .limit(limit)
            .offset(offset)
        )
        with self._tx() as s:
            return [uri for uri, _ in s.execute(stmt).all()]

    def get_direction(self, direction_id: int, *, include_deleted: bool = False) -> DirectionRecord:
        """One direction with its provenance; unknown or deleted ids raise ``NotFound``."""
        with self._tx() as s:
            row = s.execute(direction_query().where(Direction.id == direction_id)).one_or_none()
        if row is None or (row[0].deleted_at is not None and not include_deleted):
            raise NotFound(f"no direction {direction_id} in the catalog {self.url}")
        return direction_record(row)

    def get_directions(self, ids: Iterable[int]) -> dict[int, DirectionRecord]:
        """Live directions among ``ids``, in one query: ``{id: record}``; unknown or deleted ids are left out."""
        wanted = sorted({int(i) for i in ids})
        out: dict[int, DirectionRecord] = {}
        with self._tx() as s:
            for start in range(0, len(wanted), ID_CHUNK):
                chunk = wanted[start : start + ID_CHUNK]
                stmt = direction_query().where(Direction.id.in_(chunk), Direction.deleted_at.is_(None))
                out.update((rec.id, rec) for rec in (direction_record(row) for row in s.execute(stmt).all()))
        return out

    def load_vector(self, direction_id: int, expected_fingerprint: str | None = None) -> Any:
        """The direction as a torch tensor, after its sha256 and model fingerprint are checked."""
        with self._tx() as s:
            _, _, raw = self._verified_raw(s, direction_id, expected_fingerprint)
        return raw_to_torch(raw)

    def set_label(
        self, direction_id: int, label: str | None, score: float | None = None, sign: int | None = None
    ) -> None:
        """Record the automatic name of a direction (and which sign of it the name describes)."""
        if sign not in (None, -1, 1):
            raise InputError(f"label sign must be -1, 1 or None, got {sign!r}")
        with self._tx(write=True) as s:
            n = s.execute(
                update(Direction)
                .where(Direction.id == direction_id, Direction.deleted_at.is_(None))
                .values(label=label, label_score=score, label_sign=sign)
            ).rowcount
        if n == 0:
            raise NotFound(f"no direction {direction_id} in the catalog {self.url}")

    def delete_direction(self, direction_id: int) -> None:
        """Soft-delete: hidden from listings, search and loading; deleting twice is a no-op."""
        with self._tx(write=True) as s:
            d = s.get(Direction, direction_id)
            if d is None:
                raise NotFound(f"no direction {direction_id} in the catalog {self.url}")
            if d.deleted_at is None:
                d.deleted_at = self._now(s)

    def sweep_orphans(self) -> int:
        """Delete vectors no direction row refers to; returns how many went."""
        with self._tx(write=True) as s:
            used = select(Direction.vector_sha256).distinct()
            return s.execute(delete(Vector).where(Vector.sha256.not_in(used))).rowcount

    def stats(self) -> dict[str, Any]:
        """Counts for ``locobank stats``: jobs per status, directions per model, label and mask label."""
        live = Direction.deleted_at.is_(None)
        with self._tx() as s:

            def grouped(column: Any, *joins: tuple[Any, Any]) -> dict[str, int]:
                stmt = select(column, func.count()).select_from(Direction)
                for target, on in joins:
                    stmt = stmt.join(target, on)
                rows = s.execute(stmt.where(live).group_by(column).order_by(column)).all()
                return {("(none)" if k is None else str(k)): int(n) for k, n in rows}

            jobs = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            out: dict[str, Any] = {
                "directions": int(s.scalar(select(func.count()).select_from(Direction).where(live))),
                "deleted": int(s.scalar(select(func.count()).select_from(Direction).where(~live))),
                "jobs": {status: int(jobs.get(status, 0)) for status in JOB_STATUSES},
                "models": grouped(Model.model_id, (Model, Direction.model_id == Model.id)),
                "labels": grouped(Direction.label),
                "mask_labels": grouped(Mask.label, (Job, Direction.job_id == Job.id), (Mask, Job.mask_id == Mask.id)),
                "runs": int(s.scalar(select(func.count()).select_from(HarvestRun))),
                "images": int(s.scalar(select(func.count()).select_from(Image))),
                "masks": int(s.scalar(select(func.count()).select_from(Mask))),
                "vectors": int(s.scalar(select(func.count()).select_from(Vector))),
                "vector_bytes": int(s.scalar(select(func.coalesce(func.sum(Vector.nbytes), 0)))),
            }
        return out

    def state_token(self) -> str:
        """A short token that changes whenever a direction is added or deleted (the index records it)."""
        with self._tx() as s:
            row = s.execute(
                select(
                    func.count(),
                    func.max(Direction.id),
                    func.count(Direction.deleted_at),
                    func.max(Direction.deleted_at),
                )
            ).one()
        return hashlib.sha256(repr(tuple(row)).encode()).hexdigest()[:16]
