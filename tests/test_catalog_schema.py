"""The schema comes only from migrations, and `upgrade head` gives exactly the models' schema."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, text

from locobank.catalog import Catalog, resolve_url, upgrade
from locobank.catalog.connect import _alembic_config, head_revision, make_engine
from locobank.catalog.schema import Base
from locobank.errors import CatalogError, SchemaOutOfDate

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...

TABLES = {"models", "images", "masks", "harvest_runs", "jobs", "directions", "vectors", "alembic_version"}
TABLES |= {"effects", "previews"}  # 0002 (0003 adds previews.locality)
TABLES |= {"catalog_info"}  # 0006


def assert_schema_is_models(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            assert compare_metadata(ctx, Base.metadata) == []
            assert set(inspect(conn).get_table_names()) == TABLES
            assert ctx.get_current_revision() == head_revision()
    finally:
        engine.dispose()


def test_upgrade_head_on_empty_sqlite_equals_models(sqlite_url):
    assert upgrade(sqlite_url) == head_revision()
    assert_schema_is_models(sqlite_url)


@pytest.mark.postgres
def test_upgrade_head_on_empty_postgres_equals_models(pg_url):
    upgrade(pg_url)
    assert_schema_is_models(pg_url)
    engine = make_engine(pg_url)
    with engine.connect() as conn:  # vectors skip pglz: float noise does not compress
        storage = conn.execute(
            text("SELECT attstorage FROM pg_attribute WHERE attrelid = 'vectors'::regclass AND attname = 'data'")
        )
        assert storage.scalar_one() == "e"
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_upgrade_runs_every_step_in_one_transaction(backend, request):
    """Alembic commits after each step on SQLite unless the transaction is the caller's; a worker
    could then run the next step between two of another's with a stale plan (seen in CI as a
    KeyError in 0005's batch copy). The whole upgrade commits once, holding the migration lock."""
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    engine = make_engine(url, foreign_keys=False)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    try:
        upgrade(url, engine=engine)
    finally:
        engine.dispose()
    assert len(commits) == 1
    assert_schema_is_models(url)


def test_upgrade_is_idempotent_and_downgrade_empties(sqlite_url):
    upgrade(sqlite_url)
    upgrade(sqlite_url)
    assert_schema_is_models(sqlite_url)
    engine = make_engine(sqlite_url, foreign_keys=False)
    with engine.connect() as conn:
        command.downgrade(_alembic_config(sqlite_url, conn), "base")
        conn.commit()
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()


def test_offline_sql_renders_for_both_dialects():
    for url in ("sqlite:///x.db", "postgresql+psycopg://u@h/db"):
        cfg = _alembic_config(url)
        cfg.output_buffer = buf = io.StringIO()
        command.upgrade(cfg, "head", sql=True)
        assert "CREATE TABLE directions" in buf.getvalue()
    assert "SET STORAGE EXTERNAL" in buf.getvalue()


def test_open_refuses_a_missing_catalog_without_creating_it(tmp_path):
    path = tmp_path / "nope.db"
    with pytest.raises(SchemaOutOfDate, match="locobank db upgrade"):
        Catalog.open(f"sqlite:///{path}")
    assert not path.exists()


def test_open_refuses_a_database_not_at_head(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # exists, but empty
    with pytest.raises(SchemaOutOfDate, match="is empty; run `locobank db upgrade"):
        Catalog.open(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('0000old')")
    with pytest.raises(SchemaOutOfDate, match="revision 0000old"):
        Catalog.open(f"sqlite:///{path}")


def test_open_with_upgrade_creates_the_catalog(tmp_path):
    with Catalog.open(f"sqlite:///{tmp_path / 'sub' / 'c.db'}", upgrade=True) as cat:
        assert cat.stats()["directions"] == 0
    with Catalog.open("sqlite://", upgrade=True) as cat:  # in memory: migrated on the catalog's own connection
        assert cat.state_token()


def test_a_catalog_has_one_id_made_by_the_migration(sqlite_url, tmp_path):
    import uuid

    upgrade(sqlite_url)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(other)
    with Catalog.open(sqlite_url) as a, Catalog.open(other) as b:
        assert uuid.UUID(a.catalog_id).version == 4 and a.catalog_id != b.catalog_id
        first = a.catalog_id
    upgrade(sqlite_url)  # already at head: the id stays
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "catalog.db").rename(moved / "catalog.db")
    with Catalog.open(str(moved / "catalog.db")) as again:  # moved, and reached by a plain path
        assert again.catalog_id == first and again.url == f"sqlite:///{moved / 'catalog.db'}"
    url = f"sqlite:///{moved / 'catalog.db'}"
    engine = make_engine(url, foreign_keys=False)
    with engine.connect() as conn:
        command.downgrade(_alembic_config(url, conn), "0005")
        conn.commit()
        assert "catalog_info" not in inspect(conn).get_table_names()
    engine.dispose()
    upgrade(url)
    with Catalog.open(url) as fresh:
        assert fresh.catalog_id != first  # made again by 0006


def test_a_plain_path_is_a_sqlite_catalog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_url("demo/catalog.db") == f"sqlite:///{tmp_path / 'demo' / 'catalog.db'}"
    assert resolve_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.setenv("LOCOBANK_DB", "env.db")
    assert resolve_url() == f"sqlite:///{tmp_path / 'env.db'}"


def test_url_resolution_order(tmp_path, monkeypatch):
    home = tmp_path / "home"  # conftest points LOCOBANK_HOME here
    assert resolve_url() == f"sqlite:///{home / 'catalog.db'}"
    assert home.is_dir()
    monkeypatch.setenv("LOCOBANK_DB", "sqlite:///from-env.db")
    assert resolve_url() == "sqlite:///from-env.db"
    assert resolve_url("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_sqlite_is_wal_with_foreign_keys_and_busy_timeout(sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    engine.dispose()


def test_bad_urls_are_typed_errors(tmp_path):
    with pytest.raises(CatalogError, match="not a database URL"):
        Catalog.open("postgresql+psycopg://u@h:notaport/db")
    with pytest.raises(SchemaOutOfDate, match="there is no catalog at .*not a url"):
        Catalog.open("not a url")  # no "://": a SQLite file path, and there is none
    with pytest.raises(CatalogError, match="cannot"):
        Catalog.open("postgresql+psycopg://nobody@127.0.0.1:1/none", upgrade=True)


def test_catalog_and_browse_cli_do_not_import_torch():
    code = "import sys, locobank.catalog, locobank_cli.db, locobank_cli.browse; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
