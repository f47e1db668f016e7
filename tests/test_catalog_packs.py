"""Direction packs: export, import into another catalog, and refusal of anything broken or edited."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import torch
from catalog_support import FP, harvest_all, make_world, new_directions, sha

from locobank.catalog import Catalog
from locobank.catalog.safetensors_io import decode, encode
from locobank.errors import NotFound, PackError

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...

PROVENANCE = (
    "model_id",
    "model_revision",
    "fingerprint",
    "rank_index",
    "singular_value",
    "t_edit",
    "t_edit_frac",
    "null_rank",
    "norm",
    "shape",
    "diagnostics",
    "label",
    "label_score",
    "label_sign",
    "mask_label",
    "mask_sha256",
    "image_sha256",
    "locobank_version",
)  # not image_uri: a pack carries the image's name, never the exporting machine's path


def _export(cat: Catalog, out: Path) -> tuple[Catalog, list[int], Path]:
    """Harvest a small world and export four of its directions, one of them labelled."""
    ids = harvest_all(cat, make_world(cat), rank=2)[:4]
    cat.set_label(ids[0], "smile", score=0.3, sign=1)
    return cat, ids, cat.export_pack(ids, out / "pack.safetensors")


@pytest.fixture
def pack(catalog, tmp_path):
    """A pack exported from each backend."""
    return _export(catalog, tmp_path / "out")


@pytest.fixture
def sqlite_pack(sqlite_migrated_url, tmp_path):
    """A pack for the refusal tests: the format does not depend on the backend it came from."""
    with Catalog.open(sqlite_migrated_url) as cat:
        yield _export(cat, tmp_path / "out")


@pytest.fixture
def target(tmp_path):
    """An empty second catalog to import into."""
    with Catalog.open(f"sqlite:///{tmp_path / 'target.db'}", upgrade=True) as cat:
        yield cat


def test_export_import_round_trip(pack, target):
    source, ids, path = pack
    assert [p.name for p in path.parent.iterdir()] == ["pack.safetensors"]  # no temp files left behind
    new_ids = target.import_pack(path)
    assert len(new_ids) == 4
    for old, new in zip(ids, new_ids, strict=False):
        a, b = source.get_direction(old), target.get_direction(new)
        assert {k: getattr(a, k) for k in PROVENANCE} == {k: getattr(b, k) for k in PROVENANCE}
        assert b.image_uri == "pack:" + Path(a.image_uri).name  # names the image, points at no file
        assert torch.equal(source.load_vector(old), target.load_vector(new, expected_fingerprint=FP))
        assert target.get_job(b.job_id).status == "done"
    assert target.get_model(FP).config == {"sample_size": 8}
    assert (
        target.get_run(target.get_direction(new_ids[0]).run_id).params
        == source.get_run(source.get_direction(ids[0]).run_id).params
    )
    # Importing again, or into the catalog it came from, adds nothing.
    token = target.state_token()
    assert target.import_pack(path) == []
    assert target.state_token() == token
    assert source.import_pack(path) == []


def test_pack_is_a_plain_safetensors_file_with_provenance_in_its_header(pack):
    source, ids, path = pack
    arrays = safetensors.numpy.load_file(path)
    assert sorted(arrays) == sorted(f"direction.{i}" for i in ids)
    with safetensors.safe_open(path, "np") as f:
        meta = f.metadata()
    assert meta["format"] == "locobank.pack/2" and len(meta["seal"]) == 64
    entries = json.loads(meta["directions"])
    first = entries[0]
    assert first["model"]["fingerprint"] == FP and first["model"]["model_id"] == "local:toy-ddpm"
    assert {"t_edit", "rank_index", "singular_value", "null_rank", "sha256"} <= set(first)
    assert {"label", "sha256", "area"} <= set(first["mask"]) and {"sha256", "name"} <= set(first["image"])
    assert "uri" not in first["image"] and first["image"]["name"] == "face 0 é.png"
    assert first["run"]["locobank_version"]
    np.testing.assert_array_equal(arrays[first["tensor"]], source.load_vector(first["id"]).numpy())


def test_import_finishes_a_job_the_target_had_queued(pack, target):
    _, _, path = pack
    w = make_world(target)  # same model, images, masks and params: same jobs, still pending
    new_ids = target.import_pack(path)
    assert len(new_ids) == 4
    counts = target.job_counts(w.run.id)
    assert counts["done"] == 2 and counts["pending"] == 2
    assert target.claim_jobs(w.run.id, "w", n=10) and len(target.list_directions()) == 4


def test_export_of_unknown_or_no_ids_is_refused(catalog, tmp_path):
    with pytest.raises(NotFound, match="no direction 424242"):
        catalog.export_pack([424242], tmp_path / "p.safetensors")
    with pytest.raises(ValueError):
        catalog.export_pack([], tmp_path / "p.safetensors")
    assert not (tmp_path / "p.safetensors").exists()


def rewrite(path: Path, out: Path, edit) -> Path:
    """Decode a pack, let ``edit(metadata, entries, tensors)`` change it, and re-encode it validly."""
    meta, tensors = decode(path.read_bytes())
    entries = json.loads(meta["directions"])
    edit(meta, entries, tensors)
    meta["directions"] = json.dumps(entries)
    out.write_bytes(encode(list(tensors.items()), meta))
    return out


def _set(key, value):
    def edit(meta, entries, tensors):
        target = entries[1]
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value

    return edit


def _drop_tensor(meta, entries, tensors):
    tensors.pop(entries[0]["tensor"])


def _extra_tensor(meta, entries, tensors):
    tensors["direction.999"] = tensors[entries[0]["tensor"]]


def _duplicate(meta, entries, tensors):
    entries.append(dict(entries[0]))


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("sha256", "0" * 64), "does not match its sha256"),
        (_set("shape", [3, 4, 16]), "metadata says"),
        (_set("dtype", "F16"), "metadata says"),
        (_set("run.params", {"rank": 99}), "params_hash"),
        (_set("model.fingerprint", "not-a-fingerprint"), "fingerprint"),
        (_set("model.kind", "video"), "kind"),
        (_set("rank_index", "0"), "rank_index"),
        (_set("singular_value", None), "singular_value"),
        (_set("mask", "mouth"), "mask"),
        (lambda m, e, t: e[0].pop("t_edit"), "missing field 't_edit'"),
        (lambda m, e, t: m.update(format="something.else/1"), "not a locobank pack"),
        (lambda m, e, t: e.clear(), "non-empty list"),
        (_drop_tensor, "is not in the file"),
        (_extra_tensor, "one to one"),
        (_duplicate, "same job and rank|one to one"),
    ],
)
def test_import_refuses_tampered_metadata(sqlite_pack, target, tmp_path, edit, message):
    _, _, path = sqlite_pack
    bad = rewrite(path, tmp_path / "bad.safetensors", edit)
    with pytest.raises(PackError, match=message):
        target.import_pack(bad)
    assert target.stats()["directions"] == 0 and target.stats()["models"] == {}


def test_import_refuses_tampered_tensor_bytes(sqlite_pack, target, tmp_path):
    _, _, path = sqlite_pack
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(PackError, match="does not match its sha256"):
        target.import_pack(bad)


@pytest.mark.parametrize("cut", ["tail", "header", "length"])
def test_import_refuses_a_truncated_file(sqlite_pack, target, tmp_path, cut):
    _, _, path = sqlite_pack
    data = path.read_bytes()
    keep = {"tail": len(data) - 100, "header": 40, "length": 5}[cut]
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[:keep])
    with pytest.raises(PackError, match="truncated|not a safetensors"):
        target.import_pack(bad)
    assert target.stats()["vectors"] == 0


def test_import_refuses_files_that_are_not_packs(target, tmp_path):
    png = tmp_path / "image.safetensors"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(PackError, match="not a safetensors file"):
        target.import_pack(png)
    pickle = tmp_path / "model.pt"
    torch.save({"direction": torch.zeros(3)}, pickle)  # a pickle is never unpickled
    with pytest.raises(PackError, match="not a safetensors file"):
        target.import_pack(pickle)
    plain = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file({"direction": np.zeros(3, np.float32)}, plain)
    with pytest.raises(PackError, match="not a locobank pack"):
        target.import_pack(plain)
    ints = tmp_path / "ints.safetensors"
    safetensors.numpy.save_file({"x": np.zeros(3, np.int64)}, ints, metadata={"format": "locobank.pack/1"})
    with pytest.raises(PackError, match="only float tensors"):
        target.import_pack(ints)
    with pytest.raises(PackError, match="cannot read"):
        target.import_pack(tmp_path / "missing.safetensors")


# -- the seal: provenance is covered like the tensors ------------------------------------------------


def _meta(key, value):
    def edit(meta, entries, tensors):
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value

    return edit


def _empty(target: Catalog) -> bool:
    stats = target.stats()
    return (stats["directions"], stats["models"], stats["images"], stats["runs"], stats["vectors"]) == (0, {}, 0, 0, 0)


def test_a_pack_rewritten_without_changes_still_imports(sqlite_pack, target, tmp_path):
    """The seal is over the provenance's content, not its bytes: re-encoding the same header is fine."""
    _, ids, path = sqlite_pack
    same = rewrite(path, tmp_path / "same.safetensors", lambda m, e, t: None)
    assert same.read_bytes() != path.read_bytes()  # other JSON spacing...
    assert len(target.import_pack(same)) == len(ids)  # ...same provenance


@pytest.mark.parametrize(
    "edit",
    [
        _set("t_edit", 900),
        _set("t_edit_frac", 0.9),
        _set("singular_value", 99.0),
        _set("image.name", "forged.png"),
        _set("image.sha256", "1" * 64),
        _set("mask.area", 1),
        _set("mask.label", "eyes"),
        _set("label", "frown"),
        _set("label_sign", -1),
        _set("null_rank", 0),
        _set("diagnostics", {}),
        _set("condition", {"prompt": "a forged prompt"}),
        _set("model.model_id", "google/ddpm-celebahq-256"),
        _set("model.config", {"sample_size": 8, "source": "google/ddpm-celebahq-256"}),
        _set("run.locobank_version", "9.9.9"),
        _meta("locobank_version", "9.9.9"),
        _meta("seal", "0" * 64),
    ],
    ids=lambda e: getattr(e, "__qualname__", "edit"),
)
def test_import_refuses_edited_provenance_and_writes_nothing(sqlite_pack, target, tmp_path, edit):
    _, _, path = sqlite_pack
    bad = rewrite(path, tmp_path / "forged.safetensors", edit)
    with pytest.raises(PackError, match="does not match its seal.*nothing was imported"):
        target.import_pack(bad)
    assert _empty(target)


def test_import_refuses_a_pack_without_a_seal_or_of_the_old_format(sqlite_pack, target, tmp_path):
    _, _, path = sqlite_pack
    unsealed = rewrite(path, tmp_path / "unsealed.safetensors", _meta("seal", None))
    with pytest.raises(PackError, match="no valid seal"):
        target.import_pack(unsealed)

    def old_format(meta, entries, tensors):  # what locobank wrote before packs were sealed
        meta.pop("seal")
        meta["format"] = "locobank.pack/1"
        for e in entries:
            e["image"]["uri"] = "/data/faces/" + e["image"].pop("name")

    old = rewrite(path, tmp_path / "old.safetensors", old_format)
    with pytest.raises(PackError, match=r"older locobank \(format locobank.pack/1\).*not sealed.*Export the direc"):
        target.import_pack(old)
    assert _empty(target)


def test_a_pack_carries_no_local_path(sqlite_migrated_url, target, tmp_path):
    """Model folder, weights path and image and mask paths stay on this machine; the model's Hub id,
    fingerprint and config, and each image's sha256 and file name travel."""
    here = str(tmp_path)
    with Catalog.open(sqlite_migrated_url) as cat:
        for fp, source in ((FP, str(tmp_path / "models" / "tiny")), ("fedcba9876543210", "google/ddpm-cifar10-32")):
            model = cat.get_or_create_model(
                "local:tiny" if fp == FP else source, fingerprint=fp, resolution=8, channels=3,
                config={"source": source, "unet": {"_name_or_path": str(tmp_path / "models" / "tiny" / "unet"),
                                                   "sample_size": 8, "paths": [str(tmp_path / "x"), "kept"]}},
            )
            image = cat.add_image(str(tmp_path / "faces" / f"face {fp[:2]}.png"), sha(f"i{fp}"), width=8, height=8,
                                  channels=3)
            mask = cat.add_mask(image.id, "mouth", sha(f"m{fp}"), area=5, uri=str(tmp_path / "faces" / "m.png"))
            run = cat.get_or_create_run(model, {"model": fp, "rank": 1, "resize": True})
            cat.enqueue_jobs(run.id, [(image.id, mask.id)])
            (job,) = cat.claim_jobs(run.id, "w")
            cat.complete_job(job.id, "w", new_directions(1, rank=1))
        ids = [d.id for d in cat.list_directions()]
        path = cat.export_pack(ids, tmp_path / "pack.safetensors")
    blob = path.read_bytes()
    assert here.encode() not in blob and json.dumps(here)[1:-1].encode() not in blob
    meta, _ = decode(blob)
    local, hub = json.loads(meta["directions"])
    assert "source" not in local["model"]["config"] and local["model"]["config"]["unet"] == {
        "sample_size": 8, "paths": ["kept"]}
    assert hub["model"]["config"]["source"] == "google/ddpm-cifar10-32"  # a Hub id finds the model anywhere
    assert local["image"]["name"] == "face 01.png" and local["run"]["params"] == {"model": FP, "rank": 1}
    assert target.import_pack(path) and {d.image_uri for d in target.list_directions()} == {
        "pack:face 01.png", "pack:face fe.png"}
