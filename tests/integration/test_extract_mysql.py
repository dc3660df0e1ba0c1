"""ExtractTable on the stack's MariaDB: the MySQL hard type cases round-trip exactly, zero dates counted."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import extract_helpers
import pyarrow as pa
import pytest
from extract_helpers import DAY, assert_reader, build, extract, mysql_tenant, read_back, write_config

from mozart_luigi.config import TableConfig, get_config
from mozart_luigi.connectors import Window, connector_for
from mozart_luigi.errors import TypeMappingError

pytestmark = pytest.mark.integration
mysql_db = extract_helpers.mysql_db
lake_url = extract_helpers.lake_url
reader = extract_helpers.reader
UTC = dt.UTC

DDL = """CREATE TABLE `{t}` (
  id int PRIMARY KEY, d65 decimal(65,30), d10 decimal(10,2), big_u bigint unsigned, big bigint,
  tiny1 tinyint(1),
  tiny_u tinyint unsigned, flag bool, med mediumint, small_u smallint unsigned, int_u int unsigned,
  day date, dt6 datetime(6), dt0 datetime, ts6 timestamp(6) NULL DEFAULT NULL, t6 time(6), doc json,
  choice enum('x','y'), tags set('a','b','c'), bit1 bit(1), bit10 bit(10), yr year, blob_ blob,
  bin varbinary(8), txt varchar(100), long_txt longtext, f float, d double
) DEFAULT CHARSET=utf8mb4"""
INSERT = """INSERT INTO `{t}` VALUES (1,
  12345678901234567890123456789012345.123456789012345678901234567890, -12.34,
  18446744073709551615, -9223372036854775808, 2, 255, true, -8388608, 65535, 4294967295, '0000-00-00',
  '2026-11-25 10:11:12.123456', '2026-00-10 00:00:00', '2026-11-25 10:11:12.654321', '23:59:59.999999',
  '{{"b": 1, "a": [1, 2]}}', 'y', 'a,c', b'1', b'1010101010', 2026, x'00ff10', x'0001',
  'emoji 😀 and \\0 nul', 'ß', 1/7, -1e308)"""
EXPECTED_TYPES = {
    "id": pa.int32(),
    "d65": pa.string(),
    "d10": pa.decimal128(10, 2),
    "big_u": pa.decimal128(20, 0),
    "big": pa.int64(),
    "tiny1": pa.int8(),
    "tiny_u": pa.int16(),
    "flag": pa.int8(),
    "med": pa.int32(),
    "small_u": pa.int32(),
    "int_u": pa.int64(),
    "day": pa.date32(),
    "dt6": pa.timestamp("us"),
    "dt0": pa.timestamp("us"),
    "ts6": pa.timestamp("us", tz="UTC"),
    "t6": pa.time64("us"),
    "doc": pa.string(),
    "choice": pa.string(),
    "tags": pa.string(),
    "bit1": pa.bool_(),
    "bit10": pa.int64(),
    "yr": pa.int16(),
    "blob_": pa.binary(),
    "bin": pa.binary(),
    "txt": pa.string(),
    "long_txt": pa.string(),
    "f": pa.float32(),
    "d": pa.float64(),
}
EXPECTED_ROW = {
    "id": 1,
    "d65": "12345678901234567890123456789012345.123456789012345678901234567890",
    "d10": Decimal("-12.34"),
    "big_u": Decimal(18446744073709551615),
    "big": -9223372036854775808,
    "tiny1": 2,
    "tiny_u": 255,
    "flag": 1,
    "med": -8388608,
    "small_u": 65535,
    "int_u": 4294967295,
    "day": None,
    "dt6": dt.datetime(2026, 11, 25, 10, 11, 12, 123456),
    "dt0": None,
    "ts6": dt.datetime(2026, 11, 25, 8, 11, 12, 654321, tzinfo=UTC),
    "t6": dt.time(23, 59, 59, 999999),
    "doc": '{"b": 1, "a": [1, 2]}',
    "choice": "y",
    "tags": "a,c",
    "bit1": True,
    "bit10": 682,
    "yr": 2026,
    "blob_": b"\x00\xff\x10",
    "bin": b"\x00\x01",
    "txt": "emoji 😀 and \x00 nul",
    "long_txt": "ß",
    "f": 0.1428571492433548,  # the stored float32 of 1/7, not the 6-digit text rendering 0.142857
    "d": -1e308,
}


def setup_types(engine, prefix: str) -> str:
    name = f"{prefix}_types"
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL.format(t=name))
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # allow zero dates, as legacy databases have them
        conn.exec_driver_sql("SET SESSION time_zone = '+02:00'")  # TIMESTAMP literals are read in +02:00
        conn.exec_driver_sql(INSERT.format(t=name))
        conn.exec_driver_sql(f"INSERT INTO `{name}` (id) VALUES (2)")
    return name


def test_every_mysql_type_case_round_trips_exactly(mysql_db, reader, lake_url, tmp_path: Path, monkeypatch) -> None:
    engine, prefix = mysql_db
    name = setup_types(engine, prefix)
    write_config(tmp_path, monkeypatch, {"globex": mysql_tenant(reader)}, {"types": {"source_name": name}}, lake_url)
    assert build(extract("globex", "types")).scheduling_succeeded
    manifest, data = read_back("globex", "types")
    assert {f.name: f.type for f in data.schema} == EXPECTED_TYPES
    rows = {r["id"]: r for r in data.to_pylist()}
    assert rows[1] == EXPECTED_ROW
    assert all(v is None for k, v in rows[2].items() if k != "id")
    assert manifest.row_count == manifest.source_count == 2
    assert_reader(manifest, reader)
    assert manifest.zero_dates_nulled == 2
    assert manifest.details["zero_dates_nulled_by_column"] == {"day": 1, "dt0": 1}
    assert "precision 65 > 38" in manifest.details["policies"]["d65"]


def test_datetime_is_wall_clock_and_timestamp_is_an_instant(mysql_db, reader, tmp_path: Path, monkeypatch) -> None:
    """The same literal written by clients in two time zones: DATETIME keeps it, TIMESTAMP stores instants."""
    engine, prefix = mysql_db
    name = f"{prefix}_clock"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE `{name}` (id int, wall datetime(6), instant timestamp(6) NULL)")
        for i, zone in enumerate(["+00:00", "+05:30", "-08:00"]):
            conn.exec_driver_sql(f"SET SESSION time_zone = '{zone}'")
            conn.exec_driver_sql(f"INSERT INTO `{name}` VALUES ({i}, '2026-11-25 12:00:00.5', '2026-11-25 12:00:00.5')")
    write_config(tmp_path, monkeypatch, {"globex": mysql_tenant(reader)}, {"clock": {"source_name": name}})
    extract("globex", "clock").run()
    rows = sorted(read_back("globex", "clock")[1].to_pylist(), key=lambda r: r["id"])
    assert [r["wall"] for r in rows] == [dt.datetime(2026, 11, 25, 12, 0, 0, 500000)] * 3
    assert [r["instant"] for r in rows] == [
        dt.datetime(2026, 11, 25, 12, 0, 0, 500000, tzinfo=UTC),
        dt.datetime(2026, 11, 25, 6, 30, 0, 500000, tzinfo=UTC),
        dt.datetime(2026, 11, 25, 20, 0, 0, 500000, tzinfo=UTC),
    ]


def test_incremental_window_on_timestamp_cursor_is_utc(mysql_db, reader, tmp_path: Path, monkeypatch) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_orders"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE `{name}` (id int, updated_at timestamp(6) NULL)")
        conn.exec_driver_sql("SET SESSION time_zone = '+00:00'")
        conn.exec_driver_sql(f"""INSERT INTO `{name}` VALUES (1, '2026-11-24 23:59:59.999999'),
            (2, '2026-11-25 00:00:00'), (3, '2026-11-25 23:59:59.999999'), (4, '2026-11-26 00:00:00')""")
    write_config(
        tmp_path,
        monkeypatch,
        {"globex": mysql_tenant(reader)},
        {"orders": {"source_name": name, "mode": "incremental", "cursor": "updated_at"}},
    )
    monkeypatch.setenv("TZ", "America/New_York")  # the client's zone must not matter
    extract("globex", "orders").run()
    manifest, data = read_back("globex", "orders")
    assert sorted(data.column("id").to_pylist()) == [2, 3] and manifest.source_count == 2


def test_time_outside_a_day_is_refused(mysql_db, reader, tmp_path: Path, monkeypatch) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_durations"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE `{name}` (id int, spent time)")
        conn.exec_driver_sql(f"INSERT INTO `{name}` VALUES (1, '12:00:00'), (2, '-01:00:00')")
    write_config(tmp_path, monkeypatch, {"globex": mysql_tenant(reader)}, {"durations": {"source_name": name}})
    task = extract("globex", "durations")
    with pytest.raises(TypeMappingError, match=r"tenant 'globex', table 'durations': column 'spent' \(TIME"):
        task.run()
    assert not task.output().exists()


def test_hostile_names_with_backticks(mysql_db, reader, tmp_path: Path, monkeypatch) -> None:
    """Backticks in column names (one, at both ends, two in a row) are reflected as their true names and quoted
    once from them in every query, on both readers. tables.yaml refuses such names (config.COLUMN_NAME_RE),
    so ``exclude``/``cursor`` naming one are checked on the connector's own snapshot."""
    engine, prefix = mysql_db
    name = f"{prefix} tick`s"
    quoted = f"`{name.replace('`', '``')}`"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {quoted} (`a``b` int, ```quoted``` varchar(20), `two````ticks` "
            "decimal(12,2), `Up``dated` datetime(6), `drop``me` int, updated datetime)"
        )
        conn.exec_driver_sql(
            f"INSERT INTO {quoted} VALUES "
            "(1, 'x`; DROP TABLE y; --', 1.50, '2026-11-25 08:00', 9, '2026-11-25 08:00'), "
            "(2, 'late', 2.50, '2026-11-26 00:00', 9, '2026-11-26 00:00')"
        )
    tables = {"ticks": {"source_name": name, "mode": "incremental", "cursor": "updated", "exclude": ["updated"]}}
    write_config(tmp_path, monkeypatch, {"globex": mysql_tenant(reader)}, tables)
    expected = {
        "a`b": 1,
        "`quoted`": "x`; DROP TABLE y; --",
        "two``ticks": Decimal("1.50"),
        "Up`dated": dt.datetime(2026, 11, 25, 8),
    }
    try:
        extract("globex", "ticks").run()
        manifest, data = read_back("globex", "ticks")
        assert data.to_pylist() == [{**expected, "drop`me": 9}]
        assert manifest.details["reader"] == ("sqlalchemy" if reader == "sqlalchemy" else "connectorx-mysql")
        by_true_names = TableConfig(
            name="ticks", source_name=name, mode="incremental", cursor="Up`dated", exclude=("drop`me", "updated")
        )
        connector = connector_for(get_config().tenant("globex"))
        with connector.snapshot(by_true_names, Window.for_date(DAY)) as snap:
            assert snap.count() == 1
            rows = pa.Table.from_batches(list(snap.batches(100)), schema=snap.schema).to_pylist()
            assert rows == [expected] and snap.reader.name == manifest.details["reader"]
        connector.dispose()
    finally:
        with engine.begin() as conn:  # the fixture's clean-up does not quote a backtick in a table name
            conn.exec_driver_sql(f"DROP TABLE {quoted}")
