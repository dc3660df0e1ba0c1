"""MariaDB zero and partial dates on the native reader (connectorx): the ``TO_DAYS(col) >= 366`` form.

Every combination of a zero / year-0 / first / last year with a zero, first and last month and day, in
DATE and DATETIME columns, nullable and NOT NULL (a NOT NULL column holds ``0000-00-00`` when the
``sql_mode`` allowed it at insert time), and the zero, first and last ``TIMESTAMP``, NULLs between. Read:

* with the count (one statement; a column's zero dates counted as its NULLs minus ``COUNT(*) - COUNT(col)``),
  with and without checksum sums riding with it;
* without the count (a parallel stream: per-row flags);
* by the SQLAlchemy row path (PyMySQL hands back what Python cannot represent as text: NULL, counted).

All must give the same table, and each column's count must be what the server says with the earlier form
(``year(col) = 0 OR month(col) = 0 OR dayofmonth(col) = 0``).
"""

from __future__ import annotations

import itertools

import extract_helpers
import pyarrow as pa
import pytest
import sqlalchemy as sa

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors import _native_mysql
from mozart_luigi.connectors._native_common import Where
from mozart_luigi.connectors.mysql import MySQLConnector
from mozart_luigi.connectors.native import typed_query
from mozart_luigi.secrets import Secret

pytestmark = pytest.mark.integration
mysql_db = extract_helpers.mysql_db

DDL = """CREATE TABLE `{t}` (
    id INT PRIMARY KEY, d DATE NULL, dn DATE NOT NULL, dt DATETIME(6) NULL, dtn DATETIME NOT NULL,
    ts TIMESTAMP(6) NULL, tsn TIMESTAMP NOT NULL DEFAULT 0, v VARCHAR(20) NULL
) DEFAULT CHARSET=utf8mb4"""
DATES = ("d", "dn", "dt", "dtn")
STAMPS = ("ts", "tsn")
YEARS = ("0000", "0001", "0999", "2024", "9999")
MONTHS = ("00", "01", "02", "12")
DAYS = ("00", "01", "28", "31")
STAMP_VALUES = ("0000-00-00 00:00:00", "1970-01-01 00:00:01", "2038-01-19 03:14:07", "2024-02-29 12:00:00.5")


def _rows() -> list[tuple]:
    rows = []
    grid = [f"{y}-{m}-{d}" for y, m, d in itertools.product(YEARS, MONTHS, DAYS)]
    for i, day in enumerate(grid):
        stamp = STAMP_VALUES[i % len(STAMP_VALUES)]
        nullable = None if i % 7 == 3 else day  # NULLs among the nullable columns
        rows.append((i, nullable, day, None if i % 5 == 2 else f"{day} 23:59:59.999999", f"{day} 00:00:00"))
        rows[-1] += (None if i % 6 == 1 else stamp, stamp, None if i % 2 else f"v{i}")
    return rows


def _fill(engine: sa.Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL.format(t=name))
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # zero and partial dates, as legacy databases have
        conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
        conn.exec_driver_sql(f"INSERT INTO `{name}` VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", _rows())


def _server_counts(engine: sa.Engine, name: str) -> dict[str, int]:
    """Each column's invalid dates by the earlier form (TIMESTAMP: the zero value)."""
    parts = [f"SUM(year({c}) = 0 OR month({c}) = 0 OR dayofmonth({c}) = 0)" for c in DATES]
    parts += [f"SUM({c} = 0)" for c in STAMPS]
    with engine.connect() as conn:
        conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
        got = conn.exec_driver_sql(f"SELECT {', '.join(parts)} FROM `{name}`").one()
    return {c: int(n) for c, n in zip(DATES + STAMPS, got, strict=True)}


def _connector(url: str, *, native: bool) -> MySQLConnector:
    source = SourceConfig(kind="mysql", url=Secret(url), native=native)
    return MySQLConnector(TenantConfig(id="acme", source=source, tables=()))


def _snapshot_read(url: str, table: TableConfig, *, native: bool) -> tuple[pa.Table, dict[str, int], str]:
    with _connector(url, native=native).snapshot(table) as snap:
        assert snap.count() == len(_rows())
        data = pa.Table.from_batches(list(snap.batches(40)), schema=snap.schema)
        return data.sort_by("id"), {c: s.zero_dates for c, s in snap.stats.items() if s.zero_dates}, snap.reader.name


def _open_read(url: str, table: TableConfig, *, count: bool, sums: bool) -> tuple[pa.Table, dict[str, int], tuple]:
    """``open_read`` itself: with the count (and checksum-like sums) or as a parallel stream (no count)."""
    connector = _connector(url, native=True)
    with connector.snapshot(table) as snap:
        query, schema = typed_query(snap), snap.schema
    native_url = connector.native_url()
    sum_exprs = [sa.func.sum(query.selected_columns[0]), sa.func.count(query.selected_columns[7])] if sums else []
    stats: dict[str, int] = {}
    where = Where(native_url, "acme", table.name)
    with _native_mysql.open_read(
        native_url,
        query,
        schema,
        30,
        stats=stats,
        session=connector.session_statements,
        where=where,
        sums=sum_exprs,
        count=count,
    ) as (n, summed, batches):
        data = pa.Table.from_batches(list(batches), schema=schema)
    assert n == (len(_rows()) if count else -1)
    return data.sort_by("id"), {c: z for c, z in stats.items() if z}, summed


def test_zero_partial_and_year_zero_dates_are_null_and_counted_alike_on_every_path(mysql_db) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_zero"
    _fill(engine, name)
    url = engine.url.render_as_string(hide_password=False)
    table = TableConfig(name="zero", source_name=name)
    expected = _server_counts(engine, name)
    assert all(expected[c] > 0 for c in DATES + STAMPS)  # every column holds some (NOT NULL ones too)

    rows, row_counts, reader = _snapshot_read(url, table, native=False)
    assert reader == "sqlalchemy" and row_counts == expected
    native, native_counts, reader = _snapshot_read(url, table, native=True)
    assert reader == "connectorx-mysql" and native_counts == expected
    assert native.equals(rows)

    with_sums, sum_counts, summed = _open_read(url, table, count=True, sums=True)
    assert with_sums.equals(rows) and sum_counts == expected
    ids = [r[0] for r in _rows()]
    assert [int(summed[0]), summed[1]] == [sum(ids), sum(1 for r in _rows() if r[7] is not None)]
    stream, stream_counts, _ = _open_read(url, table, count=False, sums=False)
    assert stream.equals(rows) and stream_counts == expected

    # what is left is exactly the valid stored dates: year, month and day non-zero (the server stored an
    # impossible date such as 0001-02-31 as 0000-00-00 under this sql_mode)
    with engine.connect() as conn:
        casts = ", ".join(f"CAST({c} AS CHAR)" for c in DATES)
        stored = conn.exec_driver_sql(f"SELECT id, {casts} FROM `{name}` ORDER BY id").all()
    for k, column in enumerate(DATES):
        valid = [text is not None and all(int(p) for p in text[:10].split("-")) for text in (r[1 + k] for r in stored)]
        assert [v is not None for v in rows.column(column).to_pylist()] == valid, column


def test_an_empty_table_counts_no_zero_dates(mysql_db) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_zero_empty"
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL.format(t=name))
    url = engine.url.render_as_string(hide_password=False)
    data, counts, reader = _snapshot_read_empty(url, TableConfig(name="zero", source_name=name))
    assert reader == "connectorx-mysql" and data.num_rows == 0 and counts == {}


def _snapshot_read_empty(url: str, table: TableConfig) -> tuple[pa.Table, dict[str, int], str]:
    with _connector(url, native=True).snapshot(table) as snap:
        assert snap.count() == 0
        data = pa.Table.from_batches(list(snap.batches(40)), schema=snap.schema)
        return data, {c: s.zero_dates for c, s in snap.stats.items() if s.zero_dates}, snap.reader.name
