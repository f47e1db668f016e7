"""Effect embeddings (one per direction and CLIP model) and preview strips.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``effects`` and ``previews``; the test suite checks this equals ``locobank.catalog.schema``."""
    op.create_table(
        "effects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("direction_id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.String(length=256), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("consistency", sa.Float(), nullable=True),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("strength", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["direction_id"], ["directions.id"], name=op.f("fk_effects_direction_id_directions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_effects")),
        sa.UniqueConstraint("clip_id", "direction_id", name=op.f("uq_effects_clip_id_direction_id")),
    )
    if op.get_context().dialect.name == "postgresql":
        # 512 float32 = 2 kB sits just over the TOAST threshold; MAIN keeps such rows inline, so
        # reading 100k effects for an index build is one sequential scan, not 100k TOAST lookups.
        op.execute("ALTER TABLE effects ALTER COLUMN vector SET STORAGE MAIN")
    op.create_table(
        "previews",
        sa.Column("direction_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("strength", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["direction_id"], ["directions.id"], name=op.f("fk_previews_direction_id_directions")
        ),
        sa.PrimaryKeyConstraint("direction_id", name=op.f("pk_previews")),
    )


def downgrade() -> None:
    """Drop the two tables; directions and their vectors are untouched."""
    op.drop_table("previews")
    op.drop_table("effects")
