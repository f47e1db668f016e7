"""Effect embeddings and preview strips: what the search index is built from, and what a hit shows.

An effect is stored once per (direction, CLIP model). Its ``id`` is a sequence number: storing an
effect again with different values gives the row a fresh, larger id, so the index can ask for
everything stored after the state it was built from. Effects are never deleted; a soft-deleted
direction simply stops being returned.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, case, func, or_, select
from sqlalchemy.orm import Session

from locobank.catalog.base import ID_CHUNK, CatalogBase
from locobank.catalog.records import EffectRecord, EffectsState, NewEffect
from locobank.catalog.schema import Direction, Effect, Job, Mask, Model, Preview
from locobank.errors import InputError, IntegrityError, NotFound

MAX_CLIP_ID = 256
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CHUNK = 500  # rows per multi-row INSERT: 9 columns x 500 stays far below SQLite's variable limit

_EMPTY_IDS = np.zeros(0, dtype=np.int64)


def _unit_vector(vector: Any, what: str) -> np.ndarray:
    """A finite, non-zero 1-D float vector, L2-normalised, as little-endian float32."""
    if type(vector).__module__.split(".")[0] == "torch":
        vector = vector.detach().to("cpu").double().numpy()
    a = np.asarray(vector)
    if a.dtype.kind not in "fiu":
        raise InputError(f"{what}: an effect vector must be numeric, got {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 2 and a.shape[0] == 1:  # a batch of one, as encoders return it
        a = a[0]
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"{what}: an effect vector must be 1-D and non-empty, got shape {tuple(a.shape)}")
    if not np.isfinite(a).all():
        raise InputError(f"{what}: the effect vector has NaN or infinite values")
    norm = float(np.linalg.norm(a))
    if norm == 0.0:
        raise InputError(f"{what}: the effect vector is zero (the direction changed nothing CLIP can see)")
    return (a / norm).astype("<f4")


def _check_clip_id(clip_id: str) -> str:
    """CLIP ids are short non-empty strings, e.g. ``ViT-B-32/laion2b_s34b_b79k``."""
    if not isinstance(clip_id, str) or not clip_id.strip() or len(clip_id) > MAX_CLIP_ID:
        raise InputError(f"a CLIP model id is a non-empty string of at most {MAX_CLIP_ID} characters, got {clip_id!r}")
    return clip_id


def _check_range(what: str, unit: float | None, limit: float | None) -> None:
    """A strength scale's values (:mod:`locobank.rank.linear`) are positive and finite where given."""
    for name, v in (("unit", unit), ("limit", limit)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise InputError(f"{what}: {name} strength must be positive, not {v}")


def _token(*parts: Any) -> str:
    """A short stable digest of some state values."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _effect_record(e: Effect) -> EffectRecord:
    """Detach an effect row, its vector as a read-only float32 array."""
    vector = np.frombuffer(e.vector, dtype="<f4")
    return EffectRecord(
        e.id, e.direction_id, e.clip_id, e.dim, vector, e.consistency, e.n_images, e.strength, e.created_at
    )


class EffectStore(CatalogBase):
    """Effect and preview methods of ``Catalog``."""

    # -- writing ---------------------------------------------------------------------------------

    def put_effects(self, items: Sequence[NewEffect]) -> int:
        """Store effects in one transaction; re-storing identical values is a no-op. Returns rows written.

        A (direction, CLIP model) pair already present is replaced when any value differs, and then
        gets a new sequence id so an index built earlier sees the change. Unknown direction ids raise
        ``NotFound``; a direction deleted while it was being embedded is stored but never returned.
        """
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        dims: dict[str, int] = {}
        for item in items:
            row = _effect_row(item)
            clip_id = row["clip_id"]
            if dims.setdefault(clip_id, row["dim"]) != row["dim"]:
                raise InputError(f"effect of direction {item.direction_id} for {clip_id}: dimension {row['dim']}, "
                                 f"but others for {clip_id} have {dims[clip_id]}")
            rows[(clip_id, row["direction_id"])] = row
        if not rows:
            return 0
        ordered = [rows[k] for k in sorted(rows)]  # one lock order for every writer
        written = 0
        with self._tx(write=True) as s:
            self._check_effect_targets(s, ordered, dims)
            now = self._now(s)
            for start in range(0, len(ordered), _CHUNK):
                chunk = [dict(r, created_at=now) for r in ordered[start : start + _CHUNK]]
                stmt = self._insert(Effect).values(chunk)
                new = stmt.excluded
                stmt = stmt.on_conflict_do_update(
                    index_elements=["clip_id", "direction_id"],
                    # excluded.id is the id the row would have got: a fresh sequence value on both
                    # Postgres (nextval ran) and SQLite (the next rowid), so a replaced effect moves up.
                    set_=dict(
                        id=new.id,
                        dim=new.dim,
                        vector=new.vector,
                        consistency=new.consistency,
                        n_images=new.n_images,
                        strength=new.strength,
                        created_at=new.created_at,
                    ),
                    where=(
                        Effect.vector.is_distinct_from(new.vector)
                        | Effect.consistency.is_distinct_from(new.consistency)
                        | Effect.n_images.is_distinct_from(new.n_images)
                        | Effect.strength.is_distinct_from(new.strength)
                    ),
                )
                written += len(s.execute(stmt.returning(Effect.id)).all())
        return written

    def _check_effect_targets(self, s: Session, rows: list[dict[str, Any]], dims: dict[str, int]) -> None:
        """Every direction exists, and each CLIP model keeps the one dimension it already has."""
        wanted = sorted({r["direction_id"] for r in rows})
        found: set[int] = set()
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            found.update(s.scalars(select(Direction.id).where(Direction.id.in_(chunk))))
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"no direction {', '.join(map(str, missing[:10]))} in the catalog {self.url}")
        for clip_id, dim in dims.items():
            have = s.scalar(select(Effect.dim).where(Effect.clip_id == clip_id, Effect.dim != dim).limit(1))
            if have is not None:
                raise InputError(f"effects for {clip_id} have dimension {have} in the catalog; got {dim}")

    def put_preview(self, direction_id: int, png: bytes, strength: float, locality: float | None = None,
                    unit: float | None = None, limit: float | None = None) -> None:
        """Store (or replace) a direction's preview strip PNG, with the locality measured on it and
        its strength scale (``unit``, ``limit``; :mod:`locobank.rank.linear`) when measured."""
        png = bytes(png)
        if not png.startswith(PNG_MAGIC):
            raise InputError(f"preview of direction {direction_id} is not a PNG file")
        _check_range(f"preview of direction {direction_id}", unit, limit)
        opt = lambda v: None if v is None else float(v)  # noqa: E731
        with self._tx(write=True) as s:
            if s.get(Direction, direction_id) is None:
                raise NotFound(f"no direction {direction_id} in the catalog {self.url}")
            values = dict(direction_id=int(direction_id), png=png, strength=float(strength), locality=opt(locality),
                          unit_strength=opt(unit), linear_limit=opt(limit), created_at=self._now(s))
            stmt = self._insert(Preview).values(**values)
            new = stmt.excluded
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["direction_id"],
                    set_=dict(png=new.png, strength=new.strength, locality=new.locality,
                              unit_strength=new.unit_strength, linear_limit=new.linear_limit,
                              created_at=new.created_at),
                )
            )

    # -- reading ---------------------------------------------------------------------------------

    def get_preview(self, direction_id: int) -> bytes | None:
        """A live direction's preview PNG, or None when it has none (or is deleted or unknown)."""
        with self._tx() as s:
            png = s.scalar(
                select(Preview.png)
                .join(Direction, Preview.direction_id == Direction.id)
                .where(Preview.direction_id == direction_id, Direction.deleted_at.is_(None))
            )
        return None if png is None else bytes(png)

    def preview_strength(self, direction_id: int) -> float | None:
        """The strength the stored preview strip was rendered at (its tiles are -s, 0, +s along v),
        or None when there is no preview; views label the strip with it, not with an effect's."""
        with self._tx() as s:
            return s.scalar(select(Preview.strength).where(Preview.direction_id == direction_id))

    def preview_locality(self, direction_id: int) -> float | None:
        """The locality measured when the preview was rendered, or None (no preview, or made before 0003)."""
        with self._tx() as s:
            return s.scalar(select(Preview.locality).where(Preview.direction_id == direction_id))

    def preview_facts(self, direction_id: int) -> tuple[float | None, float | None, float | None, float | None]:
        """What a direction's card shows of its preview, in one read: (the strength its strip was
        rendered at, its locality, its unit strength, its linear limit); Nones without a preview."""
        with self._tx() as s:
            row = s.execute(select(Preview.strength, Preview.locality, Preview.unit_strength, Preview.linear_limit)
                            .where(Preview.direction_id == direction_id)).first()
        return (None, None, None, None) if row is None else tuple(row)

    def set_strength_range(self, direction_id: int, unit: float, limit: float) -> None:
        """Record the strength scale measured for a direction that has a preview (see ``put_preview``)."""
        _check_range(f"direction {direction_id}", unit, limit)
        with self._tx(write=True) as s:
            row = s.get(Preview, int(direction_id))
            if row is None:
                raise NotFound(f"direction {direction_id} has no preview in the catalog {self.url}; index it first")
            row.unit_strength, row.linear_limit = float(unit), float(limit)

    def directions_without_range(self) -> list[int]:
        """Live directions whose preview records no strength scale yet (indexed before 0008), by id."""
        with self._tx() as s:
            return [int(i) for i in s.scalars(
                select(Preview.direction_id).join(Direction, Preview.direction_id == Direction.id)
                .where(Preview.unit_strength.is_(None), Direction.deleted_at.is_(None)).order_by(Preview.direction_id))]

    def strength_ranges(self, ids: Iterable[int]) -> dict[int, tuple[float, float]]:
        """``{id: (unit, limit)}`` of the directions among ``ids`` whose preview records a strength
        scale (:mod:`locobank.rank.linear`); the others are left out."""
        wanted = sorted({int(i) for i in ids})
        out: dict[int, tuple[float, float]] = {}
        with self._tx() as s:
            for start in range(0, len(wanted), ID_CHUNK):
                rows = s.execute(select(Preview.direction_id, Preview.unit_strength, Preview.linear_limit).where(
                    Preview.direction_id.in_(wanted[start : start + ID_CHUNK]), Preview.unit_strength.is_not(None)))
                out.update({int(d): (float(u), float(lim)) for d, u, lim in rows})
        return out

    def effect_of(self, direction_id: int, clip_id: str, *, include_deleted: bool = False) -> EffectRecord | None:
        """One direction's effect for one CLIP model, or None (not embedded yet, deleted, unknown)."""
        stmt = (
            select(Effect)
            .join(Direction, Effect.direction_id == Direction.id)
            .where(Effect.direction_id == direction_id, Effect.clip_id == clip_id)
        )
        if not include_deleted:
            stmt = stmt.where(Direction.deleted_at.is_(None))
        with self._tx() as s:
            e = s.scalars(stmt).one_or_none()
            return None if e is None else _effect_record(e)

    def effects_for(
        self, clip_id: str, *, since_id: int | None = None, ids: Iterable[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Live directions' effects for a CLIP model as (ids int64 (n,), vectors float32 (n, dim)), by id.

        ``since_id``: only effects stored after that sequence id (``EffectsState.last_seq`` of an earlier
        call). ``ids``: only these directions. One query; vectors come out as one contiguous array.
        """
        live = [Effect.clip_id == clip_id, Direction.deleted_at.is_(None)]
        if since_id is not None:
            live.append(Effect.id > int(since_id))
        with self._tx() as s:
            conn = s.connection()
            if ids is None:
                pairs = self._effect_rows(conn, live)
            else:
                wanted = sorted({int(i) for i in ids})
                pairs = []
                for start in range(0, len(wanted), ID_CHUNK):
                    chunk = wanted[start : start + ID_CHUNK]
                    pairs += self._effect_rows(conn, [*live, Effect.direction_id.in_(chunk)])
            dim = s.scalar(select(Effect.dim).where(Effect.clip_id == clip_id).limit(1)) if not pairs else None
        if not pairs:
            return _EMPTY_IDS.copy(), np.zeros((0, dim or 0), dtype=np.float32)
        out_ids = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        blob = b"".join(p[1] for p in pairs)
        if len(blob) % (4 * len(pairs)):
            raise IntegrityError(f"effects for {clip_id} in {self.url} do not all have the same dimension")
        vectors = np.frombuffer(blob, dtype="<f4").reshape(len(pairs), -1)
        order = np.argsort(out_ids, kind="stable")  # chunked or not, callers get id order
        return out_ids[order], np.ascontiguousarray(vectors[order], dtype=np.float32)

    def _effect_rows(self, conn: Connection, where: list[Any]) -> list[tuple[int, bytes]]:
        """(direction id, vector bytes) rows; on Postgres in binary wire format (no hex decoding)."""
        stmt = (
            select(Effect.direction_id, Effect.vector)
            .join(Direction, Effect.direction_id == Direction.id)
            .where(*where)
            .order_by(Effect.direction_id)
        )
        if self.backend == "postgresql":
            compiled = stmt.compile(conn, compile_kwargs={"render_postcompile": True})
            params = compiled.construct_params()
            driver = conn.connection.driver_connection  # the psycopg connection, inside our transaction
            with driver.cursor(binary=True) as cur:
                cur.execute(compiled.string, params)
                return [(int(i), bytes(v)) for i, v in cur.fetchall()]
        return [(int(i), bytes(v)) for i, v in conn.execute(stmt).all()]

    def effect_ids(self, clip_id: str, *, since_id: int | None = None) -> np.ndarray:
        """Ids of live directions with an effect for this CLIP model (int64, sorted); cheap, no vectors."""
        stmt = (
            select(Effect.direction_id)
            .join(Direction, Effect.direction_id == Direction.id)
            .where(Effect.clip_id == clip_id, Direction.deleted_at.is_(None))
            .order_by(Effect.direction_id)
        )
        if since_id is not None:
            stmt = stmt.where(Effect.id > int(since_id))
        with self._tx() as s:
            found = s.scalars(stmt).all()
        return np.asarray(found, dtype=np.int64) if found else _EMPTY_IDS.copy()

    def transfer_of(
        self, clip_id: str, ids: Iterable[int], *, model: str | None = None, label: str | None = None,
        mask_label: str | None = None,
    ) -> dict[int, tuple[float | None, int, float]]:
        """``{direction id: (transfer consistency, images rendered, strength rendered at)}`` for live
        directions among ``ids`` that pass the filters: ``model`` (a model id or fingerprint),
        ``label`` (the automatic name) and ``mask_label``."""
        wanted = sorted({int(i) for i in ids})
        stmt = (
            select(Effect.direction_id, Effect.consistency, Effect.n_images, Effect.strength)
            .join(Direction, Effect.direction_id == Direction.id)
            .where(Effect.clip_id == clip_id, Direction.deleted_at.is_(None))
        )
        if model is not None:
            stmt = stmt.join(Model, Direction.model_id == Model.id).where(
                or_(Model.model_id == model, Model.fingerprint == model))
        if label is not None:
            stmt = stmt.where(Direction.label == label)
        if mask_label is not None:
            stmt = stmt.join(Job, Direction.job_id == Job.id).join(Mask, Job.mask_id == Mask.id).where(
                Mask.label == mask_label)
        out: dict[int, tuple[float | None, int, float]] = {}
        with self._tx() as s:
            for start in range(0, len(wanted), ID_CHUNK):
                chunk = stmt.where(Effect.direction_id.in_(wanted[start : start + ID_CHUNK]))
                for did, consistency, n, strength in s.execute(chunk):
                    out[int(did)] = (None if consistency is None else float(consistency), int(n), float(strength))
        return out

    def directions_without_effect(self, clip_id: str, model_fingerprint: str | None = None) -> list[int]:
        """Live directions (of one model, if given) that have no effect for this CLIP model yet."""
        has = select(Effect.id).where(Effect.direction_id == Direction.id, Effect.clip_id == clip_id).exists()
        stmt = select(Direction.id).where(Direction.deleted_at.is_(None), ~has).order_by(Direction.id)
        if model_fingerprint is not None:
            stmt = stmt.join(Model, Direction.model_id == Model.id).where(Model.fingerprint == model_fingerprint)
        with self._tx() as s:
            return list(s.scalars(stmt))

    def deleted_ids(self, clip_id: str | None = None) -> set[int]:
        """Ids of soft-deleted directions (only those with an effect for ``clip_id``, if given)."""
        stmt = select(Direction.id).where(Direction.deleted_at.is_not(None))
        if clip_id is not None:
            stmt = stmt.where(
                select(Effect.id).where(Effect.direction_id == Direction.id, Effect.clip_id == clip_id).exists()
            )
        with self._tx() as s:
            return set(s.scalars(stmt))

    def effects_state(self, clip_id: str) -> EffectsState:
        """Counts, last sequence id and a token that changes when an index for ``clip_id`` goes stale.

        The token moves when an effect is added or replaced (the largest id grows) or when a direction
        that has one is deleted; directions without an effect do not change what the index holds.
        """
        live = case((Direction.deleted_at.is_(None), 1), else_=0)
        with self._tx() as s:
            n, n_live, last_seq, last_deleted, dim = s.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(live), 0),
                    func.coalesce(func.max(Effect.id), 0),
                    func.max(Direction.deleted_at),
                    func.max(Effect.dim),
                )
                .select_from(Effect)
                .join(Direction, Effect.direction_id == Direction.id)
                .where(Effect.clip_id == clip_id)
            ).one()
        n, n_live, last_seq = int(n), int(n_live), int(last_seq)
        token = _token(clip_id, n, n_live, last_seq, str(last_deleted))
        return EffectsState(clip_id, None if dim is None else int(dim), n_live, n - n_live, last_seq, token)


def _effect_row(item: NewEffect) -> dict[str, Any]:
    """One effect checked and as the row it is stored as."""
    clip_id = _check_clip_id(item.clip_id)
    what = f"effect of direction {item.direction_id} for {clip_id}"
    v = _unit_vector(item.vector, what)
    n_images, strength = int(item.n_images), float(item.strength)
    consistency = None if item.consistency is None else float(item.consistency)
    if n_images < 1:
        raise InputError(f"{what}: n_images must be at least 1, got {item.n_images}")
    if not math.isfinite(strength) or (consistency is not None and not math.isfinite(consistency)):
        raise InputError(f"{what}: strength and consistency must be finite numbers")
    return dict(direction_id=int(item.direction_id), clip_id=clip_id, dim=v.size, vector=v.tobytes(),
                consistency=consistency, n_images=n_images, strength=strength)
