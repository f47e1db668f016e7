"""Vector storage: BLOBs in the catalog database vs a content-addressed file store beside it.

Run:  .venv/bin/python tests/bench/bench_vectorstore.py [--n-small 400] [--n-large 60] [--pg URL|--no-pg]

Both sides store the same canonical safetensors blob (``encode_vector``) and read it back through
the same integrity check (``verify_vector``: blob sha256, tensor sha256, fingerprint). Writes commit
in transactions of ``--per-job`` vectors, like ``complete_job``.

- blob: INSERT the bytes into the catalog's own ``vectors`` table (made by the real migration, so
  on Postgres its column is STORAGE EXTERNAL), COMMIT; read back with ``read_vector_blobs``, the
  catalog's own read path (binary wire format on Postgres).
- file: write ``objects/ab/<sha>`` to a temp file, fsync, rename, fsync the folder, then INSERT a
  row naming the file and COMMIT. The fsyncs are what makes "file written in full before the row
  commits" true after a power cut; without them, a crash can leave a committed row with no file.

Prints throughput for each and the ratio blob/file (above 1 means BLOBs are faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, delete, insert, select, text

from locobank.catalog.base import read_vector_blobs
from locobank.catalog.connect import make_engine, upgrade
from locobank.catalog.safetensors_io import encode_vector, sha256_hex, to_raw, verify_vector
from locobank.catalog.schema import Vector, utcnow

FP = "0123456789abcdef"
meta = MetaData()
files = Table(
    "bench_file",
    meta,
    Column("sha256", String(64), primary_key=True),
    Column("nbytes", Integer),
    Column("path", String(256)),
)


def make_blobs(n: int, shape: tuple[int, ...], seed: int) -> list[tuple[str, bytes]]:
    """Distinct random unit vectors as (address, safetensors blob)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = rng.standard_normal(shape).astype(np.float32)
        raw, _ = to_raw(v / np.linalg.norm(v))
        blob = encode_vector(raw, FP)
        out.append((sha256_hex(blob), blob))
    return out


def fsync_dir(path: Path) -> None:
    """Make a rename durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(root: Path, sha: str, blob: bytes) -> str:
    """Atomic content-addressed write: temp, fsync, rename, fsync folder."""
    folder = root / sha[:2]
    folder.mkdir(exist_ok=True)
    final = folder / sha
    tmp = folder / f".{sha}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(folder)
    return str(final.relative_to(root))


def bench_backend(url: str, root: Path, items: list[tuple[str, bytes]], per_job: int) -> dict[str, float]:
    """Seconds for each of: blob write, blob read, file write, file read (over all items)."""
    upgrade(url)
    engine = make_engine(url)
    meta.drop_all(engine)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(delete(Vector))
    t = {}
    start = time.perf_counter()
    for i in range(0, len(items), per_job):
        with engine.begin() as conn:
            rows = [
                {"sha256": s, "nbytes": len(b), "data": b, "created_at": utcnow()} for s, b in items[i : i + per_job]
            ]
            conn.execute(insert(Vector), rows)
    t["blob_write"] = time.perf_counter() - start

    start = time.perf_counter()
    with engine.connect() as conn:
        for sha, _ in items:
            verify_vector(read_vector_blobs(conn, [sha])[sha], sha, FP, "bench")
    t["blob_read"] = time.perf_counter() - start

    start = time.perf_counter()
    for i in range(0, len(items), per_job):
        chunk = items[i : i + per_job]
        rows = [{"sha256": s, "nbytes": len(b), "path": write_file(root, s, b)} for s, b in chunk]
        with engine.begin() as conn:
            conn.execute(insert(files), rows)
    t["file_write"] = time.perf_counter() - start

    start = time.perf_counter()
    with engine.connect() as conn:
        for sha, _ in items:
            rel = conn.execute(select(files.c.path).where(files.c.sha256 == sha)).scalar_one()
            verify_vector((root / rel).read_bytes(), sha, FP, "bench")
    t["file_read"] = time.perf_counter() - start
    meta.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(delete(Vector))
    engine.dispose()
    return t


def report(backend: str, label: str, items: list[tuple[str, bytes]], t: dict[str, float]) -> None:
    """One table row per operation: vectors/s, MB/s, and blob/file ratio."""
    n, mb = len(items), sum(len(b) for _, b in items) / 1e6
    for op in ("write", "read"):
        b, f = t[f"blob_{op}"], t[f"file_{op}"]
        print(
            f"{backend:<9} {label:<16} {op:<12} blob {n / b:8.0f} vec/s {mb / b:7.1f} MB/s | "
            f"file {n / f:8.0f} vec/s {mb / f:7.1f} MB/s | blob/file {f / b:5.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-small", type=int, default=400, help="3x32x32 fp32 vectors (toy model)")
    parser.add_argument("--n-large", type=int, default=60, help="3x256x256 fp32 vectors (CelebA-HQ 256)")
    parser.add_argument("--per-job", type=int, default=5, help="vectors per transaction (the rank r)")
    parser.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="Postgres server to bench on (a scratch database is created and dropped)",
    )
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()

    sets = [
        ("3x32x32 fp32", make_blobs(args.n_small, (3, 32, 32), 0)),
        ("3x256x256 fp32", make_blobs(args.n_large, (3, 256, 256), 1)),
    ]
    print(f"blob sizes: {len(sets[0][1][0][1])} B and {len(sets[1][1][0][1])} B; {args.per_job} vectors per commit\n")
    work = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    backends = [("sqlite", f"sqlite:///{work / 'bench.db'}")]
    scratch = None
    if not args.no_pg:
        try:
            admin = create_engine(args.pg, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
            scratch = f"lb_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{scratch}"'))
            url = admin.url.set(database=scratch).render_as_string(hide_password=False)
            backends.append(("postgres", url))
        except Exception as e:  # noqa: BLE001 - a bench just reports and goes on
            print(f"postgres skipped: {type(e).__name__}: {str(e).splitlines()[0]}\n")
            scratch = None
    try:
        for backend, url in backends:
            for label, items in sets:
                root = work / f"objects-{backend}-{label.split()[0]}"
                root.mkdir()
                report(backend, label, items, bench_backend(url, root, items, args.per_job))
    finally:
        if scratch is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
