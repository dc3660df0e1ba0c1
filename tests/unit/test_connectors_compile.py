"""Queries are SQLAlchemy expressions: compiled per dialect, hostile names quoted, window values bound."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors import (
    MySQLConnector,
    OracleConnector,
    PostgresConnector,
    Snapshot,
    SourceColumn,
    SQLiteConnector,
    Window,
    connector_for,
)
from mozart_luigi.errors import SourceError
from mozart_luigi.secrets import Secret

pytestmark = pytest.mark.unit

DAY = dt.date(2026, 11, 25)
SOURCES = {
    "postgresql": SourceConfig(
        kind="postgresql", host="db", port=5432, database="acme", user="r", password=Secret("pw-123456")
    ),
    "mysql": SourceConfig(kind="mysql", host="db", port=3306, database="globex", user="r", password=Secret("pw-1")),
    "oracle": SourceConfig(
        kind="oracle", host="db", port=1521, service_name="FREEPDB1", user="r", password=Secret("pw-2")
    ),
    "sqlite": SourceConfig(kind="sqlite", path="/tmp/demo.sqlite"),
}
HOSTILE = TableConfig(
    name="order_items",
    source_name="Order Items",
    source_schema="Sales Data",
    mode="incremental",
    cursor="Updated At",
)
WINDOW = Window.for_date(DAY)
COLUMNS = [
    SourceColumn("select", sa.Integer()),
    SourceColumn("Updated At", sa.DateTime()),
    SourceColumn("from", sa.String()),
]


def connector(kind: str) -> Any:
    return connector_for(TenantConfig(id="acme", source=SOURCES[kind], tables=("order_items",)))


def snapshot(
    kind: str,
    table: TableConfig = HOSTILE,
    columns: list[SourceColumn] = COLUMNS,
    window: Window | None = WINDOW,
) -> Snapshot:
    """A snapshot built without a connection: only its queries are looked at."""
    return Snapshot(connector(kind), None, table, window, columns)  # type: ignore[arg-type]


def compiled(kind: str, statement: sa.ClauseElement) -> sa.sql.compiler.Compiled:
    return statement.compile(dialect=connector(kind).engine.dialect)


def test_connector_for_picks_the_dialect_class() -> None:
    classes = {k: type(connector(k)) for k in SOURCES}
    assert classes == {
        "postgresql": PostgresConnector,
        "mysql": MySQLConnector,
        "oracle": OracleConnector,
        "sqlite": SQLiteConnector,
    }


@pytest.mark.parametrize(
    ("kind", "table_sql", "column_sql", "placeholder"),
    [
        (
            "postgresql",
            '"Sales Data"."Order Items"',
            '"Sales Data"."Order Items"."select"',
            "%(window_start)s",
        ),
        ("mysql", "`Sales Data`.`Order Items`", "`Sales Data`.`Order Items`.`select`", "%(window_start)s"),
        ("oracle", '"Sales Data"."Order Items"', '"Sales Data"."Order Items"."select"', ":window_start"),
        ("sqlite", '"Sales Data"."Order Items"', '"Sales Data"."Order Items"."select"', "?"),
    ],
)
def test_hostile_names_are_quoted_and_window_values_bound(
    kind: str, table_sql: str, column_sql: str, placeholder: str
) -> None:
    snap = snapshot(kind)
    query = compiled(kind, snap.query)
    sql = query.string
    assert f"FROM {table_sql}" in sql
    assert column_sql in sql
    assert placeholder in sql
    assert "2026-11-25" not in sql and "2026" not in sql  # values are bound, never inlined
    count = compiled(kind, snap.count_query)
    assert count.string.startswith("SELECT count(*)") and f"FROM {table_sql}" in count.string
    assert count.params == query.params


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "oracle"])
def test_window_is_half_open_with_datetime_binds(kind: str) -> None:
    query = compiled(kind, snapshot(kind).query)
    assert query.params == {
        "window_start": dt.datetime(2026, 11, 25),
        "window_end": dt.datetime(2026, 11, 26),
    }
    sql = " ".join(query.string.split())
    assert ">=" in sql and "<" in sql.split(">=")[1] and "<=" not in sql


def test_sqlite_window_compares_normalised_text() -> None:
    query = compiled("sqlite", snapshot("sqlite").query)
    assert 'datetime("Sales Data"."Order Items"."Updated At") >= ?' in query.string
    assert query.params == {"window_start": "2026-11-25 00:00:00", "window_end": "2026-11-26 00:00:00"}


def test_date_cursor_binds_dates() -> None:
    columns = [SourceColumn("id", sa.Integer()), SourceColumn("Updated At", sa.Date())]
    query = compiled("postgresql", snapshot("postgresql", columns=columns).query)
    assert query.params == {"window_start": dt.date(2026, 11, 25), "window_end": dt.date(2026, 11, 26)}


def test_full_mode_has_no_where_clause() -> None:
    table = TableConfig(name="select", source_name="select", mode="full")
    query = compiled("postgresql", snapshot("postgresql", table=table, window=None).query)
    assert 'FROM "select"' in query.string and "WHERE" not in query.string and not query.params


def test_injection_attempt_in_a_name_stays_an_identifier() -> None:
    table = TableConfig(name="x", source_name='orders"; DROP TABLE customers; --', mode="full")
    sql = compiled("postgresql", snapshot("postgresql", table=table, window=None).query).string
    assert 'FROM "orders""; DROP TABLE customers; --"' in sql


def test_include_and_exclude_select_columns_in_order() -> None:
    include = TableConfig(name="t", source_name="t", mode="full", include=("from", "select"))
    snap = snapshot("postgresql", table=include, window=None)
    assert snap.schema.names == ["from", "select"]
    exclude = TableConfig(name="t", source_name="t", mode="full", exclude=("from",))
    assert snapshot("postgresql", table=exclude, window=None).schema.names == ["select", "Updated At"]


def test_unknown_include_column_and_missing_cursor_are_source_errors() -> None:
    bad_include = TableConfig(name="t", source_name="t", mode="full", include=("nope",))
    with pytest.raises(SourceError, match=r"tenant 'acme', table 't': include/exclude name unknown column"):
        snapshot("postgresql", table=bad_include, window=None)
    bad_cursor = TableConfig(name="t", source_name="t", mode="incremental", cursor="changed")
    with pytest.raises(SourceError, match=r"cursor column 'changed' not found .* on postgresql://r@db:5432/acme"):
        snapshot("postgresql", table=bad_cursor)


def test_cursor_must_be_a_date_or_timestamp() -> None:
    table = TableConfig(name="t", source_name="t", mode="incremental", cursor="select")
    with pytest.raises(SourceError, match="a date or timestamp is needed"):
        snapshot("postgresql", table=table)


def test_server_side_casts_are_compiled_per_dialect() -> None:
    columns = [
        SourceColumn("doc", pg.JSONB()),
        SourceColumn("id", pg.UUID()),
        SourceColumn("span", pg.INTERVAL()),
        SourceColumn("tags", pg.ARRAY(pg.UUID())),
    ]
    table = TableConfig(name="t", source_name="t", mode="full")
    sql = compiled("postgresql", snapshot("postgresql", table=table, columns=columns, window=None).query).string
    assert "CAST(t.doc AS TEXT) AS doc" in sql
    assert "CAST(t.id AS TEXT) AS id" in sql
    assert "CAST(t.span AS TEXT) AS span" in sql
    assert "CAST(t.tags AS TEXT[]) AS tags" in sql


@pytest.mark.parametrize(
    ("kind", "statements"),
    [
        (
            "postgresql",
            [
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                "SET LOCAL TIME ZONE 'UTC'",
                "SET LOCAL intervalstyle = 'iso_8601'",
            ],
        ),
        (
            "mysql",
            [
                "SET SESSION time_zone = '+00:00'",
                "SET SESSION net_write_timeout = 3600",
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            ],
        ),
        ("oracle", ["ALTER SESSION SET TIME_ZONE = 'UTC'", "SET TRANSACTION READ ONLY"]),
        ("sqlite", ["BEGIN"]),
    ],
)
def test_snapshot_statements(kind: str, statements: list[str]) -> None:
    assert list(type(connector(kind)).snapshot_statements) == statements


def test_urls_pick_drivers_and_hide_passwords() -> None:
    urls = {k: connector(k).url() for k in SOURCES}
    assert urls["postgresql"].drivername == "postgresql+psycopg2"
    assert urls["mysql"].drivername == "mysql+pymysql" and urls["mysql"].query["charset"] == "utf8mb4"
    assert urls["oracle"].drivername == "oracle+oracledb" and urls["oracle"].query["service_name"] == "FREEPDB1"
    assert urls["sqlite"].database == "file:/tmp/demo.sqlite" and dict(urls["sqlite"].query) == {
        "mode": "ro",
        "uri": "true",
    }
    for url in urls.values():
        assert "pw-" not in repr(url) and "pw-" not in str(url)
    assert "pw-123456" not in repr(connector("postgresql"))


def test_url_without_driver_gets_ours() -> None:
    source = SourceConfig(kind="postgresql", url=Secret("postgresql://u:secret-pw@h:1/db"))
    tenant = TenantConfig(id="acme", source=source, tables=())
    assert connector_for(tenant).url().drivername == "postgresql+psycopg2"
    assert source.describe() == "postgresql://u:***@h:1/db"


def test_qualified_name_is_dialect_quoted() -> None:
    assert connector("mysql").qualified_name(HOSTILE) == "`Sales Data`.`Order Items`"
    assert connector("postgresql").qualified_name(TableConfig(name="o", source_name="orders")) == "orders"


@pytest.mark.parametrize(
    ("kind", "quoted"),
    [
        ("mysql", "`Order Items`.`a``b`, `Order Items`.```x```"),
        ("postgresql", '"Order Items"."a`b", "Order Items"."`x`"'),
    ],
)
def test_a_backtick_in_a_name_is_quoted_once_from_the_true_name(kind: str, quoted: str) -> None:
    columns = [SourceColumn("a`b", sa.Integer()), SourceColumn("`x`", sa.String())]
    table = TableConfig(name="t", source_name="Order Items", mode="full", exclude=())
    sql = compiled(kind, snapshot(kind, table=table, columns=columns, window=None).query).string
    assert f"SELECT {quoted} \nFROM" in sql


def test_mysql_reflection_gives_the_true_name_of_a_backtick_column() -> None:
    """SQLAlchemy returns ``SHOW CREATE TABLE``'s escaped form (a backtick doubled): undone, even for two."""
    from mozart_luigi.connectors.mysql import _true_name

    escaped = ["a``b", "``x``", "two````ticks", "plain"]
    assert [_true_name(SourceColumn(n, sa.Integer())).name for n in escaped] == ["a`b", "`x`", "two``ticks", "plain"]
