"""``locobank db``: create or migrate the catalog database."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from .common import fail_on_library_errors

DB_HELP = (
    "Catalog database: a SQLite file path (demo/catalog.db) or any SQLAlchemy URL (sqlite:///path.db, "
    "postgresql+psycopg://user@host/db). "
    "Default: $LOCOBANK_DB, else sqlite:///$LOCOBANK_HOME/catalog.db (LOCOBANK_HOME defaults to ~/.locobank)."
)


def _to_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A plain path becomes its SQLite URL here, so every command (and its messages) sees a URL."""
    if not value:
        return None
    from locobank.catalog.connect import as_url

    return as_url(value)


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--db PATH|URL`` option every catalog command shares."""
    return click.option("--db", "db_url", metavar="PATH|URL", default=None, help=DB_HELP, callback=_to_url)(f)


@contextlib.contextmanager
def open_catalog(db_url: str | None) -> Iterator[Any]:
    """Open the catalog for one command and close it after (errors reach ``fail_on_library_errors``)."""
    from locobank.catalog import Catalog

    catalog = Catalog.open(db_url)
    try:
        yield catalog
    finally:
        catalog.close()


@click.group("db")
def db() -> None:
    """Create or migrate the catalog (SQLite by default, or any SQLAlchemy URL such as Postgres)."""


@db.command("upgrade")
@db_option
@fail_on_library_errors
def upgrade_cmd(db_url: str | None) -> None:
    """Create the catalog if it is empty, or migrate it to this version's schema.

    Safe to run again: an up-to-date catalog is left as it is. Run it once per database before
    harvesting; every worker sharing a Postgres catalog then just uses --db.
    """
    from locobank.catalog.connect import resolve_url, safe_url, upgrade

    url = resolve_url(db_url)
    head = upgrade(url)
    click.echo(f"catalog {safe_url(url)} is at schema revision {head} (latest)")
