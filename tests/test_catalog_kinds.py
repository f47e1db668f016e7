"""Migration 0007: one catalog holds models of every family (pixel, latent, lcm, if, sdxl, sd3,
flux), on SQLite and Postgres; an unknown kind is still refused by the database; a downgrade is
refused while models of the new families are stored, and works once they are gone."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from locobank.catalog import Catalog, upgrade
from locobank.catalog.connect import _alembic_config, make_engine
from locobank.catalog.schema import MODEL_KINDS

pytest_plugins = ["catalog_support"]  # fixtures: pg_url, sqlite_url

ROW = ("INSERT INTO models (model_id, fingerprint, resolution, channels, kind, config, created_at) "
       "VALUES (:m, :fp, 8, 3, :kind, '{}', '2026-12-06 00:00:00')")


def _insert(url: str, kind: str, fp: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(ROW), {"m": f"m-{kind}", "fp": fp, "kind": kind})
    finally:
        engine.dispose()


def _downgrade(url: str, to: str) -> None:
    engine = make_engine(url, foreign_keys=False)
    try:
        with engine.connect() as conn:
            command.downgrade(_alembic_config(url, conn), to)
            conn.commit()
    finally:
        engine.dispose()


def _every_family_then_back(url: str) -> None:
    upgrade(url)
    assert MODEL_KINDS == ("pixel", "latent", "lcm", "if", "sdxl", "sd3", "flux")
    with Catalog.open(url) as cat:
        for i, kind in enumerate(MODEL_KINDS):
            cat.get_or_create_model(f"m-{kind}", fingerprint=f"{i:016x}", resolution=8, channels=3, kind=kind)
        assert [cat.get_model(f"{i:016x}").kind for i in range(len(MODEL_KINDS))] == list(MODEL_KINDS)
    with pytest.raises(sa.exc.IntegrityError):
        _insert(url, "bogus", "f" * 16)
    with pytest.raises(RuntimeError, match="cannot downgrade below 0007"):
        _downgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM models WHERE kind NOT IN ('pixel', 'latent')"))
    engine.dispose()
    _downgrade(url, "0006")
    with pytest.raises(sa.exc.IntegrityError):
        _insert(url, "sdxl", "e" * 16)  # the old constraint is back
    upgrade(url)
    _insert(url, "sdxl", "e" * 16)


def test_every_family_kind_is_stored_and_others_refused_on_sqlite(sqlite_url):
    _every_family_then_back(sqlite_url)


@pytest.mark.postgres
def test_every_family_kind_is_stored_and_others_refused_on_postgres(pg_url):
    _every_family_then_back(pg_url)
