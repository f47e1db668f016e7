"""The names check (locobank.toyworld.evaluation.names): a direction's automatic name against what
the pixel probes see it do."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from locobank.catalog import Catalog
from locobank.clip import load_clip
from locobank.toyworld.evaluation import names as N

pytest_plugins = ["serve_world"]  # the toy_world fixture


def _record(label, sign=1):
    return SimpleNamespace(id=7, label=label, label_sign=sign, mask_label="mouth")


def test_judge_reads_the_named_sign_and_the_largest_change():
    changes = {p: 0.0 for p in N.PHRASE_PROBES}
    changes.update({"smile": 1.2, "frown": -1.2, "blond hair": 0.1})
    assert N.judge(_record("smile"), changes).verdict == "match"
    assert N.judge(_record("frown", -1), changes).verdict == "match"  # -v frowns: +v smiles
    wrong = N.judge(_record("frown"), changes)
    assert wrong.verdict == "wrong" and wrong.does == "smile (+v)"
    assert N.judge(_record("blond hair"), changes).verdict == "wrong"  # 0.1 is under half of 1.2
    assert N.judge(_record("a wide mouth"), changes).verdict == "unprobed"
    faint = {p: 0.1 * v for p, v in changes.items()}
    assert N.judge(_record("smile"), faint).verdict == "invisible"


def test_overlapping_colours_both_match():
    changes = {p: 0.0 for p in N.PHRASE_PROBES}
    changes.update({"blond hair": 2.0, "white hair": 1.5, "black hair": -1.8})
    assert N.judge(_record("white hair"), changes).verdict == "match"
    assert N.judge(_record("black hair", -1), changes).verdict == "match"
    assert N.judge(_record("red hair"), changes).verdict == "wrong"


def test_seed_of_reads_toy_file_names():
    assert N.seed_of("/x/faces/face_1000123.png") == 1_000_123
    assert N.seed_of("/x/photo.png") is None


@pytest.mark.slow
def test_name_checks_on_a_harvested_catalog(toy_world):
    clip = load_clip("toy", device="cpu")
    with Catalog.open(toy_world["db"]) as cat:
        fp = cat.get_direction(toy_world["toy_ids"][0]).fingerprint
        checks = N.name_checks(cat, clip, fp, ids=toy_world["toy_ids"], n_probes=1, steps=8)
    assert len(checks) == len(toy_world["toy_ids"])
    for c in checks:
        assert c.verdict in ("match", "wrong", "invisible", "unprobed")
        assert c.changes["smile"] == pytest.approx(-c.changes["frown"])  # one probe, both signs
        assert c.largest == pytest.approx(max(abs(v) for v in c.changes.values()))
    s = N.summary(checks)
    assert s["n"] == len(checks) == s["match"] + s["wrong"] + s["invisible"] + s["unprobed"]

