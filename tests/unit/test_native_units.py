"""Native readers without a server: compiled SQL (values never in the text), exact converters, batching."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig, load_config
from mozart_luigi.connectors import (
    CONNECTORS,
    READERS,
    MySQLConnector,
    Snapshot,
    SourceColumn,
    Window,
    _native_mysql,
    _native_pg,
)
from mozart_luigi.connectors._native_common import (
    NativeUnsupportedError,
    Where,
    convert_batch,
    read_ahead,
    rebatch,
    safe_converter,
)
from mozart_luigi.connectors.native import NativeBatchReader, driver_batch_rows, native_batches
from mozart_luigi.connectors.postgres import PostgresConnector
from mozart_luigi.errors import ConfigError, SourceError, SourceUnavailableError, TypeMappingError
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
    query = sa.select(t.c.id).where(
        t.c.updated_at >= start, t.c.updated_at < start + dt.timedelta(days=1), t.c.id != "1; DROP TABLE x"
    )
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


def test_pg_decimal_numerics_are_selected_as_the_servers_text_and_cast_the_same_way() -> None:
    t = _table(
        sa.Column("id", sa.BigInteger),
        sa.Column("price", sa.Numeric(12, 2)),
        sa.Column("wide", sa.Numeric(50, 20)),  # stored as text: the driver's own decoding
        sa.Column("score", sa.Float),
        sa.Column("amounts", postgresql.ARRAY(sa.Numeric(12, 2))),
    )
    schema = pa.schema(
        [("id", pa.int64()), ("price", pa.decimal128(12, 2)), ("wide", pa.string()), ("score", pa.float64())]
        + [("amounts", pa.list_(pa.decimal128(12, 2)))]
    )
    query = sa.select(t).where(t.c.id > 5)
    as_text = _native_pg.numeric_text_columns(query, schema)
    assert as_text == {1}
    sql, count_sql, settings = _native_pg.compile_query(query, as_text=as_text)
    assert 'CAST("Order Items".price AS TEXT) AS price' in sql
    assert sql.count("AS TEXT") == 1  # only the decimal column
    assert "AS TEXT" not in count_sql and settings == [("mozart.p0", "5")]
    result = pa.schema([("id", pa.int64()), ("price", pa.string()), ("wide", PG_NUMERIC), ("score", pa.float64())])
    converters = _native_pg.plan(result.append(pa.field("amounts", pa.list_(PG_NUMERIC))), schema, WHERE, as_text)
    text = pa.array(["1.50", None, "-0.01", "9999999999.99"])
    assert converters[1](text).to_pylist() == [Decimal("1.50"), None, Decimal("-0.01"), Decimal("9999999999.99")]
    for bad in ("1.505", "NaN", "Infinity", "99999999999.00"):
        with pytest.raises(pa.ArrowInvalid):
            converters[1](pa.array([bad]))
    with pytest.raises(NativeUnsupportedError, match="price"):  # the text is only ever parsed into a decimal
        _native_pg.plan(result, schema.set(1, pa.field("price", pa.int64())).remove(4), WHERE, as_text)


def test_read_ahead_hands_over_every_batch_in_order_then_the_error() -> None:
    batches = [pa.record_batch({"x": [i, i + 1]}) for i in range(0, 10, 2)]

    def failing():
        yield from batches
        raise SourceError("connection lost")

    with read_ahead(iter(batches)) as ahead:
        assert list(ahead) == batches
    with read_ahead(failing()) as ahead:
        got = []
        with pytest.raises(SourceError, match="connection lost"):
            got.extend(ahead)
        assert got == batches


def test_read_ahead_stops_its_thread_and_closes_the_batches_when_abandoned() -> None:
    closed = []

    def endless():
        try:
            while True:
                yield pa.record_batch({"x": [1]})
        finally:
            closed.append(True)

    with read_ahead(endless(), depth=2) as ahead:
        assert next(ahead).num_rows == 1
    assert closed == [True]
    assert not [t for t in threading.enumerate() if t.name == "mozart-read-ahead"]


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


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (pa.opaque(pa.binary(), "inet", "PostgreSQL"), pa.string()),
        (pa.float64(), pa.float32()),
        (pa.json_(), pa.binary()),
    ],
)
def test_pg_inexact_pairs_have_no_converter(src: pa.DataType, dst: pa.DataType) -> None:
    assert _native_pg.converter_for(src, dst) is None


# ------------------------------------------------------------------------------------------- MySQL SQL
def _mysql_table() -> sa.Table:
    return _table(
        sa.Column("id", mysql.BIGINT(unsigned=True)),
        sa.Column("price", mysql.DECIMAL(65, 30)),
        sa.Column("ts", mysql.TIMESTAMP(fsp=6)),
        sa.Column("dt", mysql.DATETIME(fsp=6)),
        sa.Column("d", sa.Date),
        sa.Column("t", mysql.TIME),
        sa.Column("b", mysql.BIT(3)),
        sa.Column("f", mysql.DOUBLE),
        sa.Column("n", mysql.DECIMAL(28, 10)),
    )


def test_mysql_rewrite_selects_exact_forms_and_counts_in_the_same_statement() -> None:
    t = _mysql_table()
    sql, kinds, (flags, present, sums) = _native_mysql.rewrite(sa.select(*t.columns), WHERE)
    # DECIMAL(65, 30) as exact text; DECIMAL(28, 10) fits connectorx's decimal128(38, 10) exactly
    assert kinds == ["pass", "checked", "dates", "dates", "dates", "time", "checked", "pass", "pass"]
    assert sql.startswith("SELECT STRAIGHT_JOIN ")
    assert "CAST(`Order Items`.price AS CHAR)" in sql
    for c in ("ts", "dt", "d"):  # TIMESTAMP, DATETIME, DATE: one TO_DAYS per value, no per-row flag
        assert f"CASE WHEN (to_days(`Order Items`.{c}) >= 366) THEN `Order Items`.{c} END AS mozart_c" in sql
    assert "mozart_f" not in sql and "year(" not in sql and flags == {} and sums == []
    assert "CAST(`Order Items`.b AS UNSIGNED INTEGER)" in sql
    # the date columns' non-NULL source counts ride with the count (positions 9-11), the count is last
    assert "count(*) AS mozart_n, count(mozart_q2.ts) AS mozart_z2, count(mozart_q2.dt) AS mozart_z3" in sql
    assert present == {9: 2, 10: 3, 11: 4}
    assert sql.index("AS mozart_c") < sql.index("AS mozart_q ON true")  # count first, then the stream


def test_mysql_rewrite_with_sums_puts_them_before_the_date_counts() -> None:
    t = _mysql_table()
    rewritten = _native_mysql.rewrite(sa.select(*t.columns), WHERE, [sa.func.sum(t.c.n).label("s_n")])
    assert rewritten.layout == ({}, {10: 2, 11: 3, 12: 4}, [9])
    assert "count(*) AS mozart_n, sum(`Order Items`.n) AS s_n, count(`Order Items`.ts) AS mozart_z2" in rewritten.sql


def test_mysql_rewrite_without_count_flags_each_row() -> None:
    """A parallel stream (no count): a flag per date column, 1 only where a non-NULL date became NULL."""
    t = _mysql_table()
    rewritten = _native_mysql.rewrite(sa.select(*t.columns), WHERE, with_count=False)
    assert "mozart_n" not in rewritten.sql and rewritten.layout == ({9: 2, 10: 3, 11: 4}, {}, [])
    assert (
        "CASE WHEN (to_days(`Order Items`.d) >= 366) THEN NULL WHEN (`Order Items`.d IS NULL) THEN NULL ELSE 1 END "
        "AS mozart_f4" in rewritten.sql
    )


def _dates_batch(values: list, flag: list | None = None) -> pa.RecordBatch:
    arrays = [pa.array(range(len(values)), pa.int64()), pa.array(values, pa.date32())]
    return pa.RecordBatch.from_arrays(
        arrays + ([pa.array(flag, pa.int64())] if flag else []), ["id", "d", "f"][: 2 + bool(flag)]
    )


def test_zero_dates_with_the_count_are_the_nulls_beyond_the_source_nulls() -> None:
    """4 rows, 1 source NULL (COUNT(d) = 3), 3 NULLs read: 2 zero dates; only once every row is read."""
    stats: dict[str, int] = {}
    zeros = _native_mysql._ZeroDates({}, 4, stats=stats)
    zeros.present[1] = ("d", 3)
    zeros.add(_dates_batch([None, dt.date(2024, 1, 1)]))
    assert stats == {}  # not before the end
    zeros.add(_dates_batch([None, None]))
    zeros.finish()
    assert stats == {"d": 2}


def test_zero_dates_are_not_made_up_when_the_rows_are_not_the_count() -> None:
    stats: dict[str, int] = {}
    zeros = _native_mysql._ZeroDates({}, 5, stats=stats)  # one row short: the count check fails the extract
    zeros.present[1] = ("d", 3)
    zeros.add(_dates_batch([None, dt.date(2024, 1, 1), None, None]))
    zeros.finish()
    assert stats == {}


def test_zero_dates_without_the_count_are_the_flags() -> None:
    stats: dict[str, int] = {}
    zeros = _native_mysql._ZeroDates({2: "d"}, -1, stats=stats)
    zeros.add(_dates_batch([None, None, dt.date(2024, 1, 1)], [1, None, None]))
    zeros.add(_dates_batch([None], [1]))
    zeros.finish()
    assert stats == {"d": 2}


def test_valid_date_is_one_to_days_comparison() -> None:
    sql = str(_native_mysql.valid_date(sa.column("d", sa.Date)).compile(dialect=mysql.dialect()))
    assert sql == "to_days(d) >= 366"


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
@pytest.mark.parametrize(
    ("src", "dst", "ok"),
    [
        (pa.int32(), pa.int64(), True),
        (pa.uint64(), pa.decimal128(20, 0), True),
        (pa.int8(), pa.bool_(), True),
        (pa.float32(), pa.float64(), True),
        (pa.float64(), pa.float32(), False),
        (pa.string(), pa.binary(), False),
        (pa.timestamp("us", "UTC"), pa.timestamp("us", "+00:00"), True),
        (pa.timestamp("us"), pa.timestamp("ms"), False),
        (pa.large_binary(), pa.binary(), True),
        (pa.timestamp("us"), pa.timestamp("us", "UTC"), False),
    ],
)
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


# ------------------------------------------------------------------- MySQL windows: date literals only
def _window_query(*binds: sa.BindParameter) -> sa.Select:
    t = _table(sa.Column("id", sa.Integer), sa.Column("at", mysql.DATETIME(fsp=6)))
    return sa.select(t.c.id).where(*(t.c.at >= b for b in binds))


def test_mysql_window_bounds_are_rendered_as_date_literals_by_the_dialect() -> None:
    start = sa.bindparam("window_start", dt.datetime(2026, 11, 25), type_=sa.DateTime())
    end = sa.bindparam("window_end", dt.datetime(2026, 11, 26, 0, 0, 0, 4500), type_=sa.DateTime())
    day = sa.bindparam("day", dt.date(2026, 11, 25), type_=sa.Date())
    sql, _, _ = _native_mysql.rewrite(_native_mysql.inline_dates(_window_query(start, end, day), WHERE), WHERE)
    assert "`Order Items`.at >= '2026-11-25 00:00:00'" in sql
    assert "`Order Items`.at >= '2026-11-26 00:00:00.004500'" in sql
    assert "`Order Items`.at >= '2026-11-25')" in sql  # the DATE bound
    assert sql.count("'2026-11-25 00:00:00'") == 2  # in the rows and in the count: one read view


class _EvilDatetime(dt.datetime):
    def isoformat(self, *args: object, **kwargs: object) -> str:
        return "2026-11-25' OR 1=1 -- "

    def __str__(self) -> str:
        return self.isoformat()


class _EvilDate(dt.date):
    def isoformat(self) -> str:
        return "2026-11-25' OR 1=1 -- "


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        ("2026-11-25", sa.DateTime()),
        ("2026-11-25' OR 1=1 -- ", sa.Date()),
        ("2026-11-25", sa.String()),
        (20261125, sa.DateTime()),
        (Decimal("2026.11"), sa.DateTime()),
        (1.5, sa.Date()),
        (b"2026-11-25", sa.Date()),
        (None, sa.DateTime()),
        (dt.time(1, 2), sa.Time()),
        (dt.timedelta(days=1), sa.DateTime()),
        (dt.datetime(2026, 11, 25, tzinfo=dt.UTC), sa.DateTime()),  # aware: rendered with an offset
        (dt.datetime(2026, 11, 25), sa.Date()),
        (dt.date(2026, 11, 25), sa.DateTime()),  # type and value disagree
        (dt.date(2026, 11, 25), sa.String()),
        (dt.datetime(2026, 11, 25), sa.String()),
        (_EvilDatetime(2026, 11, 25), sa.DateTime()),
        (_EvilDate(2026, 11, 25), sa.Date()),
    ],
)
def test_no_other_value_ever_reaches_the_literal_path(value: object, type_: sa.types.TypeEngine) -> None:
    query = _window_query(
        sa.bindparam("window_start", dt.datetime(2026, 11, 25), type_=sa.DateTime()),
        sa.bindparam("v", value, type_=type_),
    )
    with pytest.raises(NativeUnsupportedError, match="not a date/datetime window bound"):
        _native_mysql.inline_dates(query, WHERE)


def test_a_list_of_dates_is_not_rendered_either() -> None:
    t = _table(sa.Column("d", sa.Date))
    query = sa.select(t.c.d).where(t.c.d.in_([dt.date(2026, 11, 25), dt.date(2026, 11, 26)]))
    with pytest.raises(NativeUnsupportedError, match="not a date/datetime window bound"):
        _native_mysql.inline_dates(query, WHERE)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40), type_=st.sampled_from([sa.DateTime(), sa.Date(), sa.String(), sa.Text()]))
def test_no_string_is_ever_rendered(text: str, type_: sa.types.TypeEngine) -> None:
    with pytest.raises(NativeUnsupportedError):
        _native_mysql.inline_dates(_window_query(sa.bindparam("v", text, type_=type_)), WHERE)


@pytest.mark.parametrize(
    "bad", ["2026-11-25", dt.date(2026, 11, 25), dt.datetime(2026, 11, 25, tzinfo=dt.UTC), _EvilDatetime(2026, 11, 25)]
)
def test_a_window_holds_naive_datetimes_only(bad: object) -> None:
    with pytest.raises(TypeError, match="naive UTC datetime"):
        Window(bad, dt.datetime(2026, 11, 26))  # type: ignore[arg-type]
    assert Window.for_date(dt.date(2026, 11, 25)).end == dt.datetime(2026, 11, 26)


class _StringWindow(MySQLConnector):
    """A dialect that (wrongly) binds the window as text: the native reader must refuse it, before any I/O."""

    def window_filter(self, column, cursor, window):  # type: ignore[no-untyped-def]
        return [column >= sa.bindparam("window_start", window.start.isoformat(sep=" "), type_=sa.DateTime())]


def _mysql_snapshot(
    cls: type[MySQLConnector] = MySQLConnector, *, sleeps: list[float] | None = None, window: bool = True
) -> Snapshot:
    source = SourceConfig(kind="mysql", url=Secret("mysql+pymysql://u:hunter22@127.0.0.1:1/app"))
    tenant = TenantConfig(id="acme", source=source, tables=())
    connector = cls(tenant, sleep=(sleeps if sleeps is not None else []).append, base_delay=0.01)
    table = TableConfig(
        name="orders", source_name="orders", mode="incremental" if window else "full", cursor="at" if window else None
    )
    columns = [SourceColumn("id", mysql.INTEGER()), SourceColumn("at", mysql.DATETIME(fsp=6))]
    return Snapshot(connector, None, table, Window.for_date(dt.date(2026, 11, 25)) if window else None, columns)


def test_a_text_window_keeps_the_row_path_before_any_connection(monkeypatch) -> None:
    import connectorx

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("connectorx must not be called")

    monkeypatch.setattr(connectorx, "read_sql", never)
    snap = _mysql_snapshot(_StringWindow)
    assert isinstance(snap.reader, NativeBatchReader)
    with pytest.raises(NativeUnsupportedError, match="a str bound as DateTime"):
        snap.reader.count(snap)


# ------------------------------------------------------------------ native connects: retried, once
class _FakeConnectorx:
    """Records what we send connectorx and fails like it does (the recorded messages of connectorx 0.4)."""

    REFUSED = (
        "timed out waiting for connection: DriverError { Could not connect to address "
        "`127.0.0.1:1': Connection refused (os error 111) }"
    )
    DENIED = (
        "timed out waiting for connection: MySqlError { ERROR 1045 (28000): Access denied for user "
        "'u'@'127.0.0.1' (using password: YES) }"
    )

    def __init__(self, message: str) -> None:
        self.message = message
        self.sessions: list[list[str]] = []

    def read_sql(
        self, conn: str, query: str, *, return_type: str, batch_size: int, pre_execution_query: list[str]
    ) -> None:
        """connectorx 0.4's keywords, exactly: a misspelt one (it ignores unknown ones) fails here."""
        self.sessions.append(list(pre_execution_query))
        raise RuntimeError(self.message)


def test_mysql_native_connect_is_retried_and_its_session_sent_once(monkeypatch) -> None:
    import connectorx

    fake = _FakeConnectorx(_FakeConnectorx.REFUSED)
    monkeypatch.setattr(connectorx, "read_sql", fake.read_sql)
    sleeps: list[float] = []
    snap = _mysql_snapshot(sleeps=sleeps)
    with pytest.raises(SourceUnavailableError) as info:
        snap.reader.count(snap)
    assert len(fake.sessions) == 4 and len(sleeps) == 3, "4 attempts, 3 backoff sleeps"
    assert fake.sessions[0] == list(MySQLConnector.session_statements)  # each statement once
    assert fake.sessions[0] == ["SET SESSION time_zone = '+00:00'", "SET SESSION net_write_timeout = 3600"]
    assert "hunter22" not in str(info.value) and "tenant 'acme', table 'orders'" in str(info.value)


def test_mysql_native_access_denied_fails_at_once(monkeypatch) -> None:
    import connectorx

    fake = _FakeConnectorx(_FakeConnectorx.DENIED)
    monkeypatch.setattr(connectorx, "read_sql", fake.read_sql)
    sleeps: list[float] = []
    snap = _mysql_snapshot(sleeps=sleeps, window=False)
    with pytest.raises(SourceError) as info:
        snap.reader.count(snap)
    assert not isinstance(info.value, SourceUnavailableError) and not info.value.retryable
    assert len(fake.sessions) == 1 and sleeps == []
    assert "ERROR 1045" in str(info.value)


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        (_FakeConnectorx.REFUSED, True),
        (_FakeConnectorx.DENIED, False),
        ("timed out waiting for connection: MySqlError { ERROR 1049 (42000): Unknown database 'x' }", False),
        ("MySqlError { ERROR 1040 (08004): Too many connections }", True),
        ("DriverError { Could not connect to address `db:3306': Name or service not known }", True),
        ("MySqlError { ERROR 1146 (42S02): Table 'app.x' doesn't exist }", False),
    ],
)
def test_connectorx_errors_transient_or_terminal(message: str, transient: bool) -> None:
    assert _native_mysql.is_transient(message) is transient


@pytest.mark.parametrize(
    ("message", "sqlstate", "operational", "transient"),
    [
        (
            'IO: [libpq] Failed to connect: connection to server at "127.0.0.1", port 1 failed: Connection refused',
            None,
            True,
            True,
        ),
        (
            'IO: [libpq] Failed to connect: connection to server at "db", port 5432 failed: FATAL:  password '
            'authentication failed for user "u"',
            None,
            True,
            False,
        ),
        ('IO: [libpq] Failed to connect: could not translate host name "db" to address', None, True, True),
        ("IO: [libpq] Failed to connect: timeout expired", None, True, True),
        ('FATAL:  database "app" does not exist', None, True, False),
        ("the database system is starting up", "57P03", True, True),
        ('relation "x" does not exist', "42P01", False, False),
        ("some driver failure", None, False, False),
    ],
)
def test_postgres_errors_transient_or_terminal_for_both_clients(
    message: str, sqlstate: str | None, operational: bool, transient: bool
) -> None:
    assert _native_pg.is_transient(message, sqlstate, operational=operational) is transient


def test_postgres_native_connect_is_retried_like_the_row_path() -> None:
    """ADBC against a closed port (no server needed): 4 attempts, 3 sleeps, unavailable, no password."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    source = SourceConfig(kind="postgresql", url=Secret(f"postgresql://u:hunter22@127.0.0.1:{port}/app"))
    connector = PostgresConnector(
        TenantConfig(id="acme", source=source, tables=()), sleep=sleeps.append, base_delay=0.01
    )
    table = TableConfig(name="orders", source_name="orders", mode="full")
    snap = Snapshot(connector, None, table, None, [SourceColumn("id", sa.Integer())])
    with pytest.raises(SourceUnavailableError) as info:
        snap.reader.count(snap)
    assert len(sleeps) == 3 and "Connection refused" in str(info.value) and "hunter22" not in str(info.value)


def test_postgres_native_url_names_the_application_and_keeps_a_given_name() -> None:
    connector = _connector(True)
    assert dict(connector.native_url().query) == {"connect_timeout": "10", "application_name": "mozart-luigi"}
    source = SourceConfig(kind="postgresql", url=Secret("postgresql://u:p@db/app?application_name=mine"))
    named = PostgresConnector(TenantConfig(id="acme", source=source, tables=()))
    assert named.native_url().query["application_name"] == "mine"
    assert named.connect_args()["application_name"] == "mine"
    assert connector.connect_args()["application_name"] == "mozart-luigi"


def test_each_dialect_names_its_reader_in_the_registry() -> None:
    assert {cls.kind: cls.native_reader for cls in CONNECTORS.values()} == {
        "postgresql": "adbc-postgresql",
        "mysql": "connectorx-mysql",
        "oracle": None,
        "sqlite": None,
    }
    assert set(READERS) == {"adbc-postgresql", "connectorx-mysql"}
