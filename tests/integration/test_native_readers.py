"""Native readers vs the SQLAlchemy row path on the real servers: the same snapshot API, equal Arrow tables.

Each table is read twice through ``Connector.snapshot`` — once with the native reader (ADBC / connectorx),
once with ``native: false`` (the SQLAlchemy row path) — and the two results must be *equal*, value for value
and type for type, over several batches, NULLs, decimals with and without scale, ``timestamptz``, zero dates,
emoji and ``\\0``. Also: the count and the rows come from one snapshot (rows inserted after the count are not
read), a bound window on PostgreSQL stays native, a MySQL window (its date bounds rendered as literals) stays
native too, an abandoned read closes.
"""

from __future__ import annotations

import datetime as dt

import extract_helpers
import pyarrow as pa
import pytest
import sqlalchemy as sa
from extract_helpers import DAY, unique

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors.base import Connector, Window
from mozart_luigi.connectors.mysql import MySQLConnector
from mozart_luigi.connectors.postgres import PostgresConnector
from mozart_luigi.secrets import Secret

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
mysql_db = extract_helpers.mysql_db
ROWS = 2_345  # several batches of BATCH rows, and a short last one
BATCH = 1_000

PG_DDL = """CREATE TABLE "{s}"."Mixed Types" (
    id bigint PRIMARY KEY, n numeric(12,2), u numeric, wide numeric(50,20), f float8, r real,
    ts timestamp(6), tz timestamptz(6), d date, tm time, label text, raw bytea, ok boolean,
    doc jsonb, uid uuid, span interval, ints int[], amounts numeric(10,2)[], updated_at timestamptz)"""
PG_FILL = """INSERT INTO "{s}"."Mixed Types"
SELECT g, g * 1.25 - 700, g / 8.0, g * 1e-20 + 12345678901234567890, g / 3.0::float8, g / 7.0::real,
       timestamp '2026-11-25 00:00:00.000001' + g * interval '1.000001 minute',
       timestamptz '2026-11-25 00:00:00+05:30' + g * interval '1 minute', date '2026-01-01' + g::int,
       time '00:00:00.5' + g * interval '1 second', 'row ' || g || ' 😀 é',
       decode(lpad(to_hex(g), 8, '0'), 'hex'),
       g % 2 = 0, jsonb_build_object('g', g, 'é', ARRAY[g, g + 1]), md5(g::text)::uuid,
       make_interval(months => g % 14, days => g % 3, secs => g / 1000.0), ARRAY[g::int, NULL],
       ARRAY[g * 0.01, NULL]::numeric(10,2)[],
       timestamptz '2026-11-24 12:00:00+00' + g * interval '30 seconds'
FROM generate_series(1, {rows}) AS g"""
PG_SPECIAL = """INSERT INTO "{s}"."Mixed Types" (id, n, u, f, label, tz) VALUES
    (-1, NULL, NULL, 'NaN', NULL, NULL), (-2, -0.01, 0.0000000001, 'Infinity', '', '2000-01-01 00:00:00+14'),
    (-3, 9999999999.99, 12345678901234567890.1234567890, '-Infinity', 'PostgreSQL text has no NUL', NULL)"""

MYSQL_DDL = """CREATE TABLE `{t}` (
    id BIGINT PRIMARY KEY, n DECIMAL(12,2), wide DECIMAL(65,30), f DOUBLE, r FLOAT, dt DATETIME(6),
    ts TIMESTAMP(6) NULL, d DATE, tm TIME(6), label TEXT, raw BLOB, flag TINYINT(1), big BIGINT UNSIGNED,
    yr YEAR, bits BIT(5), doc JSON, e ENUM('a','b'), s SET('x','y'), updated_at DATETIME
) DEFAULT CHARSET=utf8mb4"""
MYSQL_FILL = """INSERT INTO `{t}`
SELECT seq, seq * 1.25 - 700, seq / 3 + 0.000000000000000000000000000001, seq / 3.0e0, seq / 7.0e0,
       TIMESTAMP('2026-11-25 00:00:00.000001') + INTERVAL seq * 1000001 MICROSECOND,
       TIMESTAMP('2026-11-25') + INTERVAL seq MINUTE, DATE('2026-01-01') + INTERVAL seq DAY,
       SEC_TO_TIME(seq % 86400 + 0.5), CONCAT('row ', seq, ' 😀 \\0 é'), UNHEX(LPAD(HEX(seq), 8, '0')),
       seq % 3, 18446744073709551615 - seq, 1901 + seq % 254, seq % 32, JSON_OBJECT('g', seq),
       IF(seq % 2, 'a', 'b'), IF(seq % 2, 'x,y', ''),
       TIMESTAMP('2026-11-24 12:00:00') + INTERVAL seq * 30 SECOND
FROM seq_1_to_{rows}"""
MYSQL_SPECIAL = """INSERT INTO `{t}` (id, n, wide, dt, ts, d, label, flag) VALUES
    (-1, NULL, NULL, '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00', NULL, NULL),
    (-2, -0.01, -1.5, '2024-00-10 00:00:00', NULL, '2024-02-00', '', -128),
    (-3, 9999999999.99, 0, '0000-01-01 00:00:00', NULL, NULL, 'tab\\tnew\\nline', 127)"""


def _connector(cls: type[Connector], url: str, *, native: bool) -> Connector:
    kind = "postgresql" if cls is PostgresConnector else "mysql"
    source = SourceConfig(kind=kind, url=Secret(url), native=native)
    return cls(TenantConfig(id="acme", source=source, tables=()))


def _read(connector: Connector, table: TableConfig, window: Window | None = None) -> tuple[int, pa.Table, str, int]:
    with connector.snapshot(table, window) as snap:
        count = snap.count()
        batches = list(snap.batches(BATCH))
        assert all(b.num_rows <= BATCH for b in batches)
        data = pa.Table.from_batches(batches, schema=snap.schema)
        return count, data.sort_by("id"), snap.reader.name, snap.zero_dates_nulled


def _both(cls: type[Connector], url: str, table: TableConfig, window: Window | None = None):
    native = _read(_connector(cls, url, native=True), table, window)
    rows = _read(_connector(cls, url, native=False), table, window)
    assert rows[2] == "sqlalchemy"
    return native, rows


def _assert_equal(native: pa.Table, rows: pa.Table, *, skip: tuple[str, ...] = ()) -> None:
    assert native.schema.equals(rows.schema, check_metadata=True)
    for name in [n for n in rows.column_names if n not in skip]:  # one by one: a failure names the column
        got, want = native.column(name).combine_chunks(), rows.column(name).combine_chunks()
        if pa.types.is_floating(got.type):  # bit for bit: NaN equals NaN, -0.0 differs from 0.0
            bits = pa.int64() if got.type == pa.float64() else pa.int32()
            got, want = got.view(bits), want.view(bits)
        assert got.equals(want), name


def test_postgres_native_equals_the_row_path(pg_schema) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        for sql in (PG_DDL, PG_FILL, PG_SPECIAL):
            conn.execute(sa.text(sql.format(s=schema, rows=ROWS)))
    url = engine.url.render_as_string(hide_password=False)
    table = TableConfig(name="mixed", source_name="Mixed Types", source_schema=schema)
    (n_count, native, reader, _), (r_count, rows, _, _) = _both(PostgresConnector, url, table)
    assert reader == "adbc-postgresql"
    assert n_count == r_count == native.num_rows == ROWS + 3
    _assert_equal(native, rows)


def test_postgres_window_values_are_bound_and_stay_native(pg_schema) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        for sql in (PG_DDL, PG_FILL):
            conn.execute(sa.text(sql.format(s=schema, rows=ROWS)))
    url = engine.url.render_as_string(hide_password=False)
    table = TableConfig(
        name="mixed", source_name="Mixed Types", source_schema=schema, mode="incremental", cursor="updated_at"
    )
    (n_count, native, reader, _), (r_count, rows, _, _) = _both(PostgresConnector, url, table, Window.for_date(DAY))
    assert reader == "adbc-postgresql"
    assert n_count == r_count == native.num_rows == ROWS - 1_440 + 1  # from 00:00 on DAY, every 30 s
    _assert_equal(native, rows)


def test_mariadb_native_equals_the_row_path(mysql_db) -> None:
    engine, prefix = mysql_db
    name = f"{prefix}_mixed"
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # allow the zero and partial dates
        for sql in (MYSQL_DDL, MYSQL_FILL, MYSQL_SPECIAL):
            conn.execute(sa.text(sql.format(t=name, rows=ROWS)))
    url = engine.url.render_as_string(hide_password=False)
    table = TableConfig(name="mixed", source_name=name)
    (n_count, native, reader, n_zero), (r_count, rows, _, r_zero) = _both(MySQLConnector, url, table)
    assert reader == "connectorx-mysql"
    assert n_count == r_count == native.num_rows == ROWS + 3
    assert n_zero == r_zero == 6
    # FLOAT: both paths give the stored float32 (the row path selects it as DOUBLE, since the text
    # protocol prints FLOAT with 6 significant digits); check it against the server's value as well.
    _assert_equal(native, rows)
    with engine.connect() as conn:
        stored = conn.execute(sa.text(f"SELECT CAST(r AS DOUBLE) FROM `{name}` ORDER BY id")).scalars().all()
    assert native.column("r").combine_chunks().equals(pa.array(stored, pa.float64()).cast(pa.float32()))


@pytest.mark.parametrize("cursor", ["updated_at", "ts", "d"])  # DATETIME, TIMESTAMP (UTC), DATE
def test_mariadb_window_is_rendered_and_stays_native(mysql_db, cursor: str) -> None:
    """An incremental window on MariaDB: its date bounds are rendered as literals, so connectorx reads it;
    the result equals the row path's (which binds them), zero dates and NULL cursors included."""
    engine, prefix = mysql_db
    name = f"{prefix}_mixed"
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # allow the zero and partial dates
        for sql in (MYSQL_DDL, MYSQL_FILL, MYSQL_SPECIAL):
            conn.execute(sa.text(sql.format(t=name, rows=ROWS)))
    url = engine.url.render_as_string(hide_password=False)
    table = TableConfig(name="mixed", source_name=name, mode="incremental", cursor=cursor)
    (n_count, native, reader, n_zero), (r_count, rows, _, r_zero) = _both(
        MySQLConnector, url, table, Window.for_date(DAY)
    )
    assert reader == "connectorx-mysql"
    assert n_count == r_count == native.num_rows == rows.num_rows > 0 and n_zero == r_zero
    if cursor == "updated_at":
        assert n_count == ROWS - 1_440 + 1  # from 00:00 on DAY, every 30 s
    if cursor == "d":
        assert native.column("id").to_pylist() == [(DAY - dt.date(2026, 1, 1)).days]
    _assert_equal(native, rows)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_rows_inserted_after_the_count_are_not_read(dialect: str, stack_env: dict[str, str]) -> None:
    url = stack_env["MOZART_TEST_PG_URL" if dialect == "postgresql" else "MOZART_TEST_MYSQL_URL"]
    cls = PostgresConnector if dialect == "postgresql" else MySQLConnector
    name = unique("mz_snap")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        conn.execute(sa.text(f"INSERT INTO {name} VALUES (:i, 'x')"), [{"i": i} for i in range(50_000)])
    try:
        with _connector(cls, url, native=True).snapshot(TableConfig(name="snap", source_name=name)) as snap:
            count = snap.count()
            with engine.begin() as conn:  # another session commits more rows mid-extract
                conn.execute(sa.text(f"INSERT INTO {name} VALUES (:i, 'late')"), [{"i": -i} for i in range(1, 500)])
            read = sum(b.num_rows for b in snap.batches(BATCH))
            assert snap.reader.name != "sqlalchemy"
        assert count == read == 50_000
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {name}")
        engine.dispose()


def test_an_abandoned_read_closes_at_once(stack_env: dict[str, str]) -> None:
    url = stack_env["MOZART_TEST_PG_URL"]
    name = unique("mz_abandon")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {name} AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g"
        )
    try:
        connector = _connector(PostgresConnector, url, native=True)
        with connector.snapshot(TableConfig(name="abandon", source_name=name)) as snap:
            snap.count()
            first = next(snap.batches(BATCH))
        assert first.num_rows == BATCH
        with engine.connect() as conn:  # the native connection is gone, not left idle in a transaction
            activity = sa.text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q AND pid <> pg_backend_pid()")
            left = conn.execute(activity, {"q": f"%{name}%"}).scalar_one()
        assert left == 0
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {name}")
        engine.dispose()
