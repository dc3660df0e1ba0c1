"""Per-column type overrides on the stack (issue 14, item 1): values the default mapping refuses — an unbounded
PostgreSQL ``numeric`` holding ``1E-12`` or a 101-digit number, MariaDB ``TIME`` of ``±838:59:59`` — are
refused without an override (the message names the override that stores them), then, with it, extracted by
both readers, loaded into Iceberg and read back through Trino equal to the source's own text.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import extract_helpers
import pytest
import test_load_trino as load_cases
from extract_helpers import DAY, assert_reader, build, extract, mysql_tenant, pg_tenant

from mozart_luigi.errors import SchemaDriftError, TypeMappingError
from mozart_luigi.tasks.load import LoadIceberg

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
mysql_db = extract_helpers.mysql_db
reader = extract_helpers.reader

PG_VALUES = (
    "(1, 1E-12, 1e100, 1.5, '(1,2.5)')",
    "(2, -98765432109876543210.123456789012345678, "
    "-123456789012345678901234567890123456789012345.000000000000000000001, 0, NULL)",
    "(3, 0.5, 'NaN', -12345678.1234, '(-0.1,1e-7)')",
    "(4, NULL, NULL, NULL, NULL)",
)
# shape: a type the mapping refuses (point); the string override reads it as PostgreSQL's own text
PG_OVERRIDES = {"small": {"type": "decimal(38,18)"}, "huge": {"type": "string"}, "shape": {"type": "string"}}


@pytest.fixture
def stack(stack_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    env = load_cases.Stack(tmp_path, monkeypatch)
    yield env
    env.cleanup()


def _types(stack: load_cases.Stack, table: str) -> dict[str, str]:
    return dict(
        stack.warehouse.query(
            "SELECT column_name, data_type FROM iceberg.information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [stack.tenant, table],
        )
    )


def _source(engine: Any, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


# ------------------------------------------------------------------------------------------ PostgreSQL
def test_pg_unbounded_numeric_refused_then_stored_exactly_by_overrides(stack, pg_schema, reader: str) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".measures (id int, small numeric, huge numeric, fixed numeric(12,4), shape point)'
        )
        conn.exec_driver_sql(f'INSERT INTO "{schema}".measures VALUES {", ".join(PG_VALUES)}')
    stack.configure(pg_tenant(schema, reader), {"measures": {"mode": "full", "exclude": ["shape"]}})
    with pytest.raises(TypeMappingError) as refused:
        extract(stack.tenant, "measures").run()
    message = str(refused.value)
    assert f"tenant '{stack.tenant}', table 'measures': column 'small'" in message
    assert 'add to tables.yaml under tables.measures: columns: {small: {type: "decimal(38,18)"}}' in message
    assert "or {type: string}" in message

    stack.configure(pg_tenant(schema, reader), {"measures": {"mode": "full", "columns": PG_OVERRIDES}})
    result = build(stack.load("measures"))
    assert result.scheduling_succeeded, result.summary_text
    manifest = stack.manifest("measures")
    assert_reader(manifest, reader)
    assert manifest.details["reader"] == ("adbc-postgresql" if reader == "native" else "sqlalchemy")
    assert manifest.details["overrides"] == {"small": "decimal(38,18)", "huge": "string", "shape": "string"}
    assert _types(stack, "measures") == {
        "id": "integer",
        "small": "decimal(38,18)",
        "huge": "varchar",
        "fixed": "decimal(12,4)",
        "shape": "varchar",
        "_mozart_date": "date",
        "_mozart_extracted_at": "timestamp(6) with time zone",
    }
    source = _source(
        engine,
        "SELECT id, CAST(small AS TEXT), CAST(huge AS TEXT), fixed, CAST(shape AS TEXT) "
        f'FROM "{schema}".measures ORDER BY id',
    )
    loaded = stack.rows("measures", "id, small, huge, fixed, shape")
    assert len(loaded) == len(source) == 4
    for (sid, small, huge, fixed, shape), (lid, l_small, l_huge, l_fixed, l_shape) in zip(source, loaded, strict=True):
        assert lid == sid and l_fixed == fixed
        assert (l_huge, l_shape) == (huge, shape)  # the very text PostgreSQL renders, every digit ('NaN' too)
        assert (l_small is None and small is None) or l_small == Decimal(small)  # exact, not rounded
    assert loaded[0][1] == Decimal("0.000000000001") and loaded[0][2] == "1" + "0" * 100


def test_pg_a_value_beyond_the_override_fails_naming_it(stack, pg_schema, reader: str) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".measures (id int, small numeric)')
        conn.exec_driver_sql(f'INSERT INTO "{schema}".measures VALUES (1, 1E-19)')
    tables = {"measures": {"mode": "full", "columns": {"small": {"type": "decimal(38,18)"}}}}
    stack.configure(pg_tenant(schema, reader), tables)
    task = extract(stack.tenant, "measures")
    with pytest.raises(TypeMappingError, match=r"column 'small' \(NUMERIC -> decimal128\(38, 18\)\).*data loss"):
        task.run()
    assert not task.output().exists()


def test_pg_an_override_on_a_loaded_column_is_a_refused_type_change(stack, pg_schema) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".measures (id int, x numeric)')
        conn.exec_driver_sql(f'INSERT INTO "{schema}".measures VALUES (1, 1.5)')
    stack.configure(pg_tenant(schema), {"measures": {"mode": "full"}})
    assert build(stack.load("measures")).scheduling_succeeded
    stack.configure(pg_tenant(schema), {"measures": {"mode": "full", "columns": {"x": {"type": "string"}}}})
    day2 = DAY + dt.timedelta(days=1)
    assert build(extract(stack.tenant, "measures", day2)).scheduling_succeeded
    with pytest.raises(SchemaDriftError) as refused:
        LoadIceberg(tenant=stack.tenant, table="measures", date=day2).run()
    message = str(refused.value)
    assert "column 'x': type change from decimal(38,10) (table) to varchar (source) is refused" in message
    assert "type override tables.measures.columns.x.type = 'string'" in message
    assert stack.rows("measures", "id, x") == [[1, Decimal("1.5")]]


# ---------------------------------------------------------------------------------------------- MariaDB
def _micros(text: str) -> int:
    """``[-]H:MM:SS[.f]`` -> signed microseconds (what ``duration_us`` must store)."""
    sign = -1 if text.startswith("-") else 1
    hours, minutes, seconds = text.lstrip("-").split(":")
    whole, _, fraction = seconds.partition(".")
    total = (int(hours) * 3600 + int(minutes) * 60 + int(whole)) * 1_000_000 + int((fraction or "0").ljust(6, "0"))
    return sign * total


def test_mariadb_time_beyond_a_day_stored_exactly_by_overrides(stack, mysql_db, reader: str) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_spans"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE `{name}` (id int, spent time, spent6 time(6), amount decimal(65,30))")
        conn.exec_driver_sql(f"""INSERT INTO `{name}` VALUES (1, '838:59:59', '-838:59:59.000000', 1.5),
            (2, '-838:59:59', '12:00:00.5', -0.000000000000000000000000000001),
            (3, '-00:00:01', '-00:00:00.000001', 12345678901234567890123456789012345.123456789012345678901234567890),
            (4, NULL, NULL, NULL)""")
    stack.configure(mysql_tenant(reader), {"spans": {"source_name": name, "mode": "full"}})
    with pytest.raises(TypeMappingError) as refused:
        extract(stack.tenant, "spans").run()
    message = str(refused.value)
    assert f"tenant '{stack.tenant}', table 'spans': column 'spent' (TIME" in message
    assert "add to tables.yaml under tables.spans: columns: {spent: {type: duration_us}} or {type: string}" in message

    overrides = {"spent": {"type": "duration_us"}, "spent6": {"type": "string"}, "amount": {"type": "string"}}
    stack.configure(mysql_tenant(reader), {"spans": {"source_name": name, "mode": "full", "columns": overrides}})
    result = build(stack.load("spans"))
    assert result.scheduling_succeeded, result.summary_text
    manifest = stack.manifest("spans")
    assert_reader(manifest, reader)
    assert manifest.details["reader"] == ("connectorx-mysql" if reader == "native" else "sqlalchemy")
    assert manifest.details["overrides"] == {"spent": "duration_us", "spent6": "string", "amount": "string"}
    types = _types(stack, "spans")
    assert (types["spent"], types["spent6"], types["amount"]) == ("bigint", "varchar", "varchar")
    source = _source(
        engine, f"SELECT id, CAST(spent AS CHAR), CAST(spent6 AS CHAR), CAST(amount AS CHAR) FROM `{name}` ORDER BY id"
    )
    loaded = stack.rows("spans", "id, spent, spent6, amount")
    assert [row[0] for row in loaded] == [row[0] for row in source] == [1, 2, 3, 4]
    for (_, spent, spent6, amount), (_, l_spent, l_spent6, l_amount) in zip(source, loaded, strict=True):
        assert l_spent == (None if spent is None else _micros(spent))
        assert (l_spent6, l_amount) == (spent6, amount)  # the server's own text
    assert loaded[0][1] == 3_020_399_000_000 and loaded[1][1] == -3_020_399_000_000
    assert loaded[0][2] == "-838:59:59.000000"
