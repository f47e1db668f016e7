"""Initial catalog schema: models, images, masks, harvest runs, jobs, vectors, directions.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every catalog table; the test suite checks this equals ``locobank.catalog.schema``."""
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_images_sha256")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=512), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=True),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('pixel', 'latent')", name=op.f("ck_models_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_models_fingerprint")),
    )
    op.create_table(
        "vectors",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_vectors")),
    )
    if op.get_context().dialect.name == "postgresql":
        # Vectors are float noise: pglz cannot shrink them, and trying costs 3x write time.
        op.execute("ALTER TABLE vectors ALTER COLUMN data SET STORAGE EXTERNAL")
    op.create_table(
        "harvest_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("locobank_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_harvest_runs_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_harvest_runs")),
        sa.UniqueConstraint("model_id", "params_hash", name=op.f("uq_harvest_runs_model_id_params_hash")),
    )
    op.create_table(
        "masks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("area", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_masks_image_id_images")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_masks")),
        sa.UniqueConstraint("image_id", "label", "sha256", name=op.f("uq_masks_image_id_label_sha256")),
    )
    op.create_index(op.f("ix_masks_image_id"), "masks", ["image_id"], unique=False)
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("mask_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=256), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_jobs_status")),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_jobs_image_id_images")),
        sa.ForeignKeyConstraint(["mask_id"], ["masks.id"], name=op.f("fk_jobs_mask_id_masks")),
        sa.ForeignKeyConstraint(["run_id"], ["harvest_runs.id"], name=op.f("fk_jobs_run_id_harvest_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("run_id", "image_id", "mask_id", name=op.f("uq_jobs_run_id_image_id_mask_id")),
    )
    op.create_index("ix_jobs_run_id_status", "jobs", ["run_id", "status"], unique=False)
    op.create_table(
        "directions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("rank_index", sa.Integer(), nullable=False),
        sa.Column("singular_value", sa.Float(), nullable=False),
        sa.Column("t_edit", sa.Integer(), nullable=False),
        sa.Column("t_edit_frac", sa.Float(), nullable=False),
        sa.Column("null_rank", sa.Integer(), nullable=False),
        sa.Column("vector_sha256", sa.String(length=64), nullable=False),
        sa.Column("norm", sa.Float(), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("diagnostics", sa.JSON(), nullable=False),
        sa.Column("label", sa.String(length=256), nullable=True),
        sa.Column("label_score", sa.Float(), nullable=True),
        sa.Column("label_sign", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("label_sign IS NULL OR label_sign IN (-1, 1)", name=op.f("ck_directions_label_sign")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_directions_job_id_jobs")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_directions_model_id_models")),
        sa.ForeignKeyConstraint(
            ["vector_sha256"], ["vectors.sha256"], name=op.f("fk_directions_vector_sha256_vectors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directions")),
        sa.UniqueConstraint("job_id", "rank_index", name=op.f("uq_directions_job_id_rank_index")),
    )
    op.create_index(op.f("ix_directions_label"), "directions", ["label"], unique=False)
    op.create_index(op.f("ix_directions_model_id"), "directions", ["model_id"], unique=False)
    op.create_index(op.f("ix_directions_vector_sha256"), "directions", ["vector_sha256"], unique=False)


def downgrade() -> None:
    """Drop every catalog table (children first)."""
    op.drop_index(op.f("ix_directions_vector_sha256"), table_name="directions")
    op.drop_index(op.f("ix_directions_model_id"), table_name="directions")
    op.drop_index(op.f("ix_directions_label"), table_name="directions")
    op.drop_table("directions")
    op.drop_index("ix_jobs_run_id_status", table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_masks_image_id"), table_name="masks")
    op.drop_table("masks")
    op.drop_table("harvest_runs")
    op.drop_table("vectors")
    op.drop_table("models")
    op.drop_table("images")
