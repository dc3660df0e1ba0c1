"""Per-column type overrides (issue 14, item 1) without a server: parsing and validation of tables.yaml, the
mapping per dialect (exact, lossy ones refused), the refusal's advice, the manifest, DuckDB and drift.

The stack twin (PostgreSQL and MariaDB, both readers, through Iceberg and Trino) is
``tests/integration/test_type_overrides_trino.py``.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import luigi
import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml
from local_pipeline import configure_local, write_tables
from sqlalchemy.dialects import mysql, oracle
from sqlalchemy.dialects import postgresql as pg

from mozart_luigi.cli import main
from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig, get_config, load_config, reset_config_cache
from mozart_luigi.connectors import SourceColumn, connector_for
from mozart_luigi.connectors._native_common import Where
from mozart_luigi.connectors._native_mysql import converter_for as mysql_converter
from mozart_luigi.connectors._native_pg import converter_for as pg_converter
from mozart_luigi.errors import ConfigError, SchemaDriftError, SourceError, TypeMappingError
from mozart_luigi.lake import Lake
from mozart_luigi.overrides import TypeOverride, decimal_loss, decimal_suggestion, parse_override
from mozart_luigi.targets import clear_marker_cache
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.types import ColumnStats
from mozart_luigi.warehouse.duckdb import DuckDBWarehouse
from mozart_luigi.warehouse.types import ColumnType, columns_from_schema, plan_drift

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 25)


# --------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("decimal(38,18)", TypeOverride("decimal", 38, 18)),
        (" DECIMAL( 10 , 0 ) ", TypeOverride("decimal", 10, 0)),
        ("string", TypeOverride("string")),
        ("String", TypeOverride("string")),
        ("duration_us", TypeOverride("duration_us")),
    ],
)
def test_parse_override(text: str, parsed: TypeOverride) -> None:
    assert parse_override(text) == parsed
    assert parse_override(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("decimal(39,2)", "precision must be 1..38"),
        ("decimal(0,0)", "precision must be 1..38"),
        ("decimal(5,6)", "scale must be 0..precision"),
        ("decimal(10)", "unknown type override"),
        ("float", "unknown type override"),
        ("varchar", "unknown type override"),
        ("duration", "Iceberg (and so Trino's Iceberg tables) has no duration or interval type; use 'duration_us'"),
        (12, "must be a string"),
    ],
)
def test_parse_override_refuses(text: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_override(text)


@pytest.mark.parametrize(
    ("source", "target", "lossy"),
    [
        ((12, 4), "decimal(10,2)", "fractional digits would be rounded"),
        ((12, 4), "decimal(12,2)", "4 fractional digits would be rounded to 2"),
        ((12, 4), "decimal(13,6)", "8 integer digits do not fit in 7"),
        ((12, 4), "decimal(14,6)", None),
        ((12, 4), "decimal(12,4)", None),
        ((65, 30), "decimal(38,18)", "35 integer digits do not fit in 20"),
        ((None, 0), "decimal(38,18)", None),  # unbounded: each value is checked instead
        ((None, 0), "decimal(1,1)", None),
    ],
)
def test_decimal_loss(source: tuple[int | None, int], target: str, lossy: str | None) -> None:
    found = decimal_loss(source, parse_override(target))
    assert (found is None) if lossy is None else (lossy in (found or ""))


def test_decimal_suggestion_holds_every_value() -> None:
    values = [Decimal("1E-12"), Decimal("-98765432109876543210.123456789012345678"), None, Decimal("0.500")]
    assert decimal_suggestion(values, 10) == "decimal(38,18)"  # 20 integer + 18 fractional digits
    assert decimal_suggestion(["1E-12", b"1.5"], 10) == "decimal(38,12)"
    assert decimal_suggestion([Decimal("1e30"), Decimal("1.5")], 10) is None
    assert decimal_suggestion([Decimal("1e30"), Decimal("1.5")]) == "decimal(38,1)"
    assert decimal_suggestion([Decimal("1e40")]) is None and decimal_suggestion([Decimal("NaN")]) is None


# -------------------------------------------------------------------------------------- tables.yaml
def _config(tmp_path: Path, tables: dict[str, Any]) -> Any:
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    tenants = {"tenants": {"shop": {"source": {"kind": "sqlite", "path": str(tmp_path / "shop.sqlite")}}}}
    (folder / "tenants.yaml").write_text(yaml.safe_dump(tenants), encoding="utf-8")
    (folder / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}), encoding="utf-8")
    return load_config(folder, env={"MOZART_PROFILE": "local", "MOZART_DATA_DIR": str(tmp_path / "data")})


def test_config_parses_column_overrides(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        {
            "measures": {
                "columns": {
                    "amount": {"type": "decimal(38,18)"},
                    "Spent Time": {"type": "duration_us"},
                    "note": {"type": "string"},
                }
            }
        },
    )
    table = config.tables["measures"]
    assert dict(table.columns) == {
        "amount": TypeOverride("decimal", 38, 18),
        "Spent Time": TypeOverride("duration_us"),
        "note": TypeOverride("string"),
    }
    assert table.override("amount") == TypeOverride("decimal", 38, 18) and table.override("id") is None
    assert _config(tmp_path, {"measures": {}}).tables["measures"].columns == ()


def test_config_refuses_bad_overrides_naming_the_setting(tmp_path: Path) -> None:
    tables = {
        "a": {"columns": {"x": {"type": "money"}, "y": {"type": "duration"}, "z": {"type": "decimal(40,2)"}}},
        "b": {"mode": "incremental", "cursor": "at", "columns": {"at": {"type": "string"}}},
        "c": {"exclude": ["x"], "columns": {"x": {"type": "string"}, "w": {"kind": "string"}}},
        "d": {"include": ["id"], "columns": {"x": {"type": "string"}, "bad;name": {"type": "string"}}},
        "e": {"columns": ["x"]},
        "f": {"columns": {"x": "string"}},
    }
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, tables)
    text = str(info.value)
    for expected in (
        "tables.a.columns.x.type: unknown type override 'money' (supported: decimal(P,S), string, duration_us)",
        "tables.a.columns.y.type: 'duration' is not supported: Iceberg",
        "tables.a.columns.z.type: 'decimal(40,2)': precision must be 1..38",
        "tables.b.columns.at.type: column 'at' is the cursor column",
        "tables.c.columns.x.type: column 'x' is excluded",
        "tables.c.columns.w.kind: unknown key",
        "tables.d.columns.x.type: column 'x' is not extracted (not in include:)",
        "tables.d.columns.bad;name: invalid column name",
        "tables.e.columns: must be a mapping of column -> {type: ...}",
        "tables.f.columns.x: must be a mapping with a type",
    ):
        assert expected in text, expected


def test_validate_refuses_an_unknown_override(tmp_path: Path, monkeypatch, capsys) -> None:
    _config(tmp_path, {"t": {"columns": {"x": {"type": "decimal(38,18)"}}}})
    tables = tmp_path / "config" / "tables.yaml"
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(tables.parent))
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    reset_config_cache()
    assert main(["validate"]) == 0
    tables.write_text(yaml.safe_dump({"tables": {"t": {"columns": {"x": {"type": "interval"}}}}}), encoding="utf-8")
    reset_config_cache()
    assert main(["validate"]) == 2
    out = capsys.readouterr()
    assert "tables.t.columns.x.type: 'interval' is not supported" in out.out + out.err


# ------------------------------------------------------------------------------------------- mapping
def _connector(kind: str) -> Any:
    source = {
        "postgresql": SourceConfig("postgresql", host="h", user="u", database="d"),
        "mysql": SourceConfig("mysql", host="h", user="u", database="d"),
        "oracle": SourceConfig("oracle", host="h", user="u", service_name="s"),
        "sqlite": SourceConfig("sqlite", path="/nonexistent.sqlite"),
    }[kind]
    return connector_for(TenantConfig("acme", source, ("t",)))


def _table(**overrides: str) -> TableConfig:
    return TableConfig("t", "t", columns=tuple((k, parse_override(v)) for k, v in overrides.items()))


def _convert(plan: Any, values: list[Any]) -> list[Any]:
    return plan.convert(values, ColumnStats()).to_pylist()


def _sql(plan: Any, dialect: Any) -> str | None:
    return None if plan.expression is None else str(plan.expression(sa.column("c")).compile(dialect=dialect))


def test_postgres_decimal_override_checks_every_value() -> None:
    plan = _connector("postgresql").plan(SourceColumn("c", pg.NUMERIC()), _table(c="decimal(38,18)"))
    assert plan.arrow_type == pa.decimal128(38, 18) and plan.override == "decimal(38,18)"
    assert plan.field.metadata[b"mozart.override"] == b"decimal(38,18)"
    assert plan.field.metadata[b"mozart.source_type"] == b"NUMERIC"
    assert _convert(plan, [Decimal("1E-12"), None]) == [Decimal("1E-12"), None]
    with pytest.raises(pa.ArrowInvalid, match="data loss"):  # never rounded
        plan.convert([Decimal("1E-19")], ColumnStats())
    # natively: PostgreSQL's numeric text, cast with Arrow's safe cast
    convert = pg_converter(pa.opaque(pa.string(), "numeric", "PostgreSQL"), pa.decimal128(38, 18))
    assert convert is not None


def test_postgres_bounded_numeric_override_must_not_lose_values() -> None:
    connector = _connector("postgresql")
    wider = connector.plan(SourceColumn("c", pg.NUMERIC(12, 4)), _table(c="decimal(20,6)"))
    assert wider.arrow_type == pa.decimal128(20, 6)
    with pytest.raises(TypeMappingError) as info:
        connector.plan(SourceColumn("c", pg.NUMERIC(12, 4)), _table(c="decimal(10,2)"))
    message = str(info.value)
    assert message.startswith(
        "tenant 'acme', table 't': tables.t.columns.c.type: type override 'decimal(10,2)' "
        "cannot apply to column 'c' of type NUMERIC(12, 4): decimal(10,2) is lossy"
    )
    with pytest.raises(TypeMappingError, match="applies to decimal columns only"):
        connector.plan(SourceColumn("c", pg.INTEGER()), _table(c="decimal(20,0)"))
    with pytest.raises(TypeMappingError, match="'duration_us' applies to MySQL/MariaDB TIME columns only"):
        connector.plan(SourceColumn("c", pg.INTERVAL()), _table(c="duration_us"))


@pytest.mark.parametrize(
    "type_", [pg.NUMERIC(), pg.NUMERIC(50, 10), pg.INTEGER(), pg.ARRAY(pg.INTEGER()), sa.types.NullType()]
)
def test_postgres_string_override_is_the_servers_text(type_: Any) -> None:
    plan = _connector("postgresql").plan(SourceColumn("c", type_), _table(c="string"))
    assert plan.arrow_type == pa.string() and plan.override == "string"
    assert _sql(plan, pg.dialect()) == "CAST(c AS TEXT)"
    assert _convert(plan, ["0.000000000001", None]) == ["0.000000000001", None]


def test_mysql_time_overrides() -> None:
    connector = _connector("mysql")
    micros = connector.plan(SourceColumn("c", mysql.TIME(fsp=6)), _table(c="duration_us"))
    assert micros.arrow_type == pa.int64() and micros.override == "duration_us"
    spans = [
        dt.timedelta(hours=838, minutes=59, seconds=59),
        -dt.timedelta(hours=838, minutes=59, seconds=59),
        -dt.timedelta(microseconds=1),
        None,
    ]
    assert _convert(micros, spans) == [3_020_399_000_000, -3_020_399_000_000, -1, None]
    text = connector.plan(SourceColumn("c", mysql.TIME()), _table(c="string"))
    assert text.arrow_type == pa.string() and _sql(text, mysql.dialect()) == "CAST(c AS CHAR)"
    assert _convert(text, [b"-838:59:59", "838:59:59"]) == ["-838:59:59", "838:59:59"]
    # natively: connectorx reads TIME as text; the override parses it into signed microseconds
    convert = mysql_converter("time", pa.string(), pa.int64())
    assert convert is not None
    assert convert(pa.array(["838:59:59", "-838:59:59", "-00:00:01.5", None])).to_pylist() == [
        3_020_399_000_000,
        -3_020_399_000_000,
        -1_500_000,
        None,
    ]


def test_mysql_decimal_and_refused_overrides() -> None:
    connector = _connector("mysql")
    text = connector.plan(SourceColumn("c", mysql.DECIMAL(65, 30)), _table(c="string"))
    assert _sql(text, mysql.dialect()) == "CAST(c AS CHAR)"
    assert connector.plan(
        SourceColumn("c", mysql.DECIMAL(10, 2)), _table(c="decimal(12,2)")
    ).arrow_type == pa.decimal128(12, 2)
    with pytest.raises(TypeMappingError, match="35 integer digits do not fit in 20"):
        connector.plan(SourceColumn("c", mysql.DECIMAL(65, 30)), _table(c="decimal(38,18)"))
    with pytest.raises(TypeMappingError, match="'string' applies to DECIMAL and TIME columns"):
        connector.plan(SourceColumn("c", mysql.DATETIME()), _table(c="string"))
    with pytest.raises(TypeMappingError, match="'duration_us' applies to TIME columns only"):
        connector.plan(SourceColumn("c", mysql.DECIMAL(10, 2)), _table(c="duration_us"))


def test_oracle_and_sqlite_overrides() -> None:
    ora = _connector("oracle")
    number = ora.plan(SourceColumn("c", oracle.NUMBER(10, 0)), _table(c="decimal(12,2)"))
    assert number.arrow_type == pa.decimal128(12, 2) and _convert(number, [7, None]) == [Decimal("7.00"), None]
    unbounded = ora.plan(SourceColumn("c", oracle.NUMBER()), _table(c="string"))
    assert _convert(unbounded, [Decimal("1E-12"), 5]) == ["0.000000000001", "5"]
    with pytest.raises(TypeMappingError, match="'string' applies to decimal columns on oracle"):
        ora.plan(SourceColumn("c", oracle.DATE()), _table(c="string"))
    lite = _connector("sqlite")
    checked = lite.plan(SourceColumn("c", sa.Numeric()), _table(c="decimal(38,18)"))
    assert _convert(checked, [1e-12, "0.5", 3]) == [Decimal("1E-12"), Decimal("0.5"), Decimal(3)]
    text = lite.plan(SourceColumn("c", sa.Numeric()), _table(c="string"))
    assert _convert(text, [1e-12, "1.50", 3]) == ["0.000000000001", "1.50", "3"]


def test_native_refusal_names_the_override_that_would_store_it() -> None:
    where = Where(sa.make_url("postgresql://u@h/d"), "acme", "measures")
    field = pa.field("small", pa.decimal128(38, 10), metadata={"mozart.source_type": "NUMERIC"})
    values = pa.array(["1.5", "0.000000000001"]).cast(pa.opaque(pa.string(), "numeric", "PostgreSQL"))
    message = str(where.inexact(field, ValueError("data loss"), values))
    assert (
        "a value cannot be stored exactly: data loss; to store it exactly, add to tables.yaml under "
        'tables.measures: columns: {small: {type: "decimal(38,12)"}} or {type: string}'
    ) in message
    spent = pa.field("Spent Time", pa.time64("us"), metadata={"mozart.source_type": "TIME"})
    mysql_where = Where(sa.make_url("mysql://u@h/d"), "acme", "spans")
    assert 'columns: {"Spent Time": {type: duration_us}} or {type: string}' in str(
        mysql_where.inexact(spent, ValueError("x"), pa.array(["838:59:59"]))
    )
    assert "to store it exactly" not in str(where.inexact(spent, ValueError("x"), pa.array(["25:00:00"])))


# -------------------------------------------------------------------------------------- warehouse drift
def _schema(override: str | None) -> pa.Schema:
    meta = {"mozart.source_type": "NUMERIC", **({"mozart.override": override} if override else {})}
    return pa.schema(
        [pa.field("Amount", pa.string() if override == "string" else pa.decimal128(38, 10), metadata=meta)]
    )


def test_columns_from_schema_carries_the_override_and_drift_names_it() -> None:
    ((name, kind),) = columns_from_schema(_schema("string"), tenant="acme", table="measures")
    assert (name, kind) == ("amount", ColumnType("varchar"))
    assert kind.override == "tables.measures.columns.Amount.type = 'string'"
    with pytest.raises(SchemaDriftError) as info:
        plan_drift({"amount": ColumnType("decimal", 38, 10)}, [(name, kind)], tenant="acme", table="measures")
    message = str(info.value)
    assert (
        "column 'amount': type change from decimal(38,10) (table) to varchar (source) is refused: the type "
        "override tables.measures.columns.Amount.type = 'string' changes the type" in message
    )
    assert "drop it in the warehouse and extract its days again" in message
    widened = dict(
        columns_from_schema(
            pa.schema([pa.field("amount", pa.decimal128(38, 2), metadata={"mozart.override": "decimal(38,2)"})]),
            tenant="acme",
            table="measures",
        )
    )
    plan = plan_drift({"amount": ColumnType("decimal", 20, 2)}, list(widened.items()), tenant="acme", table="measures")
    assert plan.widens == (("amount", ColumnType("decimal", 20, 2), ColumnType("decimal", 38, 2)),)


# ----------------------------------------------------------------- local pipeline: SQLite -> lake -> DuckDB
def _build(*tasks: luigi.Task) -> bool:
    luigi.task_register.Register.clear_instance_cache()
    clear_marker_cache()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=luigi.parameter.UnconsumedParameterWarning)
        return luigi.build(list(tasks), local_scheduler=True)


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    source = tmp_path / "shop.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE measures (id INTEGER, x NUMERIC, fixed NUMERIC(12,4))")
        conn.executemany(
            "INSERT INTO measures VALUES (?, ?, ?)",
            [(1, "0.000000000001", "1.5"), (2, "123456789.5", None), (3, None, "2")],
        )
    folder = configure_local(tmp_path, monkeypatch, tenant="shop", source=source)

    def configure(table: dict[str, Any]) -> None:
        write_tables(folder, {"measures": table})

    yield configure
    clear_marker_cache()


def test_local_refusal_then_override_loads_exactly_into_duckdb(local: Any) -> None:
    local({"mode": "full"})
    with pytest.raises(TypeMappingError) as info:
        ExtractTable(tenant="shop", table="measures", date=DAY).run()
    assert (
        "tenant 'shop', table 'measures': column 'x' (NUMERIC -> decimal128(38, 10)): a value cannot be stored exactly"
    ) in str(info.value)
    assert 'add to tables.yaml under tables.measures: columns: {x: {type: "decimal(38,12)"}} or {type: string}' in str(
        info.value
    )

    local({"mode": "full", "columns": {"x": {"type": "decimal(38,12)"}, "fixed": {"type": "string"}}})
    assert _build(LoadIceberg(tenant="shop", table="measures", date=DAY))
    manifest = Lake.from_settings(get_config().settings).read_manifest("shop", "measures", DAY)
    assert manifest.details["overrides"] == {"x": "decimal(38,12)", "fixed": "string"}
    assert "type override decimal(38,12) (each value checked, never rounded)" in manifest.details["policies"]["x"]
    assert manifest.schema.field("x").metadata[b"mozart.override"] == b"decimal(38,12)"
    warehouse = DuckDBWarehouse.from_settings(get_config().settings)
    types = dict(
        warehouse.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'shop' AND table_name = 'measures'"
        )
    )
    assert (types["x"], types["fixed"]) == ("DECIMAL(38,12)", "VARCHAR")
    assert warehouse.query("SELECT id, x, fixed FROM shop.measures ORDER BY id") == [
        (1, Decimal("0.000000000001"), "1.5"),
        (2, Decimal("123456789.5"), None),
        (3, None, "2"),
    ]


def test_extract_refuses_an_override_of_a_missing_column(local: Any) -> None:
    local({"mode": "full", "columns": {"nope": {"type": "string"}}})
    expected = (
        r"tenant 'shop', table 'measures': tables.measures.columns.nope.type: column 'nope' does not exist "
        r"in measures \(columns: \['id', 'x', 'fixed'\]\)"
    )
    with pytest.raises(SourceError, match=expected):
        ExtractTable(tenant="shop", table="measures", date=DAY).run()


def test_validate_connect_checks_override_columns_and_loss(local: Any, capsys) -> None:
    local(
        {
            "mode": "full",
            "columns": {
                "fixed": {"type": "decimal(10,2)"},
                "nope": {"type": "string"},
                "x": {"type": "decimal(38,18)"},
            },
        }
    )
    assert main(["validate"]) == 0  # without the source, the types are unknown
    assert main(["validate", "--connect"]) == 1
    text = capsys.readouterr().out
    assert "tables.measures.columns.nope.type: column 'nope' not found in measures" in text
    assert (
        "tables.measures.columns.fixed.type: type override 'decimal(10,2)' cannot apply to column 'fixed' of "
        "type NUMERIC(12, 4): decimal(10,2) is lossy" in text
    )
    assert "columns.x.type" not in text  # unbounded: allowed, each value is checked at extract time
