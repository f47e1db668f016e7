"""Model kinds ``sd3`` and ``flux`` (the flow-matching transformers) are allowed in ``models.kind``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("pixel", "latent")
AFTER = ("pixel", "latent", "sd3", "flux")


def _kinds(kinds: Sequence[str]) -> str:
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _models_before(kinds: Sequence[str]) -> sa.Table | None:
    """The models table as 0001 made it (with ``kinds`` allowed), for SQLite's table copy when
    rendering SQL offline (there is no database to reflect then); None online."""
    if not op.get_context().as_sql:
        return None
    return sa.Table(
        "models", sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.String(length=512), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=True),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(_kinds(kinds), name="ck_models_kind"),
        sa.UniqueConstraint("fingerprint", name="uq_models_fingerprint"),
    )


def _swap(old: Sequence[str], new: Sequence[str]) -> None:
    with op.batch_alter_table("models", copy_from=_models_before(old)) as batch:
        batch.drop_constraint(op.f("ck_models_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_models_kind"), _kinds(new))


def upgrade() -> None:
    """Widen the kind check to the flow-matching families."""
    _swap(BEFORE, AFTER)


def downgrade() -> None:
    """Narrow it back (fails while a model of a new kind is stored, as it should)."""
    _swap(AFTER, BEFORE)
