"""Several worker processes claiming from one run: no job is claimed-and-completed twice."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from catalog_support import make_world

from locobank.catalog import Catalog

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from locobank.catalog import Catalog, NewDirection
    from locobank.errors import LeaseLost

    url, run_id, owner = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    done, lost = [], []
    with Catalog.open(url) as cat:
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        sys.stdin.readline()  # start together, so the claims really race
        while jobs := cat.claim_jobs(run_id, owner, n=2, lease_seconds=120):
            for job in jobs:
                v = np.full((3, 4, 4), job.id + 1.0, np.float32)
                try:
                    cat.complete_job(job.id, owner, [NewDirection(0, 1.0, v, 600, 0.6, 5, {"owner": owner})])
                    done.append(job.id)
                except LeaseLost:
                    lost.append(job.id)
    print(json.dumps({"done": done, "lost": lost}))
    """
)


def run_workers(url: str, run_id: int, n: int) -> list[dict]:
    """Start n worker processes, release them at once, and collect what each completed."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(run_id), f"w{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def check_exactly_once(url: str, results: list[dict], n_jobs: int) -> None:
    completed = [j for r in results for j in r["done"]]
    assert sorted(completed) == sorted(set(completed)), "a job was completed by two workers"
    assert not any(r["lost"] for r in results), "a live lease was taken over"
    with Catalog.open(url) as cat:
        assert len(completed) == n_jobs
        assert cat.job_counts() == {"pending": 0, "running": 0, "done": n_jobs, "failed": 0}
        directions = cat.list_directions()
        assert len(directions) == n_jobs and len({d.job_id for d in directions}) == n_jobs
        by_job = {d.job_id: d for d in directions}
        for r in results:  # each direction was written by the worker that completed its job
            for job_id in r["done"]:
                owner = by_job[job_id].diagnostics["owner"]
                assert cat.get_job(job_id).lease_owner == owner
                assert cat.get_job(job_id).attempts == 1
        assert float(cat.load_vector(directions[0].id)[0, 0, 0]) == directions[0].job_id + 1.0


def _setup(url: str) -> tuple[int, int]:
    with Catalog.open(url) as cat:
        w = make_world(cat, n_images=20, labels=("mouth", "eyes", "hair"))
        return w.run.id, len(w.pairs)


@pytest.mark.postgres
@pytest.mark.slow
def test_four_workers_on_postgres_complete_each_job_once(pg_migrated_url):
    run_id, n_jobs = _setup(pg_migrated_url)
    results = run_workers(pg_migrated_url, run_id, 4)
    check_exactly_once(pg_migrated_url, results, n_jobs)
    assert sum(1 for r in results if r["done"]) >= 2, "the work was not shared at all"


def test_three_workers_on_sqlite_complete_each_job_once(sqlite_migrated_url):
    run_id, n_jobs = _setup(sqlite_migrated_url)
    results = run_workers(sqlite_migrated_url, run_id, 3)
    check_exactly_once(sqlite_migrated_url, results, n_jobs)


OPENER = "import sys; from locobank.catalog import Catalog; Catalog.open(sys.argv[1], upgrade=True).close()"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_workers_that_all_upgrade_at_start_do_not_collide(backend, tmp_path, request):
    """Every worker of `harvest --workers N` may open with upgrade=True on an empty database."""
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, url], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Catalog.open(url) as cat:
        assert cat.stats()["directions"] == 0
