"""Jobs of text-to-image models carry their condition (prompt, negative prompt, guidance, seed,
edit prompt); the same image and mask under two conditions are two jobs.

There is no 0004: revision ids are stored in users' databases, so the gap stays (never renumber).

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _jobs_before() -> sa.Table | None:
    """The jobs table as 0001 made it, for SQLite's table copy when rendering SQL offline (there is
    no database to reflect then); None online, where alembic reflects it."""
    if not op.get_context().as_sql:
        return None
    meta = sa.MetaData()
    return sa.Table(
        "jobs", meta,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("harvest_runs.id", name="fk_jobs_run_id_harvest_runs"),
                  nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", name="fk_jobs_image_id_images"), nullable=False),
        sa.Column("mask_id", sa.Integer(), sa.ForeignKey("masks.id", name="fk_jobs_mask_id_masks"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=256), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="ck_jobs_status"),
        sa.UniqueConstraint("run_id", "image_id", "mask_id", name="uq_jobs_run_id_image_id_mask_id"),
    )


def upgrade() -> None:
    """Add ``jobs.condition`` (JSON, null for pixel models) and ``jobs.condition_hash`` ("-" when
    none), and make the job's identity (run, image, mask, condition)."""
    with op.batch_alter_table("jobs", copy_from=_jobs_before()) as batch:
        batch.add_column(sa.Column("condition", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("condition_hash", sa.String(length=64), nullable=False, server_default="-"))
        batch.drop_constraint(op.f("uq_jobs_run_id_image_id_mask_id"), type_="unique")
        batch.create_unique_constraint(op.f("uq_jobs_run_id_image_id_mask_id_condition_hash"),
                                       ["run_id", "image_id", "mask_id", "condition_hash"])


def downgrade() -> None:
    """Back to one job per (run, image, mask); fails if two conditions share one."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("uq_jobs_run_id_image_id_mask_id_condition_hash"), type_="unique")
        batch.create_unique_constraint(op.f("uq_jobs_run_id_image_id_mask_id"), ["run_id", "image_id", "mask_id"])
        batch.drop_column("condition_hash")
        batch.drop_column("condition")
