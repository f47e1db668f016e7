"""More model families in the catalog: ``models.kind`` also takes ``lcm``, ``if``, ``sdxl``, ``sd3``
and ``flux`` (issue 34). One catalog holds the directions of every family.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("pixel", "latent")
NEW = ("pixel", "latent", "lcm", "if", "sdxl", "sd3", "flux")


def _check(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _models(kinds: tuple[str, ...]) -> sa.Table:
    """The ``models`` table as 0001 made it, with the check on ``kinds``: SQLite's batch mode copies
    it without reflecting, so ``alembic upgrade --sql`` renders too."""
    return sa.Table(
        "models", sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=512), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=True),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(_check(kinds), name="ck_models_kind"),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("fingerprint", name="uq_models_fingerprint"),
    )


def _swap(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    with op.batch_alter_table("models", copy_from=_models(old)) as batch:
        batch.drop_constraint(op.f("ck_models_kind"), type_="check")
        batch.create_check_constraint("kind", _check(new))


def upgrade() -> None:
    """Replace the ``kind`` check constraint with one that allows every family."""
    _swap(OLD, NEW)


def downgrade() -> None:
    """Back to pixel and latent only; refused while the catalog holds models of the new families
    (their directions would have no kind to be)."""
    if not context.is_offline_mode():
        newer = op.get_bind().execute(sa.text(f"SELECT count(*) FROM models WHERE NOT ({_check(OLD)})")).scalar_one()
        if newer:
            raise RuntimeError(f"cannot downgrade below 0007: the catalog holds {newer} model(s) of the families "
                               f"{', '.join(NEW[2:])}; delete them first")
    _swap(NEW, OLD)
