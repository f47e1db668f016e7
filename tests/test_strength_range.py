"""Each direction's strength scale (locobank.rank.linear): its unit strength (``apply ID:1x``) and the
limit of its linear, local range, measured when it is indexed, stored on its card (revision 0008,
SQLite and Postgres), given with search hits, and read back by ``apply``."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from catalog_support import harvest_all, make_world

from locobank.apply import DirectionSpec, parse_spec
from locobank.catalog import upgrade
from locobank.catalog.connect import make_engine
from locobank.errors import InputError, NotFound
from locobank.rank import linear as L

pytest_plugins = ["catalog_support"]  # fixtures: catalog, backend_url, sqlite_url, ...
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def test_unit_is_exact_on_a_power_law_and_clamped_outside_the_ladder():
    s = np.array(L.LADDER) * 4.0
    for p in (1.0, 1.7, 2.5):
        sizes = 0.05 * (s / 4.0) ** p
        want = 4.0 * (0.15 / 0.05) ** (1 / p)
        if want <= s[-1]:
            assert L.unit_from(s, sizes) == pytest.approx(want, rel=1e-9)
    beyond = L.unit_from(s, 0.01 * (s / 4.0))  # linear, target far past the last rung: extrapolated
    assert beyond == pytest.approx(4.0 * 15, rel=1e-9)


def test_limit_stops_at_saturation_breaking_spill_or_replacement():
    s = [2.0, 4.0, 8.0, 16.0]
    loc = np.array([0.9, 0.9, 0.9, 0.9])
    assert L.limit_from(s, np.array([0.02, 0.04, 0.08, 0.16]), loc) == 16.0
    assert L.limit_from(s, np.array([0.02, 0.04, 0.05, 0.10]), loc) == 4.0  # saturates at 8
    assert L.limit_from(s, np.array([0.02, 0.04, 0.2, 0.4]), loc) == 4.0  # jumps x5 at 8
    assert L.limit_from(s, np.array([0.02, 0.04, 0.08, 0.16]), np.array([0.9, 0.9, 0.6, 0.9])) == 4.0  # spills
    assert L.limit_from(s, np.array([0.1, 0.2, 0.4, 0.8]), loc) == 8.0  # 0.8 RMS replaces the part


def test_units_are_parsed_and_bad_ones_refused():
    assert parse_spec("12:2x") == DirectionSpec(12, units=2.0)
    assert parse_spec("12:-0.5X") == DirectionSpec(12, units=-0.5)
    assert parse_spec("12:4") == DirectionSpec(12, 4.0)
    for bad in ("12:x", "12:2xx", "12:nanx", "12:infx"):
        with pytest.raises(InputError):
            parse_spec(bad)


def test_cards_store_and_give_their_strength_scale(catalog):
    ids = harvest_all(catalog, make_world(catalog, n_images=1, labels=("mouth",)), rank=3)
    catalog.put_preview(ids[0], PNG, 4.0, 0.9, unit=5.5, limit=8.0)
    catalog.put_preview(ids[1], PNG, 4.0, 0.9)  # a card indexed before 0008 has none
    assert catalog.strength_ranges(ids) == {ids[0]: (5.5, 8.0)}
    assert catalog.directions_without_range() == [ids[1]]
    catalog.set_strength_range(ids[1], 3.0, 16.0)
    assert catalog.strength_ranges(ids) == {ids[0]: (5.5, 8.0), ids[1]: (3.0, 16.0)}
    assert catalog.directions_without_range() == []
    catalog.put_preview(ids[0], PNG, 4.0, 0.9, unit=6.0, limit=4.0)  # indexed again: replaced
    assert catalog.strength_ranges([ids[0]]) == {ids[0]: (6.0, 4.0)}
    with pytest.raises(NotFound, match="no preview"):
        catalog.set_strength_range(ids[2], 1.0, 1.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError):
            catalog.set_strength_range(ids[0], bad, 1.0)
        with pytest.raises(InputError):
            catalog.put_preview(ids[0], PNG, 4.0, unit=bad)
    assert catalog.strength_ranges([ids[0]]) == {ids[0]: (6.0, 4.0)}  # nothing refused was written
    assert catalog.preview_facts(ids[0]) == (4.0, 0.9, 6.0, 4.0)  # what a card shows, in one read
    assert catalog.preview_facts(ids[2]) == (None, None, None, None)  # no preview yet


def test_migration_0008_keeps_older_previews_without_a_scale(sqlite_url):
    from alembic import command

    from locobank.catalog.connect import _alembic_config

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url, foreign_keys=False)
    with engine.connect() as conn:
        command.downgrade(_alembic_config(sqlite_url, conn), "0007")
        conn.commit()
        cols = {c["name"] for c in sa.inspect(conn).get_columns("previews")}
    engine.dispose()
    assert "unit_strength" not in cols and "locality" in cols
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        cols = {c["name"] for c in sa.inspect(conn).get_columns("previews")}
    engine.dispose()
    assert {"unit_strength", "linear_limit"} <= cols
