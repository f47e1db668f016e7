"""Previews record each direction's strength scale, measured when it is indexed: the unit strength
(one size of change, ``apply ID:1x``) and the limit of its linear, local range (issue 32).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``previews.unit_strength`` and ``previews.linear_limit`` (nullable: previews made before
    0008 have none until the directions are indexed again)."""
    with op.batch_alter_table("previews") as batch:
        batch.add_column(sa.Column("unit_strength", sa.Float(), nullable=True))
        batch.add_column(sa.Column("linear_limit", sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop the two columns; the previews themselves stay."""
    with op.batch_alter_table("previews") as batch:
        batch.drop_column("linear_limit")
        batch.drop_column("unit_strength")
