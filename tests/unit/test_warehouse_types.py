"""Arrow -> warehouse types, drift rules, raw (Hive) expressions, quoting, SQL templates, marker cache."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import re

import pyarrow as pa
import pytest

from mozart_luigi.errors import SchemaDriftError, TypeMappingError
from mozart_luigi.markers import Marker, MarkerCache, latest_markers, warehouse_key
from mozart_luigi.warehouse import sql
from mozart_luigi.warehouse.common import quote_ident
from mozart_luigi.warehouse.types import (
    ColumnType,
    column_type,
    columns_from_schema,
    parse_duckdb_type,
    parse_trino_type,
    plan_drift,
)

pytestmark = pytest.mark.unit

CASES = [
    (pa.bool_(), "boolean", "BOOLEAN"),
    (pa.int8(), "integer", "INTEGER"),
    (pa.int16(), "integer", "INTEGER"),
    (pa.int32(), "integer", "INTEGER"),
    (pa.int64(), "bigint", "BIGINT"),
    (pa.float32(), "real", "FLOAT"),
    (pa.float64(), "double", "DOUBLE"),
    (pa.decimal128(10, 2), "decimal(10,2)", "DECIMAL(10,2)"),
    (pa.decimal128(38, 0), "decimal(38,0)", "DECIMAL(38,0)"),
    (pa.decimal256(38, 38), "decimal(38,38)", "DECIMAL(38,38)"),
    (pa.string(), "varchar", "VARCHAR"),
    (pa.large_string(), "varchar", "VARCHAR"),
    (pa.binary(), "varbinary", "BLOB"),
    (pa.large_binary(), "varbinary", "BLOB"),
    (pa.binary(16), "varbinary", "BLOB"),
    (pa.date32(), "date", "DATE"),
    (pa.date64(), "date", "DATE"),
    (pa.time64("us"), "time(6)", "TIME"),
    (pa.timestamp("us"), "timestamp(6)", "TIMESTAMP"),
    (pa.timestamp("ms"), "timestamp(6)", "TIMESTAMP"),
    (pa.timestamp("s"), "timestamp(6)", "TIMESTAMP"),
    (pa.timestamp("us", tz="UTC"), "timestamp(6) with time zone", "TIMESTAMP WITH TIME ZONE"),
    (pa.timestamp("us", tz="Europe/Paris"), "timestamp(6) with time zone", "TIMESTAMP WITH TIME ZONE"),
    (pa.timestamp("us", tz="+02:00"), "timestamp(6) with time zone", "TIMESTAMP WITH TIME ZONE"),
    (pa.dictionary(pa.int32(), pa.string()), "varchar", "VARCHAR"),
    (pa.list_(pa.int32()), "array(integer)", "INTEGER[]"),
    (pa.large_list(pa.string()), "array(varchar)", "VARCHAR[]"),
    (pa.list_(pa.list_(pa.decimal128(5, 1))), "array(array(decimal(5,1)))", "DECIMAL(5,1)[][]"),
]


@pytest.mark.parametrize(("arrow_type", "trino", "duckdb"), CASES)
def test_exact_mapping_and_parse_back(arrow_type, trino, duckdb):
    kind = column_type(arrow_type, "c")
    assert (kind.trino(), kind.duckdb()) == (trino, duckdb)
    assert parse_trino_type(trino) == kind
    assert parse_duckdb_type(duckdb) == kind


@pytest.mark.parametrize(
    "arrow_type",
    [
        pa.timestamp("ns"),
        pa.timestamp("ns", tz="UTC"),
        pa.time64("ns"),
        pa.time32("ms"),
        pa.uint8(),
        pa.uint32(),
        pa.uint64(),
        pa.decimal256(39, 2),
        pa.decimal128(5, -1),
        pa.null(),
        pa.float16(),
        pa.struct([("a", pa.int32())]),
        pa.map_(pa.string(), pa.int32()),
        pa.duration("us"),
        pa.list_(pa.timestamp("ns")),
    ],
)
def test_inexact_types_are_refused_naming_the_column(arrow_type):
    with pytest.raises(TypeMappingError, match=r"column 'odd': (Arrow type|decimal)"):
        column_type(arrow_type, "odd")


def test_columns_from_schema_lowercases_and_names_tenant_and_table():
    schema = pa.schema([("OrderID", pa.int64()), ("Note", pa.string())])
    assert columns_from_schema(schema, tenant="acme", table="orders") == [
        ("orderid", ColumnType("bigint")),
        ("note", ColumnType("varchar")),
    ]
    with pytest.raises(TypeMappingError, match="tenant 'acme', table 'orders': column 'at'"):
        columns_from_schema(pa.schema([("at", pa.timestamp("ns"))]), tenant="acme", table="orders")
    with pytest.raises(TypeMappingError, match="duplicated"):
        columns_from_schema(pa.schema([("a", pa.int64()), ("A", pa.int64())]), tenant="acme", table="orders")
    with pytest.raises(TypeMappingError, match="reserved"):
        columns_from_schema(pa.schema([("_mozart_date", pa.date32())]), tenant="acme", table="orders")


def _cols(**kinds: str) -> dict[str, ColumnType]:
    return {name: parse_trino_type(kind) for name, kind in kinds.items()}


def _wanted(**kinds: str) -> list[tuple[str, ColumnType]]:
    return list(_cols(**kinds).items())


def test_drift_create_noop_add_and_widen():
    assert plan_drift({}, _wanted(id="bigint"), tenant="t", table="x").create
    same = plan_drift(_cols(id="bigint", _mozart_date="date"), _wanted(id="bigint"), tenant="t", table="x")
    assert not same.create and same.describe() == []
    plan = plan_drift(
        _cols(id="integer", r="real", d="decimal(10,2)"),
        _wanted(id="bigint", r="double", d="decimal(12,2)", note="varchar"),
        tenant="t",
        table="x",
    )
    assert plan.describe() == [
        "added column note varchar",
        "widened column id integer -> bigint",
        "widened column r real -> double",
        "widened column d decimal(10,2) -> decimal(12,2)",
    ]


@pytest.mark.parametrize(
    ("table_type", "source_type", "message"),
    [
        ("bigint", "integer", "column 'c': narrowing from bigint (table) to integer (source)"),
        ("double", "real", "column 'c': narrowing from double (table) to real (source)"),
        ("decimal(12,2)", "decimal(10,2)", "narrowing from decimal(12,2) (table) to decimal(10,2) (source)"),
        ("decimal(10,2)", "decimal(12,3)", "type change from decimal(10,2) (table) to decimal(12,3) (source)"),
        ("integer", "double", "type change from integer (table) to double (source)"),
        ("timestamp(6)", "timestamp(6) with time zone", "type change from timestamp(6) (table)"),
        ("array(integer)", "array(bigint)", "type change from array(integer) (table) to array(bigint)"),
        ("varchar", "varbinary", "type change from varchar (table) to varbinary (source)"),
    ],
)
def test_refused_drift_names_column_and_both_types(table_type, source_type, message):
    with pytest.raises(SchemaDriftError, match=re.escape(message)):
        plan_drift(_cols(id="bigint", c=table_type), _wanted(id="bigint", c=source_type), tenant="t", table="x")


def test_dropped_column_is_refused():
    with pytest.raises(SchemaDriftError, match=re.escape("column 'gone' (varchar) is in the warehouse table")):
        plan_drift(_cols(id="bigint", gone="varchar"), _wanted(id="bigint"), tenant="t", table="x")


def test_quote_ident_doubles_quotes_and_refuses_empty():
    assert quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        quote_ident("")


@pytest.mark.parametrize("dialect", ["duckdb", "trino"])
def test_sql_templates_load_and_take_only_identifiers(dialect):
    templates = sql.statements(dialect)
    assert {"count_partition", "drop_schema"} <= set(templates)  # (Trino no longer deletes or inserts rows)
    for name, text in templates.items():
        assert text and "--" not in text, name
        assert "'" not in re.sub(r"'[^']*'", "", text), f"unbalanced quote in {name}"
    count = sql.statement(dialect, "count_partition", table='"t"."x"', catalog='"iceberg"')
    assert count.endswith('"_mozart_date" = ?')


def _marker(task_id: str, hour: int) -> Marker:
    return Marker(
        "LoadIceberg",
        task_id,
        "acme",
        dt.date(2026, 11, 28),
        finished_at=dt.datetime(2026, 11, 29, hour, tzinfo=dt.UTC),
    )


def test_latest_markers_keep_one_row_per_task():
    rows = [_marker("b", 1), _marker("a", 1), _marker("a", 3), _marker("a", 2)]
    assert [(m.task_id, m.finished_at.hour) for m in latest_markers(rows)] == [("a", 3), ("b", 1)]


def test_marker_cache_expires_and_ignores_other_processes(monkeypatch):
    cache = MarkerCache(ttl=60)
    day = dt.date(2026, 11, 28)
    cache.put("k", "LoadIceberg", "acme", day, {"a"}, generation=cache.generation())
    assert cache.get("k", "LoadIceberg", "acme", day) == {"a"}
    monkeypatch.setattr("os.getpid", lambda: -1)  # a forked Luigi worker must ask again
    assert cache.get("k", "LoadIceberg", "acme", day) is None
    monkeypatch.undo()
    cache.ttl = 0
    assert cache.get("k", "LoadIceberg", "acme", day) is None


def test_a_marker_written_or_deleted_anywhere_in_the_process_tree_makes_every_cached_answer_stale():
    cache = MarkerCache(ttl=60)
    day = dt.date(2026, 11, 28)
    before = cache.generation()
    cache.put("k", "DbtRun", "acme", day, set(), generation=before)  # "missing", as the scheduler saw it
    cache.put("k", "LoadIceberg", "acme", day, {"a"}, generation=before)
    child = multiprocessing.get_context("fork").Process(target=cache.changed)  # how Luigi runs a task
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert cache.generation() != before
    assert cache.get("k", "DbtRun", "acme", day) is None
    assert cache.get("k", "LoadIceberg", "acme", day) is None
    # an answer fetched under an older generation than the current one is never stored as current
    cache.put("k", "DbtRun", "acme", day, set(), generation=before)
    assert cache.get("k", "DbtRun", "acme", day) is None
    now = cache.generation()
    cache.put("k", "DbtRun", "acme", day, {"d"}, generation=now)
    assert cache.get("k", "DbtRun", "acme", day) == {"d"}
    cache.changed()  # this process's own write
    assert cache.get("k", "DbtRun", "acme", day) is None
    seen = set()
    for _ in range(200):  # random tokens: a change never brings back the generation it replaced
        previous = cache.generation()
        cache.changed()
        assert cache.generation() not in (previous, 0)
        seen.add(cache.generation())
    assert len(seen) == 200


def test_warehouse_key_names_the_profile_target():
    from mozart_luigi.settings import Settings

    assert warehouse_key(Settings(profile="stack", trino_host="h", trino_port=1)) == "trino://h:1/iceberg"
    assert warehouse_key(Settings(duckdb_path="/x/w.duckdb")).startswith("duckdb:///x/w.duckdb")
