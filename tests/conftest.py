"""Shared fixtures: offline, a private LOCOBANK_HOME, and tiny seeded models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, no spin-waiting
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Every test gets its own LOCOBANK_HOME and no LOCOBANK_DB from the caller's shell."""
    monkeypatch.setenv("LOCOBANK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOCOBANK_DB", raising=False)
    yield
