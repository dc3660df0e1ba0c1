"""ExtractTable on a real Oracle (docker-compose's Oracle Free): runs only when MOZART_TEST_ORACLE_URL is set.

``MOZART_TEST_ORACLE_URL=oracle+oracledb://user:pw@127.0.0.1:1521/?service_name=FREEPDB1``; the user needs
CREATE TABLE in its own schema. Tables are named uniquely per test and dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from extract_helpers import DAY, build, extract, read_back, unique, write_config

pytestmark = [pytest.mark.integration, pytest.mark.oracle]
UTC = dt.UTC


@pytest.fixture
def oracle_table() -> Iterator[tuple[sa.Engine, str]]:
    url = os.environ.get("MOZART_TEST_ORACLE_URL")
    if not url:
        pytest.skip("MOZART_TEST_ORACLE_URL is not set (Oracle Free from docker-compose)")
    engine = sa.create_engine(url)
    name = unique("MZ").upper()
    try:
        yield engine, name
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"BEGIN EXECUTE IMMEDIATE 'DROP TABLE \"{name}\" PURGE'; EXCEPTION WHEN OTHERS THEN NULL; END;"
            )
        engine.dispose()


def test_oracle_type_cases_round_trip_exactly(oracle_table, tmp_path: Path, monkeypatch) -> None:
    engine, name = oracle_table
    with engine.begin() as conn:
        conn.exec_driver_sql(f"""CREATE TABLE "{name}" (
            id NUMBER(10, 0), n_free NUMBER, n_int INTEGER, n_12_2 NUMBER(12, 2), n_30 NUMBER(30, 0),
            d DATE, ts TIMESTAMP(6), ts_tz TIMESTAMP(6) WITH TIME ZONE, c CLOB, b BLOB, r RAW(16),
            bd BINARY_DOUBLE, bf BINARY_FLOAT, v VARCHAR2(40 CHAR), "Order Note" NVARCHAR2(20))""")
        conn.exec_driver_sql(f"""INSERT INTO "{name}" VALUES (1, 12345.6789,
            123456789012345678901234567890123456, -1234567890.12, 123456789012345678901234567890,
            TO_DATE('2026-11-25 10:11:12', 'YYYY-MM-DD HH24:MI:SS'),
            TIMESTAMP '2026-11-25 10:11:12.123456', TIMESTAMP '2026-11-25 10:11:12.654321 +02:00',
            TO_CLOB('long text 😀'), HEXTORAW('00FF10'), HEXTORAW('0001'), BINARY_DOUBLE_INFINITY, 1.5,
            'Grüße', 'x')""")
        conn.exec_driver_sql(f'INSERT INTO "{name}" (id) VALUES (2)')
    tenant = {"source": {"kind": "oracle", "url": "${MOZART_TEST_ORACLE_URL}"}}
    write_config(tmp_path, monkeypatch, {"initech": tenant}, {"types": {"source_name": name}})
    assert build(extract("initech", "types")).scheduling_succeeded
    manifest, data = read_back("initech", "types", DAY)
    assert data.schema.types == [
        pa.int64(),
        pa.decimal128(38, 10),
        pa.decimal128(38, 0),
        pa.decimal128(12, 2),
        pa.decimal128(30, 0),
        pa.timestamp("us"),
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
        pa.string(),
        pa.binary(),
        pa.binary(),
        pa.float64(),
        pa.float32(),
        pa.string(),
        pa.string(),
    ]
    rows = {r["id"]: r for r in data.to_pylist()}
    assert rows[1] == {
        "id": 1,
        "n_free": Decimal("12345.6789"),
        "n_int": Decimal(123456789012345678901234567890123456),
        "n_12_2": Decimal("-1234567890.12"),
        "n_30": Decimal(123456789012345678901234567890),
        "d": dt.datetime(2026, 11, 25, 10, 11, 12),
        "ts": dt.datetime(2026, 11, 25, 10, 11, 12, 123456),
        "ts_tz": dt.datetime(2026, 11, 25, 8, 11, 12, 654321, tzinfo=UTC),
        "c": "long text 😀",
        "b": b"\x00\xff\x10",
        "r": b"\x00\x01",
        "bd": float("inf"),
        "bf": 1.5,
        "v": "Grüße",
        "Order Note": "x",
    }
    assert all(v is None for k, v in rows[2].items() if k != "id")
    assert manifest.row_count == manifest.source_count == 2
