"""The catalog's tables. Alembic migrations in ``migrations/`` are the only way they reach a database."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints keep future SQLite batch migrations (table copy) able to refer to them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JOB_STATUSES = ("pending", "running", "done", "failed")
MODEL_KINDS = ("pixel", "latent", "lcm", "if", "sdxl", "sd3", "flux")  # migration 0007


def utcnow() -> datetime:
    """Naive UTC, so SQLite and Postgres store and compare the same values."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base whose metadata the migrations are compared against."""

    metadata = MetaData(naming_convention=NAMING)


class Model(Base):
    """A diffusion model, identified by the fingerprint of its config."""

    __tablename__ = "models"
    __table_args__ = (CheckConstraint("kind IN (" + ", ".join(f"'{k}'" for k in MODEL_KINDS) + ")", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(512))
    revision: Mapped[str | None] = mapped_column(String(128))
    fingerprint: Mapped[str] = mapped_column(String(16), unique=True)
    resolution: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Image(Base):
    """A source image, identified by the sha256 of its file bytes."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)


class Mask(Base):
    """A region of one image to edit; ``uri`` says where the harvester reads it from."""

    __tablename__ = "masks"
    __table_args__ = (UniqueConstraint("image_id", "label", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    label: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    area: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str | None] = mapped_column(Text)


class HarvestRun(Base):
    """One set of harvest parameters on one model; the same command maps to the same run."""

    __tablename__ = "harvest_runs"
    __table_args__ = (UniqueConstraint("model_id", "params_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    params_hash: Mapped[str] = mapped_column(String(64))
    locobank_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Job(Base):
    """One (image, mask[, condition]) of a run, claimed by workers under a lease."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("run_id", "image_id", "mask_id", "condition_hash"),
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status"),
        Index("ix_jobs_run_id_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("harvest_runs.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    mask_id: Mapped[int] = mapped_column(ForeignKey("masks.id"))
    # Text-to-image models: what conditions the job (prompt, negative_prompt, guidance; seed for a
    # prompt's sample; edit_prompt for a text-supervised direction). None for pixel models.
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    condition_hash: Mapped[str] = mapped_column(String(64), default="-", server_default="-")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Vector(Base):
    """A direction's safetensors bytes, addressed by the sha256 of those bytes."""

    __tablename__ = "vectors"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Direction(Base):
    """One edit direction found by one job, with the provenance needed to trust and reuse it."""

    __tablename__ = "directions"
    __table_args__ = (
        UniqueConstraint("job_id", "rank_index"),
        CheckConstraint("label_sign IS NULL OR label_sign IN (-1, 1)", name="label_sign"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    rank_index: Mapped[int] = mapped_column(Integer)
    singular_value: Mapped[float] = mapped_column(Float)
    t_edit: Mapped[int] = mapped_column(Integer)
    t_edit_frac: Mapped[float] = mapped_column(Float)
    null_rank: Mapped[int] = mapped_column(Integer)
    vector_sha256: Mapped[str] = mapped_column(ForeignKey("vectors.sha256"), index=True)
    norm: Mapped[float] = mapped_column(Float)
    shape: Mapped[list[int]] = mapped_column(JSON)
    diagnostics: Mapped[dict[str, Any]] = mapped_column(JSON)
    label: Mapped[str | None] = mapped_column(String(256), index=True)
    label_score: Mapped[float | None] = mapped_column(Float)
    label_sign: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)


class Effect(Base):
    """What a direction visibly does, as seen by one CLIP model: the vector the search index holds.

    ``id`` doubles as a sequence number: a new or replaced effect always gets a larger one, so an
    index can ask for what changed since it was built (``Catalog.effects_for(..., since_id=...)``).
    """

    __tablename__ = "effects"
    # (clip_id, direction_id): the one index serves uniqueness, upserts and per-clip scans.
    __table_args__ = (UniqueConstraint("clip_id", "direction_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction_id: Mapped[int] = mapped_column(ForeignKey("directions.id"))
    clip_id: Mapped[str] = mapped_column(String(256))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    consistency: Mapped[float | None] = mapped_column(Float)
    n_images: Mapped[int] = mapped_column(Integer)
    strength: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Preview(Base):
    """A small PNG strip of a direction applied at -strength, 0 and +strength (gallery, contact sheets)."""

    __tablename__ = "previews"

    direction_id: Mapped[int] = mapped_column(ForeignKey("directions.id"), primary_key=True, autoincrement=False)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    strength: Mapped[float] = mapped_column(Float)
    # Measured on the rendered source images: the share of the pixel change at -strength and
    # +strength that falls inside the direction's mask (0002 rows have none).
    locality: Mapped[float | None] = mapped_column(Float)
    # Measured when the direction is indexed (0008; locobank.rank.linear): the strength of one unit
    # of change (``apply ID:1x``) and the largest strength at which the edit stays linear and local.
    unit_strength: Mapped[float | None] = mapped_column(Float)
    linear_limit: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class CatalogInfo(Base):
    """The catalog's identity: one row, made by migration 0006. Search indexes are bound to
    ``catalog_id``, not to a URL, so they follow a catalog that is copied, moved or reached another way."""

    __tablename__ = "catalog_info"

    catalog_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
