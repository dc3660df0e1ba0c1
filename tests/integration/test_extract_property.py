"""Property tests: random decimals, timestamps, floats, text (emoji, \\0) and bytes round-trip exactly."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from decimal import Decimal
from pathlib import Path

import extract_helpers
import pytest
from extract_helpers import assert_reader, extract, mysql_tenant, pg_tenant, read_back, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
mysql_db = extract_helpers.mysql_db
reader = extract_helpers.reader
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # any code point, emoji and \0 included
PG_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
OFFSETS = st.sampled_from([dt.timedelta(0), dt.timedelta(hours=5, minutes=30), dt.timedelta(hours=-8)])
NAIVE = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 12, 31))
AWARE = st.builds(lambda d, o: d.replace(tzinfo=dt.timezone(o)), NAIVE, OFFSETS)


def decimals(integer_digits: int, places: int) -> st.SearchStrategy[Decimal]:
    with decimal.localcontext(prec=100):  # the default 28 digits would round a 65-digit bound (and its negation)
        high = Decimal(10) ** integer_digits - Decimal(1).scaleb(-places)
        low = -high
    return st.decimals(min_value=low, max_value=high, places=places, allow_nan=False, allow_infinity=False)


PG_ROW = st.tuples(decimals(18, 6), decimals(27, 10), NAIVE, AWARE, st.floats(), PG_TEXT, st.binary(max_size=20))
MYSQL_ROW = st.tuples(
    decimals(35, 30), decimals(8, 2), NAIVE.filter(lambda d: d.year >= 1000), TEXT, st.binary(max_size=20)
)


def same_float(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (
        a is not None and b is not None and (a == b or math.isnan(a) == math.isnan(b) and math.isnan(a))
    )


def test_random_values_round_trip_through_postgres(pg_schema, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".prop (id int, d numeric(24,6), u numeric, ts timestamp, '
            "tz timestamptz, f float8, t text, b bytea)"
        )
    write_config(tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, {"prop": {"mode": "full"}})

    @PROPERTY
    @given(st.lists(PG_ROW, max_size=15))
    def check(rows: list[tuple]) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'TRUNCATE "{schema}".prop')
            if rows:
                conn.exec_driver_sql(
                    f'INSERT INTO "{schema}".prop VALUES (%s, %s, %s, %s, %s, %s, %s, %s)',
                    [(i, *row) for i, row in enumerate(rows)],
                )
        extract("acme", "prop").run()
        manifest, data = read_back("acme", "prop")
        assert manifest.row_count == len(rows)
        assert_reader(manifest, reader)
        got = sorted(data.to_pylist(), key=lambda r: r["id"])
        for row, back in zip(rows, got, strict=True):
            d, u, ts, tz, f, t, b = row
            assert (back["d"], back["u"], back["ts"], back["t"], back["b"]) == (d, u, ts, t, b)
            assert back["tz"] == tz and back["tz"].utcoffset() == dt.timedelta(0)
            assert same_float(back["f"], f)

    check()


def test_random_values_round_trip_through_mariadb(mysql_db, reader, tmp_path: Path, monkeypatch) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_prop"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE `{name}` (id int, wide decimal(65,30), d decimal(10,2), "
            "ts datetime(6), t longtext, b longblob) DEFAULT CHARSET=utf8mb4"
        )
    write_config(tmp_path, monkeypatch, {"globex": mysql_tenant(reader)}, {"prop": {"source_name": name}})

    @PROPERTY
    @given(st.lists(MYSQL_ROW, max_size=15))
    def check(rows: list[tuple]) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE TABLE `{name}`")
            if rows:
                conn.exec_driver_sql(
                    f"INSERT INTO `{name}` VALUES (%s, %s, %s, %s, %s, %s)",
                    [(i, *row) for i, row in enumerate(rows)],
                )
        extract("globex", "prop").run()
        manifest, data = read_back("globex", "prop")
        assert manifest.row_count == len(rows)
        assert_reader(manifest, reader)
        got = sorted(data.to_pylist(), key=lambda r: r["id"])
        for (wide, d, ts, t, b), back in zip(rows, got, strict=True):
            assert Decimal(back["wide"]) == wide and len(back["wide"].split(".")[1]) == 30  # every stored digit
            assert (back["d"], back["ts"], back["t"], back["b"]) == (d, ts, t, b)

    check()
