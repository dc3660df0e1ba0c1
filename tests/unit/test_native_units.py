"""Native readers without a server: compiled SQL (values never in the text), exact converters, batching."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from mozart_luigi.config import SourceConfig, TenantConfig, load_config
from mozart_luigi.connectors import _native_mysql, _native_pg
from mozart_luigi.connectors._native_common import (
    NativeUnsupportedError,
    Where,
    convert_batch,
    rebatch,
    safe_converter,
)
from mozart_luigi.connectors.native import NativeBatchReader, driver_batch_rows, native_batches
from mozart_luigi.connectors.postgres import PostgresConnector
from mozart_luigi.errors import ConfigError, TypeMappingError
from mozart_luigi.secrets import Secret

pytestmark = pytest.mark.unit

WHERE = Where(sa.make_url("postgresql://u:hunter22@db:5432/app"), "acme", "orders")
PG_NUMERIC = pa.opaque(pa.string(), "numeric", "PostgreSQL")


def _table(*columns: sa.Column) -> sa.Table:
    return sa.Table("Order Items", sa.MetaData(), *columns)


# --------------------------------------------------------------------------------------- PostgreSQL SQL
def test_pg_values_are_bound_through_settings_never_written_into_the_sql() -> None:
    t = _table(sa.Column("id", sa.BigInteger), sa.Column("updated_at", sa.DateTime(timezone=True)))
    start = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    query = sa.select(t.c.id).where(t.c.updated_at >= start, t.c.updated_at < start + dt.timedelta(days=1),
                                    t.c.id != "1; DROP TABLE x")  # fmt: skip
    sql, count_sql, settings = _native_pg.compile_query(query)
    assert settings == [
        ("mozart.p0", "2026-11-25T00:00:00+00:00"),
        ("mozart.p1", "2026-11-26T00:00:00+00:00"),
        ("mozart.p2", "1; DROP TABLE x"),
    ]
    for text in (sql, count_sql):
        assert "2026" not in text and "DROP" not in text
        assert ">= (SELECT CAST(current_setting('mozart.p0') AS TIMESTAMP WITH TIME ZONE) AS" in text
    assert '"Order Items"' in sql
    assert count_sql.startswith("SELECT count(*) AS count_1 \nFROM (SELECT")


def test_pg_list_values_are_not_native() -> None:
    t = _table(sa.Column("id", sa.Integer))
    with pytest.raises(NativeUnsupportedError, match="list or NULL"):
        _native_pg.compile_query(sa.select(t.c.id).where(t.c.id.in_([1, 2])))


def test_pg_numeric_text_casts_exactly_or_fails() -> None:
    convert = _native_pg.converter_for(PG_NUMERIC, pa.decimal128(12, 2))
    array = pa.ExtensionArray.from_storage(PG_NUMERIC, pa.array(["1.50", None, "-0.01", "9999999999.99"]))
    assert convert(array).to_pylist() == [Decimal("1.50"), None, Decimal("-0.01"), Decimal("9999999999.99")]
    for bad in ("1.505", "NaN", "99999999999.00"):
        with pytest.raises(pa.ArrowInvalid):
            convert(pa.ExtensionArray.from_storage(PG_NUMERIC, pa.array([bad])))


def test_pg_uuid_becomes_canonical_text_with_nulls_and_slices() -> None:
    values = [uuid.uuid4() for _ in range(5)]
    storage = pa.array([v.bytes if i != 2 else None for i, v in enumerate(values)], pa.binary(16))
    array = pa.ExtensionArray.from_storage(pa.uuid(), storage).slice(1, 3)
    convert = _native_pg.converter_for(pa.uuid(), pa.string())
    assert convert(array).to_pylist() == [str(values[1]), None, str(values[3])]


def test_pg_infinity_is_refused_not_wrapped_around() -> None:
    convert = _native_pg.converter_for(pa.timestamp("us"), pa.timestamp("us"))
    wrapped = pa.array([0, -9222425352054775809], pa.int64()).view(pa.timestamp("us"))
    with pytest.raises(pa.ArrowInvalid, match="infinity"):
        convert(wrapped)
    assert convert(pa.array([None], pa.timestamp("us"))).null_count == 1


def test_pg_arrays_convert_item_by_item() -> None:
    items = pa.ExtensionArray.from_storage(PG_NUMERIC, pa.array(["1.5", None, "2"]))
    lists = pa.ListArray.from_arrays(pa.array([0, 2, 2, 3]), items, mask=pa.array([False, True, False]))
    convert = _native_pg.converter_for(lists.type, pa.list_(pa.decimal128(4, 1)))
    assert convert(lists).to_pylist() == [[Decimal("1.5"), None], None, [Decimal("2.0")]]


@pytest.mark.parametrize(("src", "dst"), [(pa.opaque(pa.binary(), "inet", "PostgreSQL"), pa.string()),
                                           (pa.float64(), pa.float32()), (pa.json_(), pa.binary())])
def test_pg_inexact_pairs_have_no_converter(src: pa.DataType, dst: pa.DataType) -> None:
    assert _native_pg.converter_for(src, dst) is None


# ------------------------------------------------------------------------------------------- MySQL SQL
def _mysql_table() -> sa.Table:
    return _table(sa.Column("id", mysql.BIGINT(unsigned=True)), sa.Column("price", mysql.DECIMAL(65, 30)),
                  sa.Column("ts", mysql.TIMESTAMP(fsp=6)), sa.Column("dt", mysql.DATETIME(fsp=6)),
                  sa.Column("d", sa.Date), sa.Column("t", mysql.TIME), sa.Column("b", mysql.BIT(3)),
                  sa.Column("f", mysql.DOUBLE), sa.Column("n", mysql.DECIMAL(28, 10)))  # fmt: skip


def test_mysql_rewrite_selects_exact_forms_and_counts_in_the_same_statement() -> None:
    t = _mysql_table()
    sql, kinds, flags = _native_mysql.rewrite(sa.select(*t.columns), WHERE)
    # DECIMAL(65, 30) as exact text; DECIMAL(28, 10) fits connectorx's decimal128(38, 10) exactly
    assert kinds == ["pass", "checked", "dates", "dates", "dates", "time", "checked", "pass", "pass"]
    assert sql.startswith("SELECT STRAIGHT_JOIN ")
    assert "CAST(`Order Items`.price AS CHAR)" in sql
    assert "CASE WHEN (`Order Items`.ts = 0) THEN NULL ELSE `Order Items`.ts END" in sql
    assert "CASE WHEN (year(`Order Items`.dt) = 0 OR month(`Order Items`.dt) = 0" in sql
    assert "CAST(`Order Items`.b AS UNSIGNED INTEGER)" in sql
    assert "count(*) AS mozart_n" in sql and flags == {9: 2, 10: 3, 11: 4}  # zero-date flags, then the count
    assert "CASE WHEN (year(`Order Items`.d) = 0 OR month(`Order Items`.d) = 0" in sql
    assert sql.index("AS mozart_c") < sql.index("AS mozart_q ON true")  # count first, then the stream


def test_mysql_queries_with_values_fall_back() -> None:
    t = _mysql_table()
    with pytest.raises(NativeUnsupportedError, match="cannot bind values"):
        _native_mysql.rewrite(sa.select(t.c.id).where(t.c.d >= dt.date(2026, 11, 25)), WHERE)


def test_mysql_time_of_day_and_duration() -> None:
    text = pa.array(["12:00:00.5", None, "00:00:01", "-838:59:59.000000"])
    to_duration = _native_mysql.converter_for("time", pa.string(), pa.duration("us"))
    assert to_duration(text).to_pylist()[3] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    to_time = _native_mysql.converter_for("time", pa.string(), pa.time64("us"))
    assert to_time(text.slice(0, 3)).to_pylist() == [dt.time(12, 0, 0, 500000), None, dt.time(0, 0, 1)]
    with pytest.raises(pa.ArrowInvalid, match="time of day"):
        to_time(text)


def test_mysql_datetime_to_utc_target_keeps_the_wall_clock_as_utc() -> None:
    convert = _native_mysql.converter_for("dates", pa.timestamp("us"), pa.timestamp("us", "UTC"))
    out = convert(pa.array([dt.datetime(2024, 1, 1, 5)], pa.timestamp("us")))
    assert out.to_pylist() == [dt.datetime(2024, 1, 1, 5, tzinfo=dt.UTC)]


# ----------------------------------------------------------------------------------------- shared parts
@pytest.mark.parametrize(("src", "dst", "ok"), [
    (pa.int32(), pa.int64(), True), (pa.uint64(), pa.decimal128(20, 0), True), (pa.int8(), pa.bool_(), True),
    (pa.float32(), pa.float64(), True), (pa.float64(), pa.float32(), False),
    (pa.string(), pa.binary(), False),
    (pa.timestamp("us", "UTC"), pa.timestamp("us", "+00:00"), True),
    (pa.timestamp("us"), pa.timestamp("ms"), False), (pa.large_binary(), pa.binary(), True),
    (pa.timestamp("us"), pa.timestamp("us", "UTC"), False),
])  # fmt: skip
def test_safe_converter_only_accepts_exact_pairs(src: pa.DataType, dst: pa.DataType, ok: bool) -> None:
    assert (safe_converter(src, dst) is not None) is ok


def test_checked_integer_casts_raise_instead_of_overflowing() -> None:
    convert = safe_converter(pa.uint64(), pa.int64())
    with pytest.raises(pa.ArrowInvalid):
        convert(pa.array([2**63], pa.uint64()))


def test_an_inexact_value_names_tenant_table_column_and_source_type() -> None:
    field = pa.field("x", pa.decimal128(4, 1), metadata={"mozart.source_type": "NUMERIC(4, 1)"})
    batch = pa.record_batch([pa.array(["1.25"])], names=["x"])
    convert = safe_converter(pa.string(), pa.string())
    with pytest.raises(TypeMappingError) as info:
        convert_batch(batch, [lambda a: pa.compute.cast(a, field.type)], pa.schema([field]), WHERE)
    assert "tenant 'acme', table 'orders': column 'x' (NUMERIC(4, 1) -> decimal128(4, 1))" in str(info.value)
    assert "hunter22" not in str(info.value) and convert is not None


def test_driver_errors_never_carry_the_password() -> None:
    err = WHERE.driver_error("ADBC", RuntimeError("cannot connect postgresql://u:hunter22@db/app"), True)
    assert "hunter22" not in str(err) and err.retryable


def test_rebatch_bounds_rows_without_copying() -> None:
    batch = pa.record_batch([pa.array(range(10))], names=["a"])
    sizes = [b.num_rows for b in rebatch([batch, batch.slice(0, 0), batch], 4)]
    assert sizes == [4, 4, 2, 4, 4, 2]


def test_no_native_reader_for_other_backends() -> None:
    with pytest.raises(NativeUnsupportedError, match="sqlite"):
        native_batches(sa.make_url("sqlite:///x.db"), sa.select(sa.literal_column("1")), pa.schema([]))


# -------------------------------------------------------------------------------------------- wiring
def _connector(native: bool) -> PostgresConnector:
    source = SourceConfig(kind="postgresql", url=Secret("postgresql://u:p@db/app"), native=native)
    return PostgresConnector(TenantConfig(id="acme", source=source, tables=()))


def test_connector_uses_the_native_reader_unless_switched_off() -> None:
    assert isinstance(_connector(True).make_reader(None), NativeBatchReader)  # type: ignore[arg-type]
    assert _connector(False).make_reader(None).name == "sqlalchemy"  # type: ignore[arg-type]


def test_native_source_key_is_validated(tmp_path) -> None:
    (tmp_path / "tables.yaml").write_text("tables: {t: {mode: full}}\n")
    tenant = "tenants:\n  acme:\n    source: {kind: postgresql, url: 'postgresql://u@h/d', native: %s}\n"
    (tmp_path / "tenants.yaml").write_text(tenant % "false")
    assert load_config(tmp_path, env={}).tenant("acme").source.native is False
    (tmp_path / "tenants.yaml").write_text(tenant % "maybe")
    with pytest.raises(ConfigError, match=r"tenants.acme.source.native: must be true or false"):
        load_config(tmp_path, env={})


def test_driver_batches_aim_at_16_mib_within_bounds() -> None:
    narrow = pa.schema([("id", pa.int64()), ("at", pa.timestamp("us")), ("label", pa.string())])
    assert driver_batch_rows(narrow) == (16 << 20) // (8 + 8 + 64)
    assert driver_batch_rows(pa.schema([(f"c{i}", pa.string()) for i in range(100)])) == 50_000
    assert driver_batch_rows(pa.schema([("flag", pa.bool_())])) == 250_000
