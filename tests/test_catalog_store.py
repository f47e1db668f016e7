"""Store round trips, leases and vector integrity, on SQLite and on Postgres."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from catalog_support import FP, OTHER_FP, harvest_all, make_world, new_directions, sha, vec
from sqlalchemy import select, update

from locobank.catalog import NewDirection
from locobank.catalog.safetensors_io import RawTensor, encode, encode_vector, sha256_hex, to_raw
from locobank.catalog.canonical import params_hash
from locobank.catalog.schema import Direction, HarvestRun, Job, Vector, utcnow
from locobank.errors import CatalogError, FingerprintMismatch, InputError, IntegrityError, LeaseLost, NotFound

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...


def test_get_or_create_is_idempotent_and_returns_frozen_records(catalog):
    w = make_world(catalog)
    again = make_world(catalog)
    assert again.model == w.model and again.run == w.run and again.pairs == w.pairs
    assert catalog.enqueue_jobs(w.run.id, w.pairs) == 0
    assert catalog.job_counts(w.run.id) == {"pending": 4, "running": 0, "done": 0, "failed": 0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.model.fingerprint = "x"  # type: ignore[misc]
    # Same parameters in another order are the same run; other parameters are another run.
    assert catalog.get_or_create_run(w.model, {"steps": 20, "t_edit": 0.6, "null_rank": 5, "rank": 3}).id == w.run.id
    assert catalog.get_or_create_run(w.model, {"rank": 4}).id != w.run.id
    assert catalog.get_model(FP) == catalog.get_model(w.model.id) == w.model


def test_enqueue_refuses_a_mask_of_another_image(catalog):
    w = make_world(catalog)
    (img_a, mask_a), (img_b, _), *_ = w.pairs[0], w.pairs[2]
    with pytest.raises(InputError, match="does not belong"):
        catalog.enqueue_jobs(w.run.id, [(img_b, mask_a)])
    with pytest.raises(NotFound):
        catalog.enqueue_jobs(9999, [(img_a, mask_a)])
    with pytest.raises(InputError, match="fingerprint"):
        catalog.get_or_create_model("m", fingerprint="XYZ", resolution=8, channels=3)


def test_harvest_round_trip_keeps_vectors_and_provenance(catalog):
    w = make_world(catalog)
    jobs = catalog.claim_jobs(w.run.id, "w1", n=10, lease_seconds=60)
    assert len(jobs) == 4 and {j.status for j in jobs} == {"running"} and {j.attempts for j in jobs} == {1}
    job = jobs[0]
    assert job.image_uri.startswith("/data/faces/face 0") and job.mask_label == "mouth" and job.mask_uri
    found = new_directions(job.id)
    ids = catalog.complete_job(job.id, "w1", found)
    assert len(ids) == 3
    d = catalog.get_direction(ids[1])
    assert (d.model_id, d.model_revision, d.fingerprint) == ("local:toy-ddpm", "r1", FP)
    assert (d.rank_index, d.singular_value, d.t_edit, d.t_edit_frac, d.null_rank) == (1, 5.0, 600, 0.6, 5)
    assert (d.mask_label, d.image_sha256, d.shape, d.run_id) == ("mouth", sha("img0"), (3, 8, 8), w.run.id)
    assert d.diagnostics == {"iters": 7, "residual": 1e-4} and d.norm == pytest.approx(1.0)
    assert d.locobank_version and d.deleted_at is None
    json.dumps(d.to_dict())  # records are JSON-ready
    v = catalog.load_vector(ids[1], expected_fingerprint=FP)
    assert isinstance(v, torch.Tensor) and v.dtype == torch.float32
    assert torch.equal(v, torch.from_numpy(found[1].vector))
    assert catalog.get_job(job.id).status == "done"


def test_torch_vectors_of_every_float_dtype_round_trip(catalog):
    w = make_world(catalog, n_images=1, labels=("mouth",))
    (job,) = catalog.claim_jobs(w.run.id, "w", 1)
    dtypes = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
    sent = [torch.randn(3, 8, 8).to(dtype) for dtype in dtypes]
    ids = catalog.complete_job(job.id, "w", [NewDirection(r, 1.0, t, 600, 0.6, 5) for r, t in enumerate(sent)])
    for i, t in zip(ids, sent, strict=False):
        back = catalog.load_vector(i)
        assert back.dtype == t.dtype and torch.equal(back, t)


def test_bad_vectors_are_refused_and_nothing_is_written(catalog):
    w = make_world(catalog, n_images=1, labels=("mouth",))
    (job,) = catalog.claim_jobs(w.run.id, "w", 1)
    nan = vec(0).copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        catalog.complete_job(job.id, "w", [NewDirection(0, 1.0, nan, 600, 0.6, 5)])
    with pytest.raises(InputError, match="repeated rank_index"):
        catalog.complete_job(job.id, "w", [NewDirection(0, 1.0, vec(1), 600, 0.6, 5)] * 2)
    with pytest.raises(InputError, match="floating point|float"):
        catalog.complete_job(job.id, "w", [NewDirection(0, 1.0, np.ones(3, np.int64), 600, 0.6, 5)])
    assert catalog.get_job(job.id).status == "running"
    assert catalog.stats()["vectors"] == 0


def test_claims_are_exclusive_until_the_lease_expires(catalog):
    w = make_world(catalog)
    a = catalog.claim_jobs(w.run.id, "a", n=3, lease_seconds=60)
    b = catalog.claim_jobs(w.run.id, "b", n=3, lease_seconds=0.3)
    assert len(a) == 3 and len(b) == 1 and not {j.id for j in a} & {j.id for j in b}
    assert catalog.claim_jobs(w.run.id, "c", n=5) == []
    time.sleep(0.4)  # b's lease runs out; a's does not
    (c,) = catalog.claim_jobs(w.run.id, "c", n=5, lease_seconds=60)
    assert c.id == b[0].id and c.attempts == 2 and c.lease_owner == "c"
    # b comes back late: its lease is lost and it may not finish, fail, renew or release the job.
    for call in (
        lambda: catalog.complete_job(c.id, "b", new_directions(1)),
        lambda: catalog.fail_job(c.id, "b", "boom"),
        lambda: catalog.renew_lease(c.id, "b"),
        lambda: catalog.release_job(c.id, "b"),
    ):
        with pytest.raises(LeaseLost, match="held by c"):
            call()
    ids = catalog.complete_job(c.id, "c", new_directions(2))
    with pytest.raises(LeaseLost, match="is done"):
        catalog.complete_job(c.id, "b", new_directions(1))
    assert [d.id for d in catalog.list_directions()] == ids
    with pytest.raises(NotFound):
        catalog.complete_job(123456, "c", [])


def test_complete_job_is_safe_to_repeat(catalog):
    w = make_world(catalog, n_images=1)
    job, _ = catalog.claim_jobs(w.run.id, "w", n=2)
    first = catalog.complete_job(job.id, "w", new_directions(5))
    token = catalog.state_token()
    assert catalog.complete_job(job.id, "w", new_directions(5)) == first
    assert catalog.complete_job(job.id, "w", []) == first
    assert len(catalog.list_directions()) == 3 and catalog.state_token() == token
    assert catalog.stats()["vectors"] == 3


def test_fail_retry_release_and_renew(catalog):
    w = make_world(catalog)
    j1, j2, j3 = catalog.claim_jobs(w.run.id, "w", n=3)
    catalog.fail_job(j1.id, "w", "truncated PNG: image file is truncated " + "x" * 10_000)
    catalog.fail_job(j1.id, "w", "truncated PNG")  # repeating is fine
    failed = catalog.get_job(j1.id)
    assert failed.status == "failed" and failed.error == "truncated PNG" and failed.finished_at
    assert catalog.job_counts(w.run.id) == {"pending": 1, "running": 2, "done": 0, "failed": 1}
    assert [j.id for j in catalog.list_jobs(w.run.id, "failed")] == [j1.id]

    expires = catalog.renew_lease(j2.id, "w", lease_seconds=3600)
    assert catalog.get_job(j2.id).lease_expires_at == expires
    catalog.release_job(j3.id, "w")
    released = catalog.get_job(j3.id)
    assert (released.status, released.lease_owner, released.attempts) == ("pending", None, 0)

    other = catalog.get_or_create_run(w.model, {"other": True})
    catalog.enqueue_jobs(other.id, w.pairs[:1])
    (oj,) = catalog.claim_jobs(other.id, "w")
    catalog.fail_job(oj.id, "w", "bad")
    assert catalog.retry_failed(w.run.id) == 1  # only that run
    assert catalog.get_job(oj.id).status == "failed"
    assert catalog.retry_failed() == 1
    again = {j.id: j for j in catalog.claim_jobs(w.run.id, "w2", n=5)}
    assert again[j1.id].attempts == 2 and j3.id in again and j2.id not in again


def test_jobs_whose_worker_keeps_dying_end_failed(catalog):
    w = make_world(catalog, n_images=1, labels=("mouth",))
    for attempt in (1, 2):
        (job,) = catalog.claim_jobs(w.run.id, f"w{attempt}", lease_seconds=0.05, max_attempts=2)
        assert job.attempts == attempt
        time.sleep(0.1)
    assert catalog.claim_jobs(w.run.id, "w3", max_attempts=2) == []
    dead = catalog.get_job(job.id)
    assert dead.status == "failed" and "gave up after 2 attempts" in dead.error


def _exited_pid() -> int:
    """The pid of a real process that has exited (and been reaped): a worker killed with -9."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_jobs_of_a_dead_worker_on_this_host_are_taken_back_at_once(catalog):
    """A lease whose owner is a process gone from this host is taken back without waiting for its
    600 s to run out; live workers (here or on another host) keep theirs."""
    from locobank.harvest.leases import dead_owners, default_owner, owner_is_dead

    host = socket.gethostname()
    w = make_world(catalog, n_images=4, labels=("mouth",))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owners = [f"{host}:{_exited_pid()}", f"{host}:{alive.pid}", "elsewhere.example:4242", default_owner()]
        jobs = {o: catalog.claim_jobs(w.run.id, o, lease_seconds=600)[0].id for o in owners}
        holders = catalog.lease_holders(w.run.id)
        assert {o: n for o, (n, _) in holders.items()} == dict.fromkeys(owners, 1)
        assert all(until is not None for _, until in holders.values())
        gone = dead_owners(holders)
        assert gone == {owners[0]}
        assert catalog.claim_jobs(w.run.id, "new", n=4) == []  # without knowing, everything waits for 600 s
        (taken,) = catalog.claim_jobs(w.run.id, "new", n=4, dead_owners=gone)
        assert taken.id == jobs[owners[0]] and taken.attempts == 2 and taken.lease_owner == "new"
        alive.kill()
        alive.wait()
        assert owner_is_dead(owners[1])  # the same worker, once its process is gone
    finally:
        alive.kill()
        alive.wait()
    assert not owner_is_dead("import") and not owner_is_dead(f"{host}:notapid")
    # A worker that keeps dying on a job (killed by the OOM killer, say) ends it failed, as with expiry.
    (again,) = catalog.claim_jobs(w.run.id, owners[0], n=1, dead_owners={"new"}, max_attempts=5)
    assert again.id == jobs[owners[0]] and again.attempts == 3
    assert catalog.claim_jobs(w.run.id, "newer", dead_owners={owners[0]}, max_attempts=3) == []
    assert catalog.get_job(again.id).status == "failed"


def test_input_options_do_not_make_another_run(catalog):
    """--resize says how inputs are read, not what is found: the same run, so its failed jobs can be
    retried with it and its done jobs are not redone; runs recorded with it before are continued."""
    w = make_world(catalog, n_images=1, labels=("mouth",), params={"rank": 3, "resize": False})
    assert w.run.params == {"rank": 3}
    assert catalog.get_or_create_run(w.model, {"rank": 3, "resize": True}).id == w.run.id
    assert catalog.get_or_create_run(w.model, {"rank": 4}).id != w.run.id
    (job,) = catalog.claim_jobs(w.run.id, "w")
    catalog.fail_job(job.id, "w", "image is 32x32 but the model takes 8x8; pass --resize to resize it")
    rerun = catalog.get_or_create_run(w.model, {"rank": 3, "resize": True})
    assert catalog.retry_failed(rerun.id) == 1 and catalog.get_job(job.id).status == "pending"
    # A run recorded by older code, with resize among its params, is the one a rerun continues.
    legacy = {"rank": 7, "resize": True}
    with catalog._tx(write=True) as s:
        s.add(HarvestRun(model_id=w.model.id, params=legacy, params_hash=params_hash(legacy), locobank_version="0"))
    with catalog._tx() as s:
        legacy_id = s.scalar(select(HarvestRun.id).where(HarvestRun.params_hash == params_hash(legacy)))
    assert catalog.get_or_create_run(w.model, {"rank": 7}).id == legacy_id
    assert catalog.get_or_create_run(w.model, {"rank": 7, "resize": False}).id == legacy_id
    assert catalog.stats()["runs"] == 3


def test_corrupted_vector_bytes_are_caught(catalog):
    w = make_world(catalog, n_images=1, labels=("mouth",))
    ids = harvest_all(catalog, w)
    d = catalog.get_direction(ids[0])
    with catalog._tx(write=True) as s:
        data = bytearray(s.scalar(select(Vector.data).where(Vector.sha256 == d.vector_sha256)))
        data[-5] ^= 0xFF  # one flipped bit pattern inside the tensor
        s.execute(update(Vector).where(Vector.sha256 == d.vector_sha256).values(data=bytes(data)))
    with pytest.raises(IntegrityError, match=f"direction {ids[0]} is corrupted"):
        catalog.load_vector(ids[0])
    with pytest.raises(IntegrityError):
        catalog.export_pack([ids[0]], "/tmp/never-written.safetensors")
    assert catalog.load_vector(ids[1]).shape == (3, 8, 8)  # the others are fine


def test_a_blob_whose_metadata_lies_about_its_tensor_is_caught(catalog):
    w = make_world(catalog, n_images=1, labels=("mouth",))
    (i, *_) = harvest_all(catalog, w)
    raw, _ = to_raw(vec(99))
    meta = {"format": "locobank.vector/1", "fingerprint": FP, "shape": "[3, 8, 8]", "dtype": "F32", "sha256": "0" * 64}
    blob = encode([("direction", raw)], meta)  # self-consistent address, wrong tensor hash
    with catalog._tx(write=True) as s:
        s.add(Vector(sha256=sha256_hex(blob), nbytes=len(blob), data=blob, created_at=utcnow()))
        s.flush()
        s.execute(update(Direction).where(Direction.id == i).values(vector_sha256=sha256_hex(blob)))
    with pytest.raises(IntegrityError, match="do not match the sha256"):
        catalog.load_vector(i)


def test_fingerprint_mismatch_is_refused(catalog):
    w = make_world(catalog, n_images=1, labels=("mouth",))
    (i, *_) = harvest_all(catalog, w)
    with pytest.raises(FingerprintMismatch, match=OTHER_FP):
        catalog.load_vector(i, expected_fingerprint=OTHER_FP)
    # A vector stamped with another model's fingerprint than its row says is refused even unasked.
    raw, _ = to_raw(vec(7))
    blob = encode_vector(raw, OTHER_FP)
    with catalog._tx(write=True) as s:
        s.add(Vector(sha256=sha256_hex(blob), nbytes=len(blob), data=blob, created_at=utcnow()))
        s.flush()
        s.execute(update(Direction).where(Direction.id == i).values(vector_sha256=sha256_hex(blob)))
    with pytest.raises(FingerprintMismatch):
        catalog.load_vector(i)


def test_list_filters_labels_and_soft_delete(catalog):
    w = make_world(catalog)
    ids = harvest_all(catalog, w, rank=2)
    other = make_world(catalog, n_images=1, labels=("hair",), fingerprint=OTHER_FP)
    other_ids = harvest_all(catalog, other, rank=2)
    assert [d.id for d in catalog.list_directions()] == ids + other_ids
    assert [d.id for d in catalog.list_directions(model=OTHER_FP)] == other_ids
    assert len(catalog.list_directions(model="local:toy-ddpm")) == len(ids + other_ids)  # both share the name
    assert {d.mask_label for d in catalog.list_directions(mask_label="eyes")} == {"eyes"}
    assert len(catalog.list_directions(limit=3)) == 3
    catalog.set_label(ids[0], "smile", score=0.31, sign=-1)
    (smile,) = catalog.list_directions(label="smile")
    assert (smile.id, smile.label, smile.label_score, smile.label_sign) == (ids[0], "smile", 0.31, -1)
    with pytest.raises(InputError):
        catalog.set_label(ids[0], "smile", sign=2)

    token = catalog.state_token()
    assert catalog.state_token() == token  # stable while nothing changes
    catalog.delete_direction(ids[0])
    catalog.delete_direction(ids[0])  # twice is fine
    assert catalog.state_token() != token
    assert ids[0] not in [d.id for d in catalog.list_directions()]
    assert ids[0] in [d.id for d in catalog.list_directions(include_deleted=True)]
    assert catalog.get_direction(ids[0], include_deleted=True).deleted_at is not None
    for call in (catalog.get_direction, catalog.load_vector, catalog.delete_direction):
        with pytest.raises(NotFound, match="no direction 999999"):
            call(999999)
    with pytest.raises(NotFound):
        catalog.get_direction(ids[0])
    with pytest.raises(NotFound):
        catalog.load_vector(ids[0])

    token = catalog.state_token()
    w3 = make_world(catalog, n_images=1, labels=("nose",), params={"rank": 1})
    harvest_all(catalog, w3, rank=1)
    assert catalog.state_token() != token


def test_stats_counts_by_status_model_and_label(catalog):
    w = make_world(catalog)
    (job, *_rest) = catalog.claim_jobs(w.run.id, "w", n=4)
    catalog.complete_job(job.id, "w", new_directions(1, rank=2))
    catalog.fail_job(_rest[0].id, "w", "bad mask")
    catalog.set_label(catalog.list_directions()[0].id, "smile")
    s = catalog.stats()
    assert s["jobs"] == {"pending": 0, "running": 2, "done": 1, "failed": 1}
    assert s["directions"] == 2 and s["deleted"] == 0 and s["models"] == {"local:toy-ddpm": 2}
    assert s["labels"] == {"(none)": 1, "smile": 1} and s["mask_labels"] == {"mouth": 2}
    assert (s["runs"], s["images"], s["masks"], s["vectors"]) == (1, 2, 4, 2) and s["vector_bytes"] > 2 * 768


def test_orphan_sweep_removes_only_unreferenced_vectors(catalog):
    w = make_world(catalog, n_images=1)
    ids = harvest_all(catalog, w)
    raw, _ = to_raw(vec(12345))
    orphan = encode_vector(raw, FP)
    with catalog._tx(write=True) as s:  # as if a direction row never committed (or was purged)
        s.add(Vector(sha256=sha256_hex(orphan), nbytes=len(orphan), data=orphan, created_at=utcnow()))
    catalog.delete_direction(ids[0])  # soft-deleted rows keep their vector
    assert catalog.sweep_orphans() == 1
    assert catalog.sweep_orphans() == 0
    assert catalog.stats()["vectors"] == len(ids)
    assert all(catalog.load_vector(i).shape == (3, 8, 8) for i in ids[1:])


def test_direction_rows_cannot_point_at_missing_vectors(catalog):
    """The foreign key means a direction and its vector commit together or not at all."""
    w = make_world(catalog, n_images=1, labels=("mouth",))
    (job,) = catalog.claim_jobs(w.run.id, "w")
    with pytest.raises(CatalogError, match="FOREIGN KEY|foreign key"):
        with catalog._tx(write=True) as s:
            s.add(
                Direction(
                    job_id=job.id,
                    model_id=w.model.id,
                    rank_index=0,
                    singular_value=1,
                    t_edit=1,
                    t_edit_frac=0.1,
                    null_rank=0,
                    vector_sha256="f" * 64,
                    norm=1,
                    shape=[1],
                    diagnostics={},
                    created_at=utcnow(),
                )
            )
    assert catalog.list_directions() == [] and catalog.get_job(job.id).status == "running"


def test_raw_tensor_hash_is_of_the_tensor_bytes():
    raw, norm = to_raw(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert raw == RawTensor("F32", (2, 3), np.arange(6, dtype="<f4").tobytes()) and norm == pytest.approx(np.sqrt(55))
    assert encode_vector(raw, FP) == encode_vector(raw, FP)  # canonical bytes: same content, same address
    job_table = Job.__table__
    assert {c.name for c in job_table.columns} >= {"lease_owner", "lease_expires_at", "attempts", "error"}


def test_harvested_images_are_distinct_ordered_and_live(catalog):
    w = make_world(catalog, n_images=3)
    ids = harvest_all(catalog, w)
    uris = catalog.harvested_images(FP, 10)
    order = []
    for d in sorted(catalog.list_directions(), key=lambda d: d.id):
        if d.image_uri not in order:
            order.append(d.image_uri)
    assert uris == order and len(uris) == 3
    assert catalog.harvested_images("local:toy-ddpm", 1, 1) == uris[1:2]  # model id works, so do limit/offset
    assert catalog.harvested_images(OTHER_FP, 10) == []
    for d in catalog.list_directions():
        if d.image_uri == uris[0]:
            catalog.delete_direction(d.id)
    assert catalog.harvested_images(FP, 10) == uris[1:]
    assert len(ids) == 18


def test_probe_images_pages_past_images_that_are_gone(tmp_path):
    from locobank.embed import probe_images

    files = [tmp_path / f"{i}.png" for i in range(40)]
    for f in files[::3]:  # only every third image is still on disk
        f.write_bytes(b"x")

    class Paged:
        calls = 0

        def harvested_images(self, model, limit, offset=0):
            Paged.calls += 1
            return [str(f) for f in files[offset : offset + limit]]

    got = probe_images(Paged(), FP, 8)
    assert got == [str(f) for f in files[::3][:9]] and Paged.calls == 2
