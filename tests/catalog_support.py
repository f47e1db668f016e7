"""Fixtures and helpers for the catalog tests: real SQLite files and real, throwaway Postgres databases.

Loaded as a plugin (`pytest_plugins = ["catalog_support"]`) by the catalog tests, which also import its
helpers; it has no asserts to rewrite (PYTEST_DONT_REWRITE), so importing it first is fine.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

from locobank.catalog import Catalog, ModelRecord, NewDirection, RunRecord, upgrade

PG_SERVER = os.environ.get("LOCOBANK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
FP = "0123456789abcdef"
OTHER_FP = "fedcba9876543210"


@functools.cache
def pg_unreachable() -> str | None:
    """Why Postgres tests must skip, or None when the server answers."""
    try:
        import psycopg

        with psycopg.connect(PG_SERVER, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure means "not here"
        return f"PostgreSQL at {PG_SERVER} is not reachable ({type(e).__name__}: {str(e).strip().splitlines()[0]})"
    return None


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)


def _drop(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_database(template: str | None = None):
    """Create a uniquely named database (optionally a copy of ``template``); returns (name, url)."""
    name = f"locobank_t_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    base = PG_SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


@pytest.fixture
def pg_url():
    """A fresh, empty Postgres database of its own, dropped afterwards (so tests never collide)."""
    reason = pg_unreachable()
    if reason:
        pytest.skip(reason)
    name, url = _pg_database()
    try:
        yield url
    finally:
        _drop(name)


@pytest.fixture(scope="session")
def _pg_migrated_template():
    """One migrated Postgres database per test session; tests get copies (CREATE DATABASE ... TEMPLATE)."""
    reason = pg_unreachable()
    if reason:
        pytest.skip(reason)
    name, url = _pg_database()
    try:
        upgrade(url)
        yield name
    finally:
        _drop(name)


def new_identity(url: str) -> None:
    """Give a copied catalog an id of its own: copies of one template are different catalogs here,
    as catalogs each made by `db upgrade` are."""
    from sqlalchemy import text

    from locobank.catalog.connect import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE catalog_info SET catalog_id = :id"), {"id": str(uuid.uuid4())})
    finally:
        engine.dispose()


@pytest.fixture
def pg_migrated_url(_pg_migrated_template):
    """A fresh Postgres database already at head, with an id of its own, dropped afterwards."""
    name, url = _pg_database(template=_pg_migrated_template)
    try:
        new_identity(url)
        yield url
    finally:
        _drop(name)


@pytest.fixture(scope="session")
def _sqlite_migrated_template(tmp_path_factory):
    """One migrated SQLite file per session; tests get copies."""
    path = tmp_path_factory.mktemp("catalog-template") / "catalog.db"
    upgrade(f"sqlite:///{path}")
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    return path


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite file URL that does not exist yet."""
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture
def sqlite_migrated_url(tmp_path, _sqlite_migrated_template):
    """A SQLite catalog file already at head, with an id of its own."""
    path = tmp_path / "catalog.db"
    shutil.copyfile(_sqlite_migrated_template, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE catalog_info SET catalog_id = ?", (str(uuid.uuid4()),))
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request):
    """A migrated catalog URL, on a SQLite file and on a real Postgres database."""
    return request.getfixturevalue("sqlite_migrated_url" if request.param == "sqlite" else "pg_migrated_url")


@pytest.fixture
def catalog(backend_url):
    """An open catalog at head, on each backend."""
    cat = Catalog.open(backend_url)
    try:
        yield cat
    finally:
        cat.close()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def vec(seed: int, shape: tuple[int, ...] = (3, 8, 8)) -> np.ndarray:
    """A unit float32 vector, different for every seed."""
    v = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v)


def new_directions(seed: int, rank: int = 3, shape: tuple[int, ...] = (3, 8, 8)) -> list[NewDirection]:
    """What a worker would hand in for one job."""
    return [
        NewDirection(
            rank_index=i,
            singular_value=10.0 / (i + 1),
            vector=vec(seed * 100 + i, shape),
            t_edit=600,
            t_edit_frac=0.6,
            null_rank=5,
            diagnostics={"iters": 7, "residual": 1e-4},
        )
        for i in range(rank)
    ]


@dataclass
class World:
    """A small populated catalog: one model, one run, jobs over images x masks."""

    model: ModelRecord
    run: RunRecord
    pairs: list[tuple[int, int]]


def make_world(
    cat: Catalog,
    n_images: int = 2,
    labels: tuple[str, ...] = ("mouth", "eyes"),
    fingerprint: str = FP,
    params: dict | None = None,
) -> World:
    """Register a model, images, masks and a run, and enqueue every (image, mask) job."""
    model = cat.get_or_create_model(
        "local:toy-ddpm",
        fingerprint=fingerprint,
        resolution=8,
        channels=3,
        kind="pixel",
        revision="r1",
        config={"sample_size": 8},
    )
    pairs = []
    for i in range(n_images):
        image = cat.add_image(f"/data/faces/face {i} é.png", sha(f"img{i}"), width=8, height=8, channels=3)
        for label in labels:
            mask = cat.add_mask(
                image.id, label, sha(f"mask{i}{label}"), area=12, uri=f"/data/faces/face{i}_{label}.png"
            )
            pairs.append((image.id, mask.id))
    run = cat.get_or_create_run(model, params or {"rank": 3, "null_rank": 5, "t_edit": 0.6, "steps": 20})
    cat.enqueue_jobs(run.id, pairs)
    return World(model, run, pairs)


def harvest_all(cat: Catalog, world: World, owner: str = "w", rank: int = 3) -> list[int]:
    """Claim and complete every job of the world's run; returns all direction ids."""
    ids: list[int] = []
    while jobs := cat.claim_jobs(world.run.id, owner, n=10, lease_seconds=60):
        for job in jobs:
            ids += cat.complete_job(job.id, owner, new_directions(job.id, rank))
    return ids
