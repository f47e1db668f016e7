"""Where the catalog lives, how to connect to it, and how its schema is migrated."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from locobank.errors import CatalogError, SchemaOutOfDate

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000


def default_home() -> Path:
    """``$LOCOBANK_HOME`` or ``~/.locobank``: one place for a user's catalog and caches."""
    return Path(os.environ.get("LOCOBANK_HOME") or Path.home() / ".locobank").expanduser()


def as_url(db: str) -> str:
    """A database URL as given, or a plain path (no ``://``) as the URL of that SQLite file, so
    ``--db demo/catalog.db`` and ``--db sqlite:///demo/catalog.db`` name the same catalog everywhere."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def resolve_url(url: str | None = None) -> str:
    """Explicit URL or SQLite file path, else ``$LOCOBANK_DB`` (the same), else SQLite under the home
    dir (which is created)."""
    if url:
        return as_url(url)
    if os.environ.get("LOCOBANK_DB"):
        return as_url(os.environ["LOCOBANK_DB"])
    home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'catalog.db'}"


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


def canonical_url(url: str) -> str:
    """The URL that names one catalog however it was typed: a SQLite file by its absolute path, any
    other database with its password hidden. Indexes record it for messages; they are bound to the
    catalog's id (``Catalog.catalog_id``), which survives a move."""
    path = sqlite_file(url)
    if path is not None:
        return f"sqlite:///{path.expanduser().resolve()}"
    return safe_url(url)


def parse_url(url: str) -> URL:
    """A SQLAlchemy URL, or a ``CatalogError`` that shows what was given."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        shown = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)  # the password hidden, the rest as typed
        raise CatalogError(f"not a database URL: {shown!r} ({e}; expected e.g. sqlite:///catalog.db or "
                           f"postgresql+psycopg://user@host:5432/db)") from e


def sqlite_file(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL, or None (memory, other backends)."""
    u = parse_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return None
    return Path(u.database)


def make_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """An engine tuned per backend: SQLite gets WAL, a busy timeout, foreign keys and explicit BEGINs."""
    u = parse_url(url)
    backend = u.get_backend_name()
    if backend == "postgresql" and u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")  # the driver we ship, not psycopg2
    kwargs: dict = {}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        if not u.database or u.database == ":memory:":
            kwargs["poolclass"] = StaticPool  # one shared connection, or each checkout sees an empty db
            kwargs["connect_args"]["check_same_thread"] = False
    elif backend == "postgresql":
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(u, **kwargs)
    except (ArgumentError, ImportError) as e:
        raise CatalogError(f"cannot use database URL {safe_url(url)}: {e}") from e
    if backend == "sqlite":
        _tune_sqlite(engine, foreign_keys=foreign_keys)
    return engine


def _tune_sqlite(engine: Engine, *, foreign_keys: bool) -> None:
    """Take transaction control from pysqlite so writers can ``BEGIN IMMEDIATE`` and never deadlock."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI objects
        dbapi_conn.isolation_level = None  # pysqlite must not BEGIN on its own; we do it below
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: no corruption, and commits survive kill -9
        cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def refuse_writes(engine: Engine) -> None:
    """Make every connection of ``engine`` read-only in the database itself (SQLite ``query_only``,
    a read-only Postgres session), so a viewer cannot change the catalog by any path; connections
    already pooled are dropped."""

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI objects
        cur = dbapi_conn.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        else:
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_conn.commit()
        cur.close()

    engine.dispose()


def migrations_dir() -> Path:
    """The Alembic folder: installed with the package as ``locobank/migrations``, or beside it in a
    source checkout (``migrations/``)."""
    from ..paths import shipped

    path = shipped("migrations", "migrations")
    if not (path / "env.py").is_file():
        raise CatalogError(f"cannot find the catalog migrations at {path}; reinstall locobank (pip install .)")
    return path


def _alembic_config(url: str, connection: Connection | None = None):  # noqa: ANN202 - alembic type
    """An in-memory Alembic config: no alembic.ini needed, the URL comes from the caller."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(migrations_dir())).get_current_head()
    if head is None:  # pragma: no cover - the folder ships with migrations
        raise CatalogError("the migrations folder has no revisions")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database says it is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None, *, engine: Engine | None = None) -> str:
    """Migrate the catalog to the newest schema (creating it if empty); returns the head revision."""
    from alembic import command

    url = resolve_url(url)
    if sqlite_file(url) is not None:
        sqlite_file(url).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    own = engine is None
    # Foreign keys off while migrating: SQLite batch migrations copy tables that others reference.
    eng = engine if engine is not None else make_engine(url, foreign_keys=False)
    try:
        with eng.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            # One transaction for every step, begun here: alembic would otherwise commit after each
            # migration on SQLite (no transactional DDL, it assumes), and another worker could run
            # the next step in between with a stale plan. BEGIN IMMEDIATE: one migrator at a time.
            command.upgrade(_alembic_config(url, conn), "head")
    except SQLAlchemyError as e:
        raise CatalogError(f"cannot migrate the catalog at {safe_url(url)}: {e}") from e
    finally:
        if own:
            eng.dispose()
    log.info("catalog at %s is at revision %s", safe_url(url), head_revision())
    return head_revision()


def check_schema(engine: Engine, url: str) -> None:
    """Refuse a database that is not at the code's head, with the command that fixes it."""
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    except SQLAlchemyError as e:
        raise CatalogError(f"cannot open the catalog at {safe_url(url)}: {e}") from e
    head = head_revision()
    if current != head:
        state = "is empty" if current is None else f"is at revision {current}, the code needs {head}"
        raise SchemaOutOfDate(f"the catalog at {safe_url(url)} {state}; run `locobank db upgrade --db {safe_url(url)}`")
