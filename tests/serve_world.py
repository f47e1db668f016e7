"""A small harvested catalog on the shipped toy model for the `locobank serve` tests: one face's
mouth (and one direction of another, tiny model), embedded with the toy CLIP and indexed, plus
unseen faces with their masks to upload."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

import pytest

from locobank.catalog import Catalog
from locobank.clip import load_clip
from locobank.embed import embed_directions
from locobank.harvest import HarvestParams, discover, plan, work
from locobank.index import build_index
from locobank.models import load_model
from locobank.paths import TOY_DDPM
from locobank.search import name_directions
from locobank.toyworld import write_dataset
from tiny import save_tiny_pipeline


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_world(root: Path) -> dict:
    """Harvest, embed, name and index; returns the catalog URL, index folder and unseen faces."""
    write_dataset(root / "faces", 1, 1_000_000)
    write_dataset(root / "unseen", 2, 1_010_000)
    write_dataset(root / "other", 1, 1_020_000)
    db = f"sqlite:///{root / 'catalog.db'}"
    model = load_model(TOY_DDPM, device="cpu")
    clip = load_clip("toy", device="cpu")
    with Catalog.open(db, upgrade=True) as cat:
        params = HarvestParams.from_defaults(model.settings, rank=3, null_rank=8, steps=8, iters=5)
        run = plan(cat, model, discover(root / "faces", labels={"mouth"}), params)
        work(cat, model, run.id, params)
        toy_ids = [d.id for d in cat.list_directions()]
        embed_directions(cat, clip, ids=toy_ids, n_probes=2, steps=8, device="cpu")
        name_directions(cat, clip)
        build_index(cat, clip.clip_id, folder=root / "index")
        tiny = load_model(save_tiny_pipeline(root / "tiny32", size=32), device="cpu")
        small = HarvestParams(rank=1, null_rank=2, t_edit=0.3, steps=3, iters=3)
        other_run = plan(cat, tiny, discover(root / "other", labels={"mouth"}), small)
        work(cat, tiny, other_run.id, small)
        other_ids = [d.id for d in cat.list_directions() if d.id not in toy_ids]
    return {"db": db, "index": root / "index", "toy_ids": toy_ids, "other_ids": other_ids,
            "face": root / "unseen" / "face_1010000.png", "mask": root / "unseen" / "face_1010000_mouth.png",
            "face2": root / "unseen" / "face_1010001.png", "root": root}


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory) -> dict:
    """One harvested toy catalog for every serve test of the session (about two minutes on a CPU)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build_world(tmp_path_factory.mktemp("serve_world"))
    # Under pytest-xdist the workers share one world: the first builds it, the others wait and read it.
    root = tmp_path_factory.getbasetemp().parent / "serve_world"
    root.mkdir(exist_ok=True)
    record = root / "world.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            world = build_world(root)
            record.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in world.items()}))
    world = json.loads(record.read_text())
    return {k: Path(v) if isinstance(v, str) and k != "db" else v for k, v in world.items()}


@pytest.fixture(scope="module")
def served_app(toy_world):
    """The app launched on the toy world's catalog on a free port: (world, server)."""
    from locobank.app.server import ServeOptions, start

    srv = start(ServeOptions(db=toy_world["db"], port=free_port(), device="cpu", index=toy_world["index"]))
    try:
        yield toy_world, srv
    finally:
        srv.close()
