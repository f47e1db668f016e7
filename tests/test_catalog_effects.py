"""Effect embeddings and previews in the catalog, on SQLite and on Postgres."""

from __future__ import annotations

import numpy as np
import pytest
from catalog_support import harvest_all, make_world
from sqlalchemy import text

from locobank.catalog import Catalog, NewEffect
from locobank.catalog.connect import make_engine
from locobank.errors import InputError, NotFound

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...

CLIP = "toy:sha256:0123abcd"
OTHER_CLIP = "ViT-B-32/laion2b_s34b_b79k"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def effect(direction_id: int, seed: int, clip_id: str = CLIP, dim: int = 16, **kw) -> NewEffect:
    v = np.random.default_rng(seed).standard_normal(dim) * 3.0  # not unit: the store normalises
    values = dict(consistency=0.5, n_images=5, strength=8.0) | kw
    return NewEffect(direction_id=direction_id, clip_id=clip_id, vector=v, **values)


@pytest.fixture
def filled(catalog: Catalog) -> tuple[Catalog, list[int]]:
    """A catalog with six directions on each backend."""
    return catalog, harvest_all(catalog, make_world(catalog, n_images=1, labels=("mouth", "eyes")), rank=3)


def test_round_trip(filled):
    cat, ids = filled
    assert cat.put_effects([effect(i, seed=i) for i in ids[:4]]) == 4
    got_ids, vectors = cat.effects_for(CLIP)
    assert got_ids.dtype == np.int64 and vectors.dtype == np.float32 and vectors.shape == (4, 16)
    assert got_ids.tolist() == ids[:4]
    for i, v in zip(ids[:4], vectors, strict=True):
        want = np.random.default_rng(i).standard_normal(16)
        np.testing.assert_allclose(v, want / np.linalg.norm(want), rtol=1e-6)
    record = cat.effect_of(ids[0], CLIP)
    assert record is not None and record.dim == 16 and record.n_images == 5 and record.strength == 8.0
    assert record.consistency == 0.5 and abs(float(np.linalg.norm(record.vector)) - 1) < 1e-6
    assert record.to_dict()["vector"] == pytest.approx(vectors[0].tolist())
    assert cat.effect_of(ids[0], OTHER_CLIP) is None and cat.effect_of(ids[5], CLIP) is None
    assert cat.directions_without_effect(CLIP) == ids[4:]
    assert cat.directions_without_effect(CLIP, model_fingerprint="fedcba9876543210") == []
    assert cat.effect_ids(CLIP).tolist() == ids[:4]


def test_upsert_is_idempotent_and_a_change_gets_a_new_sequence_id(filled):
    cat, ids = filled
    cat.put_effects([effect(i, seed=i) for i in ids[:3]])
    before = cat.effects_state(CLIP)
    assert (before.live, before.deleted, before.dim) == (3, 0, 16)
    assert cat.put_effects([effect(i, seed=i) for i in ids[:3]]) == 0  # same values: nothing written
    assert cat.effects_state(CLIP) == before
    # Re-embedding one direction with another strength replaces it and moves it past last_seq.
    assert cat.put_effects([effect(ids[1], seed=99, strength=4.0), effect(ids[1], seed=99, strength=4.0)]) == 1
    after = cat.effects_state(CLIP)
    assert after.token != before.token and after.last_seq > before.last_seq and after.live == 3
    changed, vectors = cat.effects_for(CLIP, since_id=before.last_seq)
    assert changed.tolist() == [ids[1]] and vectors.shape == (1, 16)
    assert cat.effect_of(ids[1], CLIP).strength == 4.0
    assert cat.effect_ids(CLIP, since_id=before.last_seq).tolist() == [ids[1]]
    assert cat.effects_for(CLIP, since_id=after.last_seq)[0].size == 0


def test_deleted_directions_are_excluded(filled):
    cat, ids = filled
    cat.put_effects([effect(i, seed=i) for i in ids])
    cat.put_preview(ids[2], PNG, strength=8.0)
    token = cat.effects_state(CLIP).token
    cat.delete_direction(ids[2])
    state = cat.effects_state(CLIP)
    assert state.token != token and (state.live, state.deleted) == (5, 1)
    got, vectors = cat.effects_for(CLIP)
    assert ids[2] not in got.tolist() and vectors.shape == (5, 16)
    assert cat.effect_of(ids[2], CLIP) is None and cat.effect_of(ids[2], CLIP, include_deleted=True) is not None
    assert cat.deleted_ids() == {ids[2]} and cat.deleted_ids(CLIP) == {ids[2]} and cat.deleted_ids(OTHER_CLIP) == set()
    assert ids[2] not in cat.directions_without_effect(OTHER_CLIP)
    assert cat.get_preview(ids[2]) is None
    assert cat.effects_for(CLIP, ids=[ids[2], ids[3]])[0].tolist() == [ids[3]]


def test_clip_models_coexist_and_keep_their_dimension(filled):
    cat, ids = filled
    cat.put_effects([effect(i, seed=i) for i in ids[:2]])
    cat.put_effects([effect(i, seed=i, clip_id=OTHER_CLIP, dim=32) for i in ids])
    assert cat.effects_for(CLIP)[1].shape == (2, 16) and cat.effects_for(OTHER_CLIP)[1].shape == (6, 32)
    with pytest.raises(InputError, match="dimension"):
        cat.put_effects([effect(ids[3], seed=1, dim=8)])
    with pytest.raises(InputError, match="dimension"):
        mixed = [NewEffect(ids[3], "new-clip", np.ones(4), None, 1, 8.0), effect(ids[4], 1, clip_id="new-clip")]
        cat.put_effects(mixed)
    empty_ids, empty = cat.effects_for("never-used")
    assert empty_ids.shape == (0,) and empty.shape == (0, 0)
    assert cat.effects_state("never-used").dim is None and cat.effects_state("never-used").last_seq == 0


def test_bad_effects_are_refused_and_nothing_is_written(filled):
    cat, ids = filled
    bad = [
        effect(424242, seed=0),
        NewEffect(ids[0], CLIP, np.zeros(16), 0.5, 1, 8.0),
        NewEffect(ids[0], CLIP, np.full(16, np.nan), 0.5, 1, 8.0),
        NewEffect(ids[0], CLIP, np.ones((4, 4)), 0.5, 1, 8.0),
        NewEffect(ids[0], "", np.ones(16), 0.5, 1, 8.0),
        NewEffect(ids[0], CLIP, np.ones(16), 0.5, 0, 8.0),
    ]
    for item in bad:
        with pytest.raises((InputError, NotFound)):
            cat.put_effects([effect(ids[1], seed=1), item])
    assert cat.effects_state(CLIP).live == 0


def test_previews(filled):
    cat, ids = filled
    assert cat.get_preview(ids[0]) is None
    cat.put_preview(ids[0], PNG, strength=8.0)
    assert cat.get_preview(ids[0]) == PNG
    cat.put_preview(ids[0], PNG + b"2", strength=4.0)  # replaced, not duplicated
    assert cat.get_preview(ids[0]) == PNG + b"2"
    with pytest.raises(InputError, match="PNG"):
        cat.put_preview(ids[0], b"GIF89a", strength=8.0)
    with pytest.raises(NotFound):
        cat.put_preview(424242, PNG, strength=8.0)


def test_many_effects_in_one_call(filled):
    cat, ids = filled
    # One direction, many CLIP models: exercises the chunked multi-row upsert.
    items = [effect(ids[0], seed=k, clip_id=f"clip-{k}", dim=8) for k in range(1200)]
    assert cat.put_effects(items) == 1200
    assert cat.put_effects(items) == 0
    assert cat.effects_for("clip-1199")[0].tolist() == [ids[0]]


@pytest.mark.postgres
def test_postgres_keeps_effect_vectors_inline(pg_migrated_url):
    engine = make_engine(pg_migrated_url)
    with engine.connect() as conn:
        storage = conn.execute(
            text("SELECT attstorage FROM pg_attribute WHERE attrelid = 'effects'::regclass AND attname = 'vector'")
        )
        assert storage.scalar_one() == "m"
    engine.dispose()


def test_batched_lookups_for_search_skip_deleted_and_unknown_ids(filled):
    cat, ids = filled
    cat.put_effects([effect(i, seed=i, consistency=0.1 * j, n_images=2 + j) for j, i in enumerate(ids[:4])])
    cat.put_effects([effect(ids[4], seed=9, clip_id=OTHER_CLIP, dim=8, consistency=None, n_images=1)])
    cat.delete_direction(ids[1])
    got = cat.transfer_of(CLIP, ids + [10**9])
    assert got == {ids[0]: (0.0, 2, 8.0), ids[2]: (pytest.approx(0.2), 4, 8.0), ids[3]: (pytest.approx(0.3), 5, 8.0)}
    assert cat.transfer_of(OTHER_CLIP, ids) == {ids[4]: (None, 1, 8.0)} and cat.transfer_of(CLIP, []) == {}
    records = cat.get_directions(ids + [10**9])
    assert sorted(records) == sorted(set(ids) - {ids[1]})
    assert all(records[i] == cat.get_direction(i) for i in records)
    assert cat.get_directions([]) == {}
