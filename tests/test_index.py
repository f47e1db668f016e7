"""The FAISS search index: build, search, incremental add and delete, staleness, signs, IVF."""

from __future__ import annotations

import json

import numpy as np
import pytest
from catalog_support import harvest_all, make_world

from locobank.catalog import Catalog, NewEffect
from locobank.errors import IndexMissing, InputError, SearchIndexError
from locobank.index import (
    LoadedIndex,
    auto_nlist,
    build_index,
    index_files,
    index_status,
    load_index,
    resolve_factory,
)

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...

CLIP = "toy:sha256:feedbeef"
DIM = 16


def unit_rows(n: int, dim: int = DIM, seed: int = 0, clusters: int = 8) -> np.ndarray:
    """Clustered unit vectors, like effect embeddings of a few kinds of edit."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + 0.4 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def add_directions(cat: Catalog, n_jobs: int, tag: str) -> list[int]:
    """3 * n_jobs new directions (a fresh run each time, so jobs never repeat)."""
    world = make_world(cat, n_images=n_jobs, labels=("mouth",), params={"rank": 3, "tag": tag})
    return harvest_all(cat, world, rank=3)


def embed(cat: Catalog, ids: list[int], seed: int) -> dict[int, np.ndarray]:
    """Store a synthetic effect for each id; returns them."""
    vectors = unit_rows(len(ids), seed=seed)
    cat.put_effects([NewEffect(i, CLIP, v, 0.8, 5, 8.0) for i, v in zip(ids, vectors, strict=True)])
    return dict(zip(ids, vectors, strict=True))


def top_ids(folder, query: np.ndarray, k: int = 5) -> list[int]:
    _, ids = load_index(CLIP, folder).search(query, k)
    return [int(i) for i in ids[0] if i >= 0]


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "index"


def test_build_search_and_files(catalog, folder):
    ids = add_directions(catalog, 4, "a")
    effects = embed(catalog, ids, seed=1)
    info = build_index(catalog, CLIP, folder=folder)
    assert (info.ntotal, info.dim, info.factory, info.rebuilt, info.added) == (12, DIM, "Flat", True, 12)
    assert info.max_direction_id == max(ids) and info.catalog == catalog.url and "***" not in info.clip_id
    faiss_path, json_path = index_files(CLIP, folder)
    meta = json.loads(json_path.read_text())
    for key in ("clip_id", "factory", "dim", "ntotal", "catalog", "catalog_state", "built_at", "max_direction_id"):
        assert key in meta
    assert meta["catalog_state"] == catalog.state_token() and meta["effects_state"] == catalog.effects_state(CLIP).token
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == sorted(
        [faiss_path.name, json_path.name]
    )  # temp files renamed away
    loaded = load_index(CLIP, folder)
    assert loaded.ntotal == 12 and loaded.ids().tolist() == sorted(ids)
    scores, hits = loaded.search(np.stack([effects[ids[3]], effects[ids[7]]]), 3)
    assert hits.dtype == np.int64 and hits.shape == (2, 3)
    assert hits[:, 0].tolist() == [ids[3], ids[7]] and scores[:, 0] == pytest.approx([1.0, 1.0], abs=1e-5)
    padded_scores, padded = loaded.search(effects[ids[0]], 20)  # k > ntotal: padded with -1 / -inf
    assert (padded[0, 12:] == -1).all() and np.isneginf(padded_scores[0, 12:]).all()
    status = index_status(catalog, CLIP, folder)
    assert status["exists"] and not status["stale"] and status["reasons"] == [] and status["ntotal"] == 12


def test_incremental_add_delete_and_reembed(catalog, folder):
    first = add_directions(catalog, 3, "a")
    embed(catalog, first, seed=1)
    build_index(catalog, CLIP, folder=folder)

    more = add_directions(catalog, 2, "b")
    effects = embed(catalog, more, seed=2)
    status = index_status(catalog, CLIP, folder)
    assert status["stale"] and status["reasons"] == ["6 new directions"] and status["new"] == 6
    info = build_index(catalog, CLIP, folder=folder)
    assert (info.rebuilt, info.added, info.removed, info.ntotal) == (False, 6, 0, 15)
    assert top_ids(folder, effects[more[2]])[0] == more[2]

    catalog.delete_direction(more[2])
    catalog.delete_direction(first[0])
    status = index_status(catalog, CLIP, folder)
    assert status["stale"] and status["reasons"] == ["2 deleted directions"]
    info = build_index(catalog, CLIP, folder=folder)
    assert (info.rebuilt, info.added, info.removed, info.ntotal) == (False, 0, 2, 13)
    assert more[2] not in top_ids(folder, effects[more[2]], k=15)

    new_vector = -effects[more[0]]
    catalog.put_effects([NewEffect(more[0], CLIP, new_vector, 0.9, 5, 4.0)])
    assert index_status(catalog, CLIP, folder)["reasons"] == ["1 re-embedded direction"]
    info = build_index(catalog, CLIP, folder=folder)
    assert (info.rebuilt, info.added, info.removed, info.ntotal) == (False, 1, 0, 13)
    assert top_ids(folder, new_vector)[0] == more[0]
    assert not index_status(catalog, CLIP, folder)["stale"]
    again = build_index(catalog, CLIP, folder=folder)  # nothing changed: nothing to do
    assert (again.added, again.removed, again.ntotal) == (0, 0, 13)


def test_loaded_indexes_are_reused_until_the_files_change(catalog, folder):
    ids = add_directions(catalog, 2, "a")
    embed(catalog, ids, seed=1)
    build_index(catalog, CLIP, folder=folder)
    first = load_index(CLIP, folder)
    assert load_index(CLIP, folder) is first  # a second search does not read the index again
    assert load_index(CLIP, folder, cache=False) is not first
    embed(catalog, add_directions(catalog, 1, "b"), seed=2)
    build_index(catalog, CLIP, folder=folder)
    second = load_index(CLIP, folder)
    assert second is not first and (first.ntotal, second.ntotal) == (6, 9)


def test_directions_without_effects_do_not_make_the_index_stale(catalog, folder):
    ids = add_directions(catalog, 2, "a")
    embed(catalog, ids, seed=1)
    build_index(catalog, CLIP, folder=folder)
    add_directions(catalog, 1, "b")  # harvested, not embedded yet
    status = index_status(catalog, CLIP, folder)
    assert not status["stale"] and status["without_effect"] == 3 and "not embedded" in status["notes"][0]
    assert status["catalog_state"] != catalog.state_token()


def test_factory_change_rebuilds_and_ivf_updates_in_place(sqlite_migrated_url, folder):
    with Catalog.open(sqlite_migrated_url) as cat:
        ids = add_directions(cat, 30, "a")  # 90 directions
        embed(cat, ids, seed=3)
        assert build_index(cat, CLIP, folder=folder).resolved_factory == "Flat"
        info = build_index(cat, CLIP, folder=folder, factory="IVF")
        assert info.rebuilt and info.resolved_factory == f"IVF{auto_nlist(90)},Flat" and info.trained_on == 90
        assert info.nprobe == auto_nlist(90)  # fewer than 8 cells: visit them all
        cat.delete_direction(ids[5])
        info = build_index(cat, CLIP, folder=folder, factory="IVF")
        assert (info.rebuilt, info.removed, info.ntotal) == (False, 1, 89)  # IVF removes natively
        assert ids[5] not in load_index(CLIP, folder).ids().tolist()
        kept = build_index(cat, CLIP, folder=folder)  # no factory given: keep the index's own
        assert (kept.factory, kept.rebuilt, kept.added) == ("IVF", False, 0)
        again = build_index(cat, CLIP, folder=folder, rebuild=True)
        assert (again.factory, again.rebuilt, again.added) == ("IVF", True, 89)
        assert build_index(cat, CLIP, folder=folder, factory="Flat").rebuilt


def test_hnsw_cannot_remove_so_a_delete_rebuilds(sqlite_migrated_url, folder):
    with Catalog.open(sqlite_migrated_url) as cat:
        ids = add_directions(cat, 4, "a")
        effects = embed(cat, ids, seed=4)
        build_index(cat, CLIP, folder=folder, factory="HNSW16")
        cat.delete_direction(ids[1])
        info = build_index(cat, CLIP, folder=folder, factory="HNSW16")
        assert info.rebuilt and info.ntotal == 11
        assert ids[1] not in top_ids(folder, effects[ids[1]], k=11)


def test_signed_search_returns_the_same_direction_with_the_opposite_sign(catalog, folder):
    ids = add_directions(catalog, 4, "a")
    effects = embed(catalog, ids, seed=5)
    build_index(catalog, CLIP, folder=folder)
    loaded = load_index(CLIP, folder)
    v = effects[ids[6]]
    plus, minus = loaded.search_signed(v, 5), loaded.search_signed(-v, 5)
    assert (plus[0].id, plus[0].sign) == (ids[6], 1) and (minus[0].id, minus[0].sign) == (ids[6], -1)
    assert plus[0].score == pytest.approx(1.0, abs=1e-5) and minus[0].score == pytest.approx(1.0, abs=1e-5)
    assert [(h.id, h.sign) for h in plus] == [(h.id, -h.sign) for h in minus]
    assert [h.score for h in plus] == pytest.approx([h.score for h in minus], abs=1e-5)
    everything = loaded.search_signed(v, 50)  # each direction once, with its better sign
    assert sorted(h.id for h in everything) == sorted(ids)
    assert all(h.score >= 0 for h in everything) and [h.score for h in everything] == sorted(
        (h.score for h in everything), reverse=True
    )
    did, score, sign = everything[0]  # unpacks like a tuple
    assert (did, sign) == (ids[6], 1)
    batched = loaded.search_signed_many(np.stack([v, -v]), 5)
    assert batched == [plus, minus]


def test_ivf_recall_is_sane_on_small_data():
    vectors = unit_rows(4000, dim=32, seed=7, clusters=40)
    ids = np.arange(100, 4100)
    queries = unit_rows(200, dim=32, seed=8, clusters=40)
    flat = LoadedIndex.from_vectors(ids, vectors)
    ivf = LoadedIndex.from_vectors(ids, vectors, factory="IVF")
    assert ivf.info.resolved_factory == f"IVF{auto_nlist(4000)},Flat" == "IVF102,Flat"
    _, truth = flat.search(queries, 10)
    _, found = ivf.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.9
    _, one_cell = ivf.search(queries, 10, nprobe=1)
    assert np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, one_cell, strict=True)]) < recall
    with pytest.raises(InputError, match="nprobe applies to IVF"):
        flat.search(queries, 10, nprobe=4)
    with pytest.raises(InputError, match="shape"):
        flat.search(queries[:, :8], 10)
    with pytest.raises(SearchIndexError, match="needs at least 1024 vectors"):
        LoadedIndex.from_vectors(ids[:50], vectors[:50], factory="IVF1024,Flat")
    with pytest.raises(InputError, match="factory"):
        LoadedIndex.from_vectors(ids, vectors, factory="NoSuchIndex42")


def test_resolve_factory():
    assert resolve_factory("IVF", 1_000_000) == "IVF4000,Flat"
    assert resolve_factory("IVF,PQ16", 10_000) == "IVF256,PQ16"  # capped at n // 39
    assert resolve_factory("IVF1024", 10) == "IVF1024,Flat" and resolve_factory("HNSW32", 10) == "HNSW32"


def test_missing_index_and_missing_effects_are_typed_errors(sqlite_migrated_url, folder):
    with pytest.raises(IndexMissing, match="locobank index build"):
        load_index(CLIP, folder)
    with Catalog.open(sqlite_migrated_url) as cat:
        status = index_status(cat, CLIP, folder)
        assert not status["exists"] and status["stale"] and "locobank index build" in status["reasons"][0]
        with pytest.raises(SearchIndexError, match="no effect embeddings"):
            build_index(cat, CLIP, folder=folder)


def test_a_damaged_index_file_is_reported_and_rebuilt(sqlite_migrated_url, folder):
    with Catalog.open(sqlite_migrated_url) as cat:
        embed(cat, add_directions(cat, 2, "a"), seed=1)
        build_index(cat, CLIP, folder=folder)
        faiss_path, _ = index_files(CLIP, folder)
        faiss_path.write_bytes(faiss_path.read_bytes()[:100])
        with pytest.raises(SearchIndexError, match="--rebuild"):
            load_index(CLIP, folder)
        assert build_index(cat, CLIP, folder=folder).rebuilt
        assert load_index(CLIP, folder).ntotal == 6


def test_default_folder_is_under_locobank_home(sqlite_migrated_url, tmp_path):
    with Catalog.open(sqlite_migrated_url) as cat:
        embed(cat, add_directions(cat, 1, "a"), seed=1)
        build_index(cat, CLIP)
        # conftest's LOCOBANK_HOME, one folder per catalog, named by the catalog's id
        assert index_files(CLIP, catalog=cat)[0].parent == tmp_path / "home" / "index" / cat.catalog_id
        assert index_files(CLIP, catalog=cat)[0].exists() and load_index(CLIP, catalog=cat).ntotal == 3
    assert index_files("ViT-B-32/laion2b_s34b_b79k")[0].name.startswith("ViT-B-32_laion2b_s34b_b79k-")
    assert index_files("a/b")[0] != index_files("a_b")[0]


def test_an_effect_committed_late_with_an_older_sequence_id_is_still_added(sqlite_migrated_url, folder):
    # On Postgres a writer can take sequence id 7, another take 8 and commit, a build read "last = 8",
    # and only then the first commit: its effect sits below the recorded sequence. Simulate that.
    from sqlalchemy import update

    from locobank.catalog.schema import Effect

    with Catalog.open(sqlite_migrated_url) as cat:
        ids = add_directions(cat, 2, "a")
        embed(cat, ids[:5], seed=1)
        build_index(cat, CLIP, folder=folder)
        late = embed(cat, ids[5:], seed=2)
        with cat._tx(write=True) as s:
            s.execute(update(Effect).where(Effect.direction_id == ids[5]).values(id=-1))
        assert index_status(cat, CLIP, folder)["reasons"] == ["1 new direction"]
        info = build_index(cat, CLIP, folder=folder)
        assert (info.rebuilt, info.added, info.ntotal) == (False, 1, 6)
        assert top_ids(folder, late[ids[5]])[0] == ids[5]


def test_search_ranks_by_match_and_grows_its_pool_until_the_ranking_is_exact(catalog, folder):
    from locobank.clip import load_clip
    from locobank.search import agreement, search, text_direction

    clip = load_clip("toy")
    q = text_direction(clip, "smile")
    ids = add_directions(catalog, 30, "m")  # 90 directions
    rng = np.random.default_rng(3)

    def at(cos: float) -> np.ndarray:
        o = rng.standard_normal(q.shape)
        o -= (o @ q) * q
        return cos * q + np.sqrt(1 - cos**2) * o / np.linalg.norm(o)

    # 80 directions whose mean effect points at the query but whose per-image effects disagree
    # (match 0), one consistent direction further down by score, and consistent weak ones.
    noisy = [NewEffect(i, clip.clip_id, at(0.79 - 0.001 * j), -0.25, 5, 8.0) for j, i in enumerate(ids[:80])]
    good = NewEffect(ids[80], clip.clip_id, at(0.6), 1.0, 5, 8.0)
    weak = [NewEffect(i, clip.clip_id, at(0.1), 1.0, 5, 8.0) for i in ids[81:]]
    catalog.put_effects(noisy + [good] + weak)
    build_index(catalog, clip.clip_id, folder=folder)

    hits = search(catalog, clip, "smile", k=3, index_folder=folder)  # the first pool (50) holds only noisy ones
    assert hits[0].id == ids[80] and hits[0].sign == 1
    assert hits[0].score == pytest.approx(0.6, abs=1e-4) and hits[0].match == pytest.approx(0.6, abs=1e-4)
    assert {h.id for h in hits[1:]} <= set(ids[81:]) and hits[1].match == pytest.approx(0.1, abs=1e-4)
    assert hits[1].transfer == pytest.approx(1.0)
    everything = search(catalog, clip, "smile", k=500, index_folder=folder)  # k beyond the index
    assert len(everything) == 90 and [h.match for h in everything] == sorted((h.match for h in everything), reverse=True)
    assert agreement(-0.25, 5) == 0.0 and agreement(1.0, 5) == 1.0 and agreement(None, 1) == 1.0
    assert agreement(0.0, 4) == pytest.approx(0.5)  # unrelated effects: 1/sqrt(n)
    assert agreement(1.0000001, 5) == 1.0  # float noise above 1 cannot lift match above score

    # Consistent eyes directions that match better: filters still find the mouth one, and the
    # filter is applied while the pool grows (it first holds only eyes and noisy mouth directions).
    eyes = harvest_all(catalog, make_world(catalog, n_images=20, labels=("eyes",), params={"rank": 3, "tag": "e"}))
    catalog.put_effects([NewEffect(i, clip.clip_id, at(0.95 - 0.001 * j), 1.0, 5, 8.0) for j, i in enumerate(eyes)])
    build_index(catalog, clip.clip_id, folder=folder)
    assert search(catalog, clip, "smile", k=1, index_folder=folder)[0].id == eyes[0]
    mouth = search(catalog, clip, "smile", k=2, mask_label="mouth", index_folder=folder)
    assert [h.id for h in mouth][:1] == [ids[80]] and {h.mask_label for h in mouth} == {"mouth"}
    # min_score filters on the cosine: only the noisy mouth directions and the eyes pass 0.7.
    strict = search(catalog, clip, "smile", k=200, min_score=0.7, index_folder=folder)
    assert {h.id for h in strict} == set(ids[:80]) | set(eyes) and min(h.score for h in strict) >= 0.7

    catalog.delete_direction(ids[80])
    assert ids[80] not in [h.id for h in search(catalog, clip, "smile", k=3, mask_label="mouth", index_folder=folder)]


def test_an_index_answers_only_for_its_own_catalog(tmp_path, caplog):
    """Two catalogs under one home get their own index files; an index built from catalog A is
    refused when catalog B is searched with it; a stale index is said to be stale."""
    from locobank.catalog import upgrade
    from locobank.clip import load_clip
    from locobank.search import search, text_direction

    clip = load_clip("toy")
    q = text_direction(clip, "smile")
    urls, files = [], []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        upgrade(url)
        with Catalog.open(url) as cat:
            ids = add_directions(cat, 2, name)
            cat.put_effects([NewEffect(i, clip.clip_id, q, 1.0, 5, 8.0) for i in ids])
            build_index(cat, clip.clip_id)
            urls.append(cat.url)
            files.append(index_files(clip.clip_id, catalog=cat)[0])
    assert files[0] != files[1] and all(f.exists() for f in files)
    shared = tmp_path / "shared"
    with Catalog.open(urls[0]) as a:
        build_index(a, clip.clip_id, folder=shared)
    with Catalog.open(urls[1]) as b:
        assert search(b, clip, "smile", k=2)  # its own index, in its own folder
        with pytest.raises(SearchIndexError, match="built from the catalog .*a.db, not .*b.db"):
            search(b, clip, "smile", k=2, index_folder=shared)
        b.put_effects([NewEffect(i, clip.clip_id, -q, 1.0, 5, 8.0) for i in add_directions(b, 1, "late")])
        with caplog.at_level("WARNING", logger="locobank.search"):
            search(b, clip, "smile", k=2)
        assert "stale" in caplog.text and "locobank index build" in caplog.text
