"""An index is bound to its catalog's id, not to a path or URL: it follows a copied or moved home,
is found beside a SQLite catalog file named by a plain path, and old sidecars still bind by URL."""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from catalog_support import harvest_all, make_world
from click.testing import CliRunner

from locobank.catalog import Catalog, NewEffect
from locobank.index import build_index, catalog_folder, catalog_index_folder, index_files, index_status
from locobank.search import text_direction
from locobank_cli.main import cli

pytest_plugins = ["catalog_support"]

DIM = 12


@dataclass
class FakeClip:
    """Stands in for a CLIP model: a fixed embedding per text, no weights to load."""

    clip_id: str = "test-clip:toy"

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        rows = [torch.from_numpy(np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM)) for t in texts]
        return torch.nn.functional.normalize(torch.stack(rows).float(), dim=-1)


@pytest.fixture(autouse=True)
def fake_clip(monkeypatch):
    """``search`` and ``index build`` get the fake CLIP (the real one takes seconds to load)."""
    monkeypatch.setattr("locobank.clip.load_clip", lambda spec="toy", device=None: FakeClip())
    monkeypatch.setattr("locobank.clip.clip_id", lambda spec: FakeClip().clip_id)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fill(url: str) -> list[int]:
    """Six directions; the first two do "smile" exactly, the rest something else."""
    smile = text_direction(FakeClip(), "smile")
    with Catalog.open(url) as cat:
        ids = harvest_all(cat, make_world(cat, n_images=1, labels=("mouth", "eyes")), rank=3)
        rng = np.random.default_rng(1)
        vectors = [smile, smile] + [rng.standard_normal(DIM) for _ in ids[2:]]
        cat.put_effects([NewEffect(i, FakeClip.clip_id, v, 1.0, 5, 8.0) for i, v in zip(ids, vectors, strict=True)])
    return ids


def hit_ids(result) -> list[int]:
    assert result.exit_code == 0, result.output
    return [h["id"] for h in json.loads(result.output)]


def test_a_moved_home_keeps_its_index(tmp_path, monkeypatch):
    home = tmp_path / "home"  # conftest's LOCOBANK_HOME
    assert run("db", "upgrade").exit_code == 0
    ids = fill(f"sqlite:///{home / 'catalog.db'}")
    assert run("index", "build", "--no-embed").exit_code == 0
    moved = tmp_path / "elsewhere" / "home"
    shutil.copytree(home, moved)
    shutil.rmtree(home)
    monkeypatch.setenv("LOCOBANK_HOME", str(moved))
    assert sorted(hit_ids(run("search", "smile", "-k", "2", "--json"))) == sorted(ids[:2])
    status = json.loads(run("index", "status", "--json").output)
    assert status["exists"] and not status["stale"], status["reasons"]  # another URL, the same catalog
    assert status["path"].startswith(str(moved / "index"))


def test_search_by_plain_path_finds_the_index_beside_the_catalog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("db", "upgrade", "--db", "demo/catalog.db").exit_code == 0  # a path, not a URL
    ids = fill(f"sqlite:///{tmp_path / 'demo' / 'catalog.db'}")
    with Catalog.open("demo/catalog.db") as cat:  # where `locobank demo` builds it
        beside = catalog_folder(tmp_path / "demo", cat.catalog_id)
        build_index(cat, FakeClip.clip_id, folder=beside)
        assert catalog_index_folder(cat) == beside  # what search, index build/status and serve use
    assert sorted(hit_ids(run("search", "smile", "-k", "2", "--json", "--db", "demo/catalog.db"))) == sorted(ids[:2])
    url = f"sqlite:///{tmp_path / 'demo' / 'catalog.db'}"
    assert sorted(hit_ids(run("search", "smile", "-k", "2", "--json", "--db", url))) == sorted(ids[:2])
    status = json.loads(run("index", "status", "--json", "--db", "demo/catalog.db").output)
    assert status["path"].startswith(str(beside)) and not status["stale"]
    updated = run("index", "build", "--no-embed", "--db", "demo/catalog.db")
    assert updated.exit_code == 0 and str(beside) in updated.output  # a build updates that one, not another


def test_old_sidecars_bind_by_url_and_new_ones_by_id(sqlite_migrated_url, tmp_path):
    fill(sqlite_migrated_url)
    folder = tmp_path / "index"
    with Catalog.open(sqlite_migrated_url) as cat:
        info = build_index(cat, FakeClip.clip_id, folder=folder)
        assert info.catalog_id == cat.catalog_id
        json_path = index_files(FakeClip.clip_id, folder)[1]
        data = json.loads(json_path.read_text())

        def status_with(**changes) -> dict:
            json_path.write_text(json.dumps({**data, **changes}))
            return index_status(cat, FakeClip.clip_id, folder)

        assert not status_with(catalog="sqlite:////moved/catalog.db")["stale"]  # same id, another URL
        other = status_with(catalog_id="00000000-0000-4000-8000-000000000000")
        assert other["stale"] and other["reasons"][0].startswith("built from another catalog")
        old = {k: v for k, v in data.items() if k != "catalog_id"}
        json_path.write_text(json.dumps(old))  # written before indexes recorded the id
        assert not index_status(cat, FakeClip.clip_id, folder)["stale"]
        json_path.write_text(json.dumps({**old, "catalog": "sqlite:////other.db"}))
        assert index_status(cat, FakeClip.clip_id, folder)["reasons"][0] == "built from another catalog (sqlite:////other.db)"
        assert build_index(cat, FakeClip.clip_id, folder=folder).rebuilt  # and a build starts afresh


def test_an_index_from_before_catalog_ids_is_still_found(tmp_path):
    """A home upgraded past migration 0006 keeps the index it had, named after the catalog's URL."""
    from locobank.index.files import legacy_folder

    home = tmp_path / "home"  # conftest's LOCOBANK_HOME
    url = f"sqlite:///{home / 'catalog.db'}"
    assert run("db", "upgrade").exit_code == 0
    ids = fill(url)
    with Catalog.open(url) as cat:
        old = legacy_folder(home, cat.url)
        build_index(cat, FakeClip.clip_id, folder=old)
        assert catalog_index_folder(cat) == old
    sidecar = next(old.glob("*.json"))
    info = json.loads(sidecar.read_text())
    info.pop("catalog_id")  # as the index was written before catalogs had ids
    sidecar.write_text(json.dumps(info))
    assert sorted(hit_ids(run("search", "smile", "-k", "2", "--json"))) == sorted(ids[:2])
    status = json.loads(run("index", "status", "--json").output)
    assert status["exists"] and not status["stale"], status["reasons"]
