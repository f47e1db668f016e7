"""Alembic environment. The URL comes from the caller (``locobank.catalog.upgrade``), never from a file.

Order: an open connection handed over in ``config.attributes["connection"]``; a URL in
``config.attributes["url"]``; ``alembic -x db=URL``; ``sqlalchemy.url`` in the ini; then the same
default as locobank (``$LOCOBANK_DB`` or SQLite under ``$LOCOBANK_HOME``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from locobank.catalog.connect import make_engine, resolve_url
from locobank.catalog.schema import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    """The database to migrate, from the most explicit source available."""
    return resolve_url(
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("db")
        or config.get_main_option("sqlalchemy.url")
    )


def _configure(**kwargs) -> None:
    """Options shared by online and offline runs; SQLite needs batch mode to alter tables."""
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_offline() -> None:
    """Emit SQL instead of running it (``alembic upgrade head --sql``)."""
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


MIGRATION_LOCK = 0x10C0BA4C  # any constant; the same in every locobank process


def _run(connection: Connection) -> None:
    """Run the migrations on one connection, one migrator at a time.

    Workers that all start with ``Catalog.open(url, upgrade=True)`` queue here; the first migrates,
    the others then find the schema at head and do nothing. On SQLite, ``BEGIN IMMEDIATE`` (set by
    ``upgrade``) gives the same queueing.
    """
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


def run_online() -> None:
    """Migrate through a handed-over connection, or one of our own (foreign keys off for batch copies)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), foreign_keys=False)
    try:
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            _run(conn)  # in one transaction begun here: alembic would commit each step on SQLite
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
