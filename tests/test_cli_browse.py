"""``locobank db upgrade``, ``list``, ``show``, ``stats``, ``export`` and ``import`` through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from catalog_support import FP, harvest_all, make_world
from click.testing import CliRunner

from locobank_cli.main import cli
from locobank.catalog import Catalog

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, pg_url, sqlite_url, ...

DIRECTION_KEYS = {
    "id": int,
    "job_id": int,
    "run_id": int,
    "model_db_id": int,
    "model_id": str,
    "model_revision": (str, type(None)),
    "fingerprint": str,
    "rank_index": int,
    "singular_value": float,
    "t_edit": int,
    "t_edit_frac": float,
    "null_rank": int,
    "vector_sha256": str,
    "norm": float,
    "shape": list,
    "diagnostics": dict,
    "label": (str, type(None)),
    "label_score": (float, type(None)),
    "label_sign": (int, type(None)),
    "mask_label": str,
    "mask_sha256": str,
    "image_sha256": str,
    "image_uri": str,
    "locobank_version": str,
    "mask_uri": (str, type(None)),
    "created_at": str,
    "deleted_at": (str, type(None)),
    "condition": (dict, type(None)),
}


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


@pytest.fixture
def filled(sqlite_migrated_url):
    """A catalog URL with six directions, the first one named 'smile'."""
    with Catalog.open(sqlite_migrated_url) as cat:
        ids = harvest_all(cat, make_world(cat, n_images=1, labels=("mouth",)), rank=3)
        ids += harvest_all(cat, make_world(cat, n_images=1, labels=("eyes",), params={"rank": 3}), rank=3)
        cat.set_label(ids[0], "smile", score=0.25, sign=1)
    return sqlite_migrated_url, ids


def test_db_upgrade_creates_the_default_catalog_and_is_repeatable(tmp_path):
    first = run("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert "schema revision" in first.output and (tmp_path / "home" / "catalog.db").exists()
    assert run("db", "upgrade").exit_code == 0
    listed = run("list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.output) == []


def test_db_upgrade_takes_a_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'x' / 'c.db'}"
    assert run("db", "upgrade", "--db", url).exit_code == 0
    monkeypatch.setenv("LOCOBANK_DB", url)  # the env var is the next default
    assert run("stats", "--json").exit_code == 0
    bad = run("db", "upgrade", "--db", "postgresql://u@host:nonsense/db")
    assert bad.exit_code == 1 and "not a database URL" in bad.output
    plain = tmp_path / "y" / "plain.db"  # no "://": a SQLite file path, for every command
    made = run("db", "upgrade", "--db", str(plain))
    assert made.exit_code == 0 and f"sqlite:///{plain}" in made.output and plain.is_file()
    assert json.loads(run("stats", "--json", "--db", str(plain)).output)["directions"] == 0


@pytest.mark.postgres
def test_db_upgrade_and_list_on_postgres(pg_url):
    assert run("db", "upgrade", "--db", pg_url).exit_code == 0
    listed = run("list", "--json", "--db", pg_url)
    assert listed.exit_code == 0 and json.loads(listed.output) == []


def test_commands_on_a_missing_catalog_say_how_to_create_it():
    for args in (["list"], ["show", "1"], ["stats"]):
        result = run(*args)
        assert result.exit_code == 1
        assert "locobank db upgrade" in result.output and "Traceback" not in result.output


def test_list_json_schema(filled):
    url, ids = filled
    result = run("list", "--json", "--db", url)
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == ids
    for row in rows:
        assert set(row) == set(DIRECTION_KEYS)
        for key, kind in DIRECTION_KEYS.items():
            assert isinstance(row[key], kind), (key, row[key])
    assert rows[0]["label"] == "smile" and rows[0]["fingerprint"] == FP and rows[0]["shape"] == [3, 8, 8]


def test_list_filters_and_table(filled):
    url, ids = filled
    table = run("list", "--db", url).output.splitlines()
    assert table[0].split() == ["ID", "MODEL", "MASK", "RANK", "SIGMA", "T_EDIT", "LABEL"]
    assert len(table) == 1 + len(ids) and "smile" in table[1]
    mask_col = table[0].index("MASK")  # aligned: every mask label starts under its header
    assert {line[mask_col:].split()[0] for line in table[1:]} == {"mouth", "eyes"}
    assert [r["id"] for r in json.loads(run("list", "--json", "--label", "smile", "--db", url).output)] == [ids[0]]
    assert len(json.loads(run("list", "--json", "--mask", "eyes", "--db", url).output)) == 3
    assert len(json.loads(run("list", "--json", "--model", FP, "--limit", "2", "--db", url).output)) == 2
    assert "no directions match" in run("list", "--model", "nobody", "--db", url).output


def test_show(filled):
    url, ids = filled
    human = run("show", str(ids[1]), "--db", url)
    assert human.exit_code == 0
    assert "fingerprint" in human.output and FP in human.output and "mouth" in human.output
    data = json.loads(run("show", str(ids[1]), "--json", "--db", url).output)
    assert data["id"] == ids[1] and set(data) == set(DIRECTION_KEYS)


def test_show_unknown_id_fails_with_a_clear_message(filled):
    url, _ = filled
    result = run("show", "424242", "--db", url)
    assert result.exit_code == 1
    assert "Error: no direction 424242 in the catalog" in result.output and "Traceback" not in result.output
    assert run("show", "not-a-number", "--db", url).exit_code == 2


def test_stats(filled):
    url, _ = filled
    data = json.loads(run("stats", "--json", "--db", url).output)
    assert data["directions"] == 6 and data["jobs"]["done"] == 2 and data["mask_labels"] == {"eyes": 3, "mouth": 3}
    assert data["labels"] == {"(none)": 5, "smile": 1} and len(data["state_token"]) == 16
    human = run("stats", "--db", url).output
    assert "directions  6" in human and "done 2" in human and "smile" in human


def test_export_then_import_into_another_catalog(filled, tmp_path):
    url, ids = filled
    out = tmp_path / "pack.safetensors"
    exported = run("export", *map(str, ids[:3]), "--out", str(out), "--db", url)
    assert exported.exit_code == 0 and "wrote 3 direction(s)" in exported.output
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run("db", "upgrade", "--db", other)
    imported = run("import", str(out), "--db", other)
    assert imported.exit_code == 0 and "imported 3 new direction(s)" in imported.output
    assert "nothing new" in run("import", str(out), "--db", other).output
    assert len(json.loads(run("list", "--json", "--db", other).output)) == 3
    assert out.stat().st_mode & 0o044 == 0o044  # readable by others: a pack is meant to be shared
    again = run("export", str(ids[0]), "--out", str(out), "--db", url)
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    assert run("export", str(ids[0]), "--out", str(out), "--force", "--db", url).exit_code == 0


def test_export_and_import_errors_are_messages(filled, tmp_path):
    url, _ = filled
    missing = run("export", "999", "--out", str(tmp_path / "p.safetensors"), "--db", url)
    assert missing.exit_code == 1 and "no direction 999" in missing.output
    assert run("export", "--out", str(tmp_path / "p.safetensors"), "--db", url).exit_code == 2  # ids required
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello, not a pack")
    refused = run("import", str(junk), "--db", url)
    assert refused.exit_code == 1 and "not a safetensors file" in refused.output


@pytest.mark.parametrize("args", [["db"], ["db", "upgrade"], ["list"], ["show"], ["stats"], ["export"], ["import"]])
def test_help_explains_every_command(args):
    result = run(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "--db" in result.output or args == ["db"]
    assert len(result.output.splitlines()) > 4
