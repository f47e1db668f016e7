"""Shared fixtures: offline, a private LOCOBANK_HOME, and tiny seeded models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, no spin-waiting
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and so the harvests they start as subprocesses
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Every test gets its own LOCOBANK_HOME and no LOCOBANK_DB from the caller's shell."""
    monkeypatch.setenv("LOCOBANK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOCOBANK_DB", raising=False)
    yield


# The files whose tests take longest (`make test` prints the slowest), collected first: with
# `--dist loadfile` a file stays on one worker, and a long file started last would keep one worker
# busy after the other has finished (a minute of the suite's 10 on two cores).
LONGEST_FIRST = ("test_toy_models.py", "test_toy_sd.py", "test_harvest.py", "test_latent_cli.py",
                 "test_search_apply.py", "test_rank.py", "test_serve_api.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
