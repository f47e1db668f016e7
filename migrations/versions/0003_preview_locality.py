"""Previews record the locality measured on the rendered edit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``previews.locality`` (nullable: previews made before it have none until re-embedded)."""
    with op.batch_alter_table("previews") as batch:
        batch.add_column(sa.Column("locality", sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop the column; the previews themselves stay."""
    with op.batch_alter_table("previews") as batch:
        batch.drop_column("locality")
