"""Type mapping per dialect (catalog type -> Arrow) and the column-wise converters, without a server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql as pg

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors import SourceColumn, connector_for
from mozart_luigi.connectors.mysql import mysql_plan
from mozart_luigi.connectors.postgres import postgres_plan
from mozart_luigi.connectors.sqlite import sqlite_plan
from mozart_luigi.errors import TypeMappingError
from mozart_luigi.types import ColumnStats, decimal_plan

pytestmark = pytest.mark.unit
UTC = dt.UTC


def convert(plan: Any, values: list[Any]) -> tuple[list[Any], ColumnStats]:
    stats = ColumnStats()
    return plan.convert(values, stats).to_pylist(), stats


def compiled_expression(plan: Any) -> str | None:
    if plan.expression is None:
        return None
    return str(plan.select_expression(sa.column("c")).compile(dialect=pg.dialect()))


@pytest.mark.parametrize(
    ("type_", "arrow_type", "expression"),
    [
        (pg.NUMERIC(), pa.decimal128(38, 10), None),
        (pg.NUMERIC(12, 3), pa.decimal128(12, 3), None),
        (pg.NUMERIC(50, 10), pa.string(), None),
        (pg.TIMESTAMP(timezone=True), pa.timestamp("us", tz="UTC"), None),
        (pg.TIMESTAMP(), pa.timestamp("us"), None),
        (pg.TIME(), pa.time64("us"), None),
        (pg.TIME(timezone=True), pa.string(), "CAST(c AS TEXT)"),
        (pg.INTERVAL(), pa.string(), "CAST(c AS TEXT)"),
        (pg.JSON(), pa.string(), "CAST(c AS TEXT)"),
        (pg.JSONB(), pa.string(), "CAST(c AS TEXT)"),
        (pg.UUID(), pa.string(), "CAST(c AS TEXT)"),
        (pg.BYTEA(), pa.binary(), None),
        (pg.ARRAY(pg.INTEGER()), pa.list_(pa.int32()), None),
        (pg.ARRAY(pg.NUMERIC(10, 2)), pa.list_(pa.decimal128(10, 2)), None),
        (pg.ARRAY(pg.UUID()), pa.list_(pa.string()), "CAST(c AS TEXT[])"),
        (pg.ARRAY(pg.NUMERIC(60, 2)), pa.list_(pa.string()), "CAST(c AS TEXT[])"),
        (pg.ENUM("a", "b", name="mood"), pa.string(), "CAST(c AS TEXT)"),
        (pg.INET(), pa.string(), "CAST(c AS TEXT)"),
        (pg.BOOLEAN(), pa.bool_(), None),
        (pg.REAL(), pa.float32(), None),
        (pg.DOUBLE_PRECISION(), pa.float64(), None),
        (pg.SMALLINT(), pa.int16(), None),
        (pg.BIGINT(), pa.int64(), None),
        (pg.MONEY(), pa.decimal128(19, 2), "CAST(c AS NUMERIC)"),
        (pg.TEXT(), pa.string(), None),
        (pg.DATE(), pa.date32(), None),
    ],
)
def test_postgres_mapping(type_: Any, arrow_type: pa.DataType, expression: str | None) -> None:
    plan = postgres_plan(SourceColumn("c", type_))
    assert plan.arrow_type == arrow_type
    got = compiled_expression(plan)
    assert (got.split(" AS c")[0] if got else None) == expression


def test_postgres_domain_takes_the_base_precision_from_the_catalog() -> None:
    domain = pg.DOMAIN("positive", pg.NUMERIC())
    assert postgres_plan(SourceColumn("c", domain, detail="numeric(8,2)")).arrow_type == pa.decimal128(8, 2)
    assert postgres_plan(SourceColumn("c", pg.DOMAIN("d", pg.TEXT()), detail="text")).arrow_type == pa.string()


def test_unmappable_type_is_a_type_mapping_error_naming_everything() -> None:
    source = SourceConfig(kind="postgresql", host="db", database="acme", user="r")
    conn = connector_for(TenantConfig(id="acme", source=source, tables=("shapes",)))
    table = TableConfig(name="shapes", source_name="shapes")
    with pytest.raises(TypeMappingError) as info:
        conn.plan(SourceColumn("p", sa.types.NullType()), table)
    assert str(info.value).startswith("tenant 'acme', table 'shapes': column 'p' of type")
    assert "exclude the column" in str(info.value)


@pytest.mark.parametrize(
    ("type_", "arrow_type"),
    [
        (mysql.DECIMAL(65, 30), pa.string()),
        (mysql.DECIMAL(38, 10), pa.decimal128(38, 10)),
        (mysql.BIGINT(unsigned=True), pa.decimal128(20, 0)),
        (mysql.BIGINT(), pa.int64()),
        (mysql.INTEGER(unsigned=True), pa.int64()),
        (mysql.INTEGER(), pa.int32()),
        (mysql.MEDIUMINT(unsigned=True), pa.int32()),
        (mysql.SMALLINT(unsigned=True), pa.int32()),
        (mysql.TINYINT(display_width=1), pa.int8()),
        (mysql.TINYINT(unsigned=True), pa.int16()),
        (sa.Boolean(), pa.int8()),
        (mysql.DATE(), pa.date32()),
        (mysql.DATETIME(fsp=6), pa.timestamp("us")),
        (mysql.TIMESTAMP(fsp=6), pa.timestamp("us", tz="UTC")),
        (mysql.TIME(fsp=6), pa.time64("us")),
        (mysql.JSON(), pa.string()),
        (mysql.LONGTEXT(), pa.string()),
        (mysql.ENUM("x", "y"), pa.string()),
        (mysql.SET("a", "b"), pa.string()),
        (mysql.BIT(1), pa.bool_()),
        (mysql.BIT(10), pa.int64()),
        (mysql.BIT(64), pa.decimal128(20, 0)),
        (mysql.YEAR(), pa.int16()),
        (mysql.BLOB(), pa.binary()),
        (mysql.VARBINARY(8), pa.binary()),
        (mysql.FLOAT(), pa.float32()),
        (mysql.DOUBLE(), pa.float64()),
    ],
)
def test_mysql_mapping(type_: Any, arrow_type: pa.DataType) -> None:
    assert mysql_plan(SourceColumn("c", type_)).arrow_type == arrow_type


def test_mysql_converters() -> None:
    wide, _ = convert(mysql_plan(SourceColumn("c", mysql.DECIMAL(65, 30))), [Decimal("1.5" + "0" * 29), None])
    assert wide == ["1.500000000000000000000000000000", None]
    unsigned, _ = convert(mysql_plan(SourceColumn("c", mysql.BIGINT(unsigned=True))), [18446744073709551615])
    assert unsigned == [Decimal(18446744073709551615)]
    dates, stats = convert(
        mysql_plan(SourceColumn("c", mysql.DATE())), [dt.date(2026, 1, 2), "0000-00-00", None, "2026-00-10"]
    )
    assert dates == [dt.date(2026, 1, 2), None, None, None] and stats.zero_dates == 2
    stamps, stats = convert(mysql_plan(SourceColumn("c", mysql.TIMESTAMP())), [dt.datetime(2026, 1, 2, 3)])
    assert stamps == [dt.datetime(2026, 1, 2, 3, tzinfo=UTC)] and stats.zero_dates == 0
    bits, _ = convert(mysql_plan(SourceColumn("c", mysql.BIT(10))), [b"\x02\xaa", None])
    assert bits == [682, None]
    flags, _ = convert(mysql_plan(SourceColumn("c", mysql.BIT(1))), [b"\x01", b"\x00"])
    assert flags == [True, False]
    times, _ = convert(mysql_plan(SourceColumn("c", mysql.TIME())), [dt.timedelta(hours=23, microseconds=5)])
    assert times == [dt.time(23, 0, 0, 5)]
    with pytest.raises(ValueError, match="not a time of day"):
        convert(mysql_plan(SourceColumn("c", mysql.TIME())), [dt.timedelta(hours=-1)])


def test_decimals_are_never_rounded() -> None:
    plan = decimal_plan("c", "NUMERIC(10,2)", 10, 2)
    assert convert(plan, [Decimal("1.20")])[0] == [Decimal("1.20")]
    for lossy in (Decimal("1.234"), Decimal("123456789.1")):
        with pytest.raises(pa.ArrowInvalid):
            convert(plan, [lossy])
    assert decimal_plan("c", "NUMBER(5,-2)", 5, -2).arrow_type == pa.decimal128(7, 0)
    assert decimal_plan("c", "NUMBER(3,5)", 3, 5).arrow_type == pa.decimal128(5, 5)
    assert decimal_plan("c", "NUMERIC(39,0)", 39, 0).arrow_type == pa.string()


@pytest.mark.parametrize(
    ("declared", "values", "expected"),
    [
        (sa.INTEGER(), [1, 2.0, "3", None], [1, 2, 3, None]),
        (sa.NUMERIC(10, 2), [12.34, "7.10", 5, None], [Decimal("12.34"), Decimal("7.10"), Decimal(5), None]),
        (sa.REAL(), [1, 2.5], [1.0, 2.5]),
        (sa.BOOLEAN(), [1, 0, "true", "F"], [True, False, True, False]),
        (sa.DATE(), ["2026-11-25", "2026-11-25 00:00:00"], [dt.date(2026, 11, 25)] * 2),
        (
            sa.DATETIME(),
            ["2026-11-25 10:00:00.5", "2026-11-25T10:00:00Z", "2026-11-25T12:00:00+02:00", 0],
            [
                dt.datetime(2026, 11, 25, 10, 0, 0, 500000),
                dt.datetime(2026, 11, 25, 10),
                dt.datetime(2026, 11, 25, 10),
                dt.datetime(1970, 1, 1),
            ],
        ),
        (sa.TIME(), ["10:11:12.5"], [dt.time(10, 11, 12, 500000)]),
        (sa.TEXT(), ["a", 1, 2.5, b"b"], ["a", "1", "2.5", "b"]),
        (sa.BLOB(), [b"\x00", "x"], [b"\x00", b"x"]),
    ],
)
def test_sqlite_values_are_read_tolerantly_but_exactly(declared: Any, values: list[Any], expected: list[Any]) -> None:
    assert convert(sqlite_plan(SourceColumn("c", declared)), values)[0] == expected


@pytest.mark.parametrize(
    ("declared", "value"),
    [
        (sa.INTEGER(), 2.5),
        (sa.NUMERIC(10, 2), 1.005),
        (sa.DATE(), "2026-11-25 10:00"),
        (sa.BOOLEAN(), "maybe"),
    ],
)
def test_sqlite_lossy_values_are_refused(declared: Any, value: Any) -> None:
    with pytest.raises((ValueError, pa.ArrowInvalid)):
        convert(sqlite_plan(SourceColumn("c", declared)), [value])


def test_schema_fields_are_nullable_and_carry_the_source_type() -> None:
    field = postgres_plan(SourceColumn("c", pg.NUMERIC(12, 3), nullable=False)).field
    assert field.nullable
    assert field.metadata == {b"mozart.source_type": b"NUMERIC(12, 3)", b"mozart.source_not_null": b"true"}
