"""The catalog's identity: a ``catalog_info`` row holding an id made once, when this migration runs.
Search indexes are bound to it, so an index follows its catalog when the folder is copied or moved,
or when the same database is reached by another URL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``catalog_info`` with its one row: a fresh uuid4, so no two catalogs share an id."""
    table = op.create_table(
        "catalog_info",
        sa.Column("catalog_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("catalog_id", name=op.f("pk_catalog_info")),
    )
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    op.bulk_insert(table, [{"catalog_id": str(uuid.uuid4()), "created_at": now}])


def downgrade() -> None:
    """Drop the table; indexes bound to the id then look unbuilt until rebuilt."""
    op.drop_table("catalog_info")
