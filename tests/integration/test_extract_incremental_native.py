"""MariaDB incremental extracts through the native reader: the window's date bounds rendered as literals.

The same day is extracted twice through ``ExtractTable`` — native (connectorx) and row path (PyMySQL binds
the bounds) — from the same table, for a DATETIME, a TIMESTAMP and a DATE cursor, with rows on and next to
both edges, NULL and zero-date cursors: the manifests must say which reader ran and the two results must be
equal, and equal to the rows the half-open window ``[DAY 00:00, DAY+1 00:00)`` selects in Python.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import extract_helpers
import pyarrow as pa
import pytest
from extract_helpers import DAY, extract, mysql_tenant, read_back, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration
mysql_db = extract_helpers.mysql_db
START = dt.datetime.combine(DAY, dt.time())
END = START + dt.timedelta(days=1)
US = dt.timedelta(microseconds=1)
EDGES = [START - US, START, START + US, END - US, END, END + US, START - dt.timedelta(hours=12)]
DDL = """CREATE TABLE `{t}` (id int PRIMARY KEY, wall datetime(6) NULL, instant timestamp(6) NULL,
    day date NULL, amount decimal(30,10), note text) DEFAULT CHARSET=utf8mb4"""


def _tenants() -> dict[str, dict]:
    return {"native": mysql_tenant("native"), "rows": mysql_tenant("sqlalchemy")}


def _extract_both(name: str, cursor: str, tmp_path: Path, monkeypatch) -> dict[str, tuple]:
    """``{reader: (manifest, rows sorted by id)}`` for the day, through both readers."""
    table = {"t": {"source_name": name, "mode": "incremental", "cursor": cursor}}
    write_config(tmp_path, monkeypatch, _tenants(), table)
    out = {}
    for tenant in ("native", "rows"):
        extract(tenant, "t").run()
        manifest, data = read_back(tenant, "t")
        out[tenant] = (manifest, data.sort_by("id"))
    return out


def _insert(engine, name: str, rows: list[tuple]) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")  # TIMESTAMP literals are UTC instants
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # allow zero dates
        conn.exec_driver_sql(f"TRUNCATE TABLE `{name}`")
        if rows:
            conn.exec_driver_sql(f"INSERT INTO `{name}` VALUES (%s, %s, %s, %s, %s, %s)", rows)


def _edge_rows() -> list[tuple]:
    rows = [(i, at, at, at.date(), f"{i}.0123456789", f"edge {i} 😀") for i, at in enumerate(EDGES)]
    rows += [(100, None, None, None, None, None)]  # NULL cursors are in no window
    return rows


@pytest.mark.parametrize("cursor", ["wall", "instant", "day"])  # DATETIME, TIMESTAMP (+00:00 session), DATE
def test_the_window_is_read_natively_and_equals_the_row_path(
    mysql_db, tmp_path: Path, monkeypatch, cursor: str
) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_window"
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL.format(t=name))
    _insert(engine, name, _edge_rows())
    with engine.begin() as conn:  # a zero date: in no window, on both readers
        conn.exec_driver_sql("SET SESSION sql_mode = ''")
        conn.exec_driver_sql(f"INSERT INTO `{name}` VALUES (101, '0000-00-00', '0000-00-00', '0000-00-00', 0, '')")
    got = _extract_both(name, cursor, tmp_path, monkeypatch)
    (native_manifest, native), (rows_manifest, by_rows) = got["native"], got["rows"]
    assert native_manifest.details["reader"] == "connectorx-mysql"
    assert rows_manifest.details["reader"] == "sqlalchemy"
    # START, START + 1 us, END - 1 us (for DATE: the three edges that fall on DAY)
    assert native.column("id").to_pylist() == by_rows.column("id").to_pylist() == [1, 2, 3]
    assert native_manifest.source_count == rows_manifest.source_count == 3
    assert native.equals(by_rows)
    assert native_manifest.window_start == START.replace(tzinfo=dt.UTC)


PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NEAR_EDGES = st.one_of(
    st.sampled_from(EDGES),
    st.builds(
        lambda edge, offset: edge + dt.timedelta(microseconds=offset),
        st.sampled_from([START, END]),
        st.integers(-5_000_000, 5_000_000),
    ),
    st.datetimes(min_value=START - dt.timedelta(days=2), max_value=END + dt.timedelta(days=2)),
)


def test_random_cursors_near_the_edges_read_the_same_rows(mysql_db, tmp_path: Path, monkeypatch) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_prop"
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL.format(t=name))
    table = {"t": {"source_name": name, "mode": "incremental", "cursor": "wall"}}
    write_config(tmp_path, monkeypatch, _tenants(), table)

    @PROPERTY
    @given(st.lists(st.tuples(st.one_of(st.none(), NEAR_EDGES), st.text(max_size=10)), max_size=25))
    def check(values: list[tuple[dt.datetime | None, str]]) -> None:
        rows = [(i, at, None, None, None, note) for i, (at, note) in enumerate(values)]
        _insert(engine, name, rows)
        results = {}
        for tenant in ("native", "rows"):
            extract(tenant, "t").run()
            manifest, data = read_back(tenant, "t")
            results[tenant] = (manifest.details["reader"], data.sort_by("id"))
        assert results["native"][0] == "connectorx-mysql" and results["rows"][0] == "sqlalchemy"
        expected = [i for i, (at, _) in enumerate(values) if at is not None and START <= at < END]
        native, by_rows = results["native"][1], results["rows"][1]
        assert native.column("id").to_pylist() == expected
        assert native.equals(by_rows) and native.schema.field("wall").type == pa.timestamp("us")

    check()
