"""ExtractTable on the stack's PostgreSQL: every hard type case round-trips exactly, local and S3 lakes."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from pathlib import Path

import extract_helpers
import pyarrow as pa
import pytest
import sqlalchemy as sa
from extract_helpers import (
    DAY,
    assert_reader,
    build,
    create_big_table,
    extract,
    pg_tenant,
    read_back,
    write_config,
)

from mozart_luigi.config import TableConfig, get_config
from mozart_luigi.connectors import Window, connector_for
from mozart_luigi.errors import TypeMappingError

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
lake_url = extract_helpers.lake_url
reader = extract_helpers.reader
UTC = dt.UTC

DDL = """
CREATE TYPE "{s}".mood AS ENUM ('sad', 'happy');
CREATE TABLE "{s}".types (
  id int PRIMARY KEY, n_free numeric, n_12_3 numeric(12,3), n_50 numeric(50,10), ts_tz timestamptz,
  ts timestamp, t time, t_tz timetz, span interval, doc json, docb jsonb, uid uuid, raw bytea, ints int[],
  texts text[], mood "{s}".mood, moods "{s}".mood[], ip inet, flag boolean, r real, d double precision,
  s smallint, b bigint, day date, money_ money, amounts numeric(10,2)[], uids uuid[], bits bit(3),
  v varchar(20)
);
"""
ROW = """INSERT INTO "{s}".types VALUES (1, 12345.6789, -123456789.123,
  12345678901234567890123456789012345678.1234567890, '2026-11-25 10:11:12.123456+02',
  '2026-11-25 10:11:12.654321',
  '23:59:59.999999', '10:00:00+02', '1 year 2 mons 3 days 04:05:06.789', '{{"b": 1,  "a": [1, 2]}}',
  '{{"b": 1,  "a": [1, 2]}}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\\x00ff10', '{{1,NULL,3}}',
  ARRAY['a', 'b,c', '"q"', NULL, '😀'], 'happy', '{{sad,happy}}', '192.168.0.1/24', true, 'NaN', '-Infinity',
  -32768, 9223372036854775807, '2026-11-25', 12.34, '{{1.10,2}}',
  ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[], B'101', 'Grüße 😀');
INSERT INTO "{s}".types (id, d, r, flag) VALUES (2, 'Infinity', 3.5, false);
INSERT INTO "{s}".types (id) VALUES (3);
"""
EXPECTED_TYPES = {
    "id": pa.int32(),
    "n_free": pa.decimal128(38, 10),
    "n_12_3": pa.decimal128(12, 3),
    "n_50": pa.string(),
    "ts_tz": pa.timestamp("us", tz="UTC"),
    "ts": pa.timestamp("us"),
    "t": pa.time64("us"),
    "t_tz": pa.string(),
    "span": pa.string(),
    "doc": pa.string(),
    "docb": pa.string(),
    "uid": pa.string(),
    "raw": pa.binary(),
    "ints": pa.list_(pa.int32()),
    "texts": pa.list_(pa.string()),
    "mood": pa.string(),
    "moods": pa.list_(pa.string()),
    "ip": pa.string(),
    "flag": pa.bool_(),
    "r": pa.float32(),
    "d": pa.float64(),
    "s": pa.int16(),
    "b": pa.int64(),
    "day": pa.date32(),
    "money_": pa.decimal128(19, 2),
    "amounts": pa.list_(pa.decimal128(10, 2)),
    "uids": pa.list_(pa.string()),
    "bits": pa.string(),
    "v": pa.string(),
}
EXPECTED_ROW = {
    "id": 1,
    "n_free": Decimal("12345.6789"),
    "n_12_3": Decimal("-123456789.123"),
    "n_50": "12345678901234567890123456789012345678.1234567890",
    "ts_tz": dt.datetime(2026, 11, 25, 8, 11, 12, 123456, tzinfo=UTC),
    "ts": dt.datetime(2026, 11, 25, 10, 11, 12, 654321),
    "t": dt.time(23, 59, 59, 999999),
    "t_tz": "10:00:00+02",
    "span": "P1Y2M3DT4H5M6.789S",
    "doc": '{"b": 1,  "a": [1, 2]}',
    "docb": '{"a": [1, 2], "b": 1}',
    "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "raw": b"\x00\xff\x10",
    "ints": [1, None, 3],
    "texts": ["a", "b,c", '"q"', None, "😀"],
    "mood": "happy",
    "moods": ["sad", "happy"],
    "ip": "192.168.0.1/24",
    "flag": True,
    "d": -math.inf,
    "s": -32768,
    "b": 9223372036854775807,
    "day": dt.date(2026, 11, 25),
    "money_": Decimal("12.34"),
    "amounts": [Decimal("1.10"), Decimal("2.00")],
    "uids": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
    "bits": "101",
    "v": "Grüße 😀",
}


def setup_types(engine: sa.Engine, schema: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL.format(s=schema))
        conn.exec_driver_sql(ROW.format(s=schema))


def test_every_pg_type_case_round_trips_exactly(pg_schema, reader, lake_url, tmp_path: Path, monkeypatch) -> None:
    engine, schema = pg_schema
    setup_types(engine, schema)
    write_config(tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, {"types": {"mode": "full"}}, lake_url)
    assert build(extract("acme", "types")).scheduling_succeeded
    manifest, data = read_back("acme", "types")
    assert {f.name: f.type for f in data.schema} == EXPECTED_TYPES
    assert manifest.schema.equals(data.schema) and manifest.row_count == manifest.source_count == 3
    rows = {r["id"]: r for r in data.to_pylist()}
    first = rows[1]
    assert math.isnan(first.pop("r"))
    assert first == EXPECTED_ROW
    assert rows[2]["d"] == math.inf and rows[2]["r"] == 3.5 and rows[2]["flag"] is False
    assert all(v is None for k, v in rows[3].items() if k != "id")
    assert_reader(manifest, reader)
    assert "n_50" in manifest.details["policies"] and "n_free" in manifest.details["policies"]


def test_incremental_window_is_half_open_in_utc(pg_schema, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".events (id int, changed timestamptz, local_ts timestamp)')
        conn.exec_driver_sql(f"""INSERT INTO "{schema}".events VALUES
            (1, '2026-11-24 23:59:59.999999+00', '2026-11-24 23:59:59.999999'),
            (2, '2026-11-25 00:00:00+00', '2026-11-25 00:00:00'),
            (3, '2026-11-25 01:30:00+02', '2026-11-25 23:59:59.999999'),
            (4, '2026-11-25 23:59:59.999999+00', '2026-11-26 00:00:00'),
            (5, '2026-11-26 00:00:00+00', '2026-11-26 00:00:01'),
            (6, '2026-11-26 00:30:00+01', NULL)""")
    tables = {
        "events": {"mode": "incremental", "cursor": "changed"},
        "events_local": {"source_name": "events", "mode": "incremental", "cursor": "local_ts"},
    }
    write_config(tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, tables)
    days = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]
    assert build(*(extract("acme", t, d) for t in tables for d in days)).scheduling_succeeded
    ids = {(t, d): sorted(read_back("acme", t, d)[1].column("id").to_pylist()) for t in tables for d in days}
    assert ids[("events", days[0])] == [1, 3]  # 01:30+02 is 23:30 UTC the day before
    assert ids[("events", DAY)] == [2, 4, 6]  # 00:30+01 on the 26th is 23:30 UTC on the 25th
    assert ids[("events", days[2])] == [5]
    assert ids[("events_local", DAY)] == [2, 3] and ids[("events_local", days[2])] == [4, 5]
    manifest, _ = read_back("acme", "events")
    assert manifest.window_start == dt.datetime(2026, 11, 25, tzinfo=UTC)
    assert manifest.window_end == dt.datetime(2026, 11, 26, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "why"),
    [("'NaN'", "not a valid decimal128"), ("0.12345678901", "data loss"), ("1e30", "precision")],
)
def test_unbounded_numeric_that_does_not_fit_fails_without_rounding(
    pg_schema, reader, tmp_path: Path, monkeypatch, value: str, why: str
) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".measures (id int, x numeric)')
        conn.exec_driver_sql(f'INSERT INTO "{schema}".measures VALUES (1, 1.5), (2, {value})')
    write_config(tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, {"measures": {"mode": "full"}})
    task = extract("acme", "measures")
    with pytest.raises(TypeMappingError) as info:
        task.run()
    message = str(info.value)
    assert "tenant 'acme', table 'measures'" in message and "column 'x'" in message and "NUMERIC" in message
    assert why in message
    assert not task.output().exists()


def test_unsupported_type_is_refused_naming_the_column(pg_schema, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".shapes (id int, p point)')
    write_config(
        tmp_path,
        monkeypatch,
        {"acme": pg_tenant(schema, reader)},
        {
            "shapes": {"mode": "full"},
            "shapes_ok": {"source_name": "shapes", "mode": "full", "exclude": ["p"]},
        },
    )
    with pytest.raises(TypeMappingError, match=r"tenant 'acme', table 'shapes': column 'p' of type"):
        extract("acme", "shapes").run()
    extract("acme", "shapes_ok").run()
    assert read_back("acme", "shapes_ok")[1].schema.names == ["id"]


def test_part_rotation_and_progress(pg_schema, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema = pg_schema
    create_big_table(engine, schema)
    monkeypatch.setenv("MOZART_BATCH_ROWS", "300")
    monkeypatch.setenv("MOZART_PART_ROWS", "1000")
    write_config(tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, {"big": {"mode": "full"}})
    task = extract("acme", "big")
    messages: list[str] = []
    monkeypatch.setattr(task, "set_status_message", messages.append)
    monkeypatch.setattr(task, "set_progress_percentage", lambda p: None)
    task.run()
    manifest, data = read_back("acme", "big")
    assert_reader(manifest, reader)
    assert [f.rows for f in manifest.files] == [1000, 1000, 500]
    assert all(f.name.startswith(f"part-{manifest.run_id}-") for f in manifest.files)
    assert sorted(data.column("id").to_pylist()) == list(range(1, 2501))
    assert messages[0] == "big: 0/2,500 rows" and messages[-1].startswith("big: 2,500 rows, ")


def test_uuid_arrays_and_domains(pg_schema, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema = pg_schema
    value = uuid.uuid4()
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE DOMAIN "{schema}".positive AS numeric(8,2) CHECK (VALUE > 0)')
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".doms (id int, price "{schema}".positive, tags jsonb[])')
        conn.exec_driver_sql(f"""INSERT INTO "{schema}".doms VALUES (1, 9.99, ARRAY['{{"k": "{value}"}}']::jsonb[])""")
    write_config(tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, {"doms": {"mode": "full"}})
    extract("acme", "doms").run()
    _, data = read_back("acme", "doms")
    assert data.schema.field("price").type == pa.decimal128(8, 2)
    assert data.to_pylist() == [{"id": 1, "price": Decimal("9.99"), "tags": [f'{{"k": "{value}"}}']}]


def test_hostile_names_with_backticks(pg_schema, reader, tmp_path: Path, monkeypatch) -> None:
    """The names that trip MySQL (backticks) and a double quote: reflected, quoted, extracted on both readers;
    ``exclude``/``cursor`` by such a name (tables.yaml refuses them) on the connector's own snapshot."""
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}"."tick`s" ("a`b" int, "`quoted`" text, "two``ticks" '
            'numeric(12,2), "Up`dated" timestamp, "drop`me" int, "dq""uote" int)'
        )
        conn.exec_driver_sql(f"""INSERT INTO "{schema}"."tick`s" VALUES
            (1, 'x`; DROP TABLE y; --', 1.50, '2026-11-25 08:00', 9, 3), (2, 'late', 2.5, '2026-11-26', 9, 4)""")
    write_config(
        tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, {"ticks": {"source_name": "tick`s", "mode": "full"}}
    )
    extract("acme", "ticks").run()
    manifest, data = read_back("acme", "ticks")
    expected = {
        "a`b": 1,
        "`quoted`": "x`; DROP TABLE y; --",
        "two``ticks": Decimal("1.50"),
        "Up`dated": dt.datetime(2026, 11, 25, 8),
    }
    assert sorted(data.to_pylist(), key=lambda r: r["a`b"])[0] == {**expected, "drop`me": 9, 'dq"uote': 3}
    assert manifest.details["reader"] == ("sqlalchemy" if reader == "sqlalchemy" else "adbc-postgresql")
    by_true_names = TableConfig(
        name="ticks", source_name="tick`s", mode="incremental", cursor="Up`dated", exclude=("drop`me", 'dq"uote')
    )
    connector = connector_for(get_config().tenant("acme"))
    with connector.snapshot(by_true_names, Window.for_date(DAY)) as snap:
        assert snap.count() == 1
        assert pa.Table.from_batches(list(snap.batches(100)), schema=snap.schema).to_pylist() == [expected]
    connector.dispose()
