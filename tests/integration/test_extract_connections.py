"""One source connection per extract, counted by the source itself, and native connects retried like the others.

Each extract runs ``ExtractTable.run()`` in a thread and is paused mid-stream, after its first batch
(``MOZART_TEST_PAUSE_AT=source_mid_read``): the test then counts the extract's sessions in the server's own
view — PostgreSQL ``pg_stat_activity`` by a login role created for the test, MariaDB
``information_schema.PROCESSLIST`` by a database created for the test — and releases it. Before the native
readers released the snapshot's SQLAlchemy connection, a native extract held two: that one, idle in its
REPEATABLE READ transaction, and the reader's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import extract_helpers
import pytest
import sqlalchemy as sa
from extract_helpers import build, create_big_table, extract, paused_mid_read, read_back, sessions, unique, write_config

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors import MySQLConnector, PostgresConnector, Snapshot, SourceColumn
from mozart_luigi.errors import SourceError, SourceUnavailableError
from mozart_luigi.secrets import Secret

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
reader = extract_helpers.reader
ROWS = 300_000  # more than one driver batch: the stream is still open at the pause


@pytest.fixture
def pg_own_role(pg_schema) -> Iterator[tuple[sa.Engine, str, str]]:
    """A login role of its own that reads ``pg_schema``, so ``pg_stat_activity.usename`` singles out this
    test's sessions (other engineers' tests share the database). Yields (engine, schema, the role's URL)."""
    engine, schema = pg_schema
    role, password = unique("mz_conn"), unique("pw")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.exec_driver_sql(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO "{role}"')
    try:
        yield engine, schema, engine.url.set(username=role, password=password).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


def test_a_postgres_extract_holds_one_session(pg_own_role, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema, url = pg_own_role
    create_big_table(engine, schema, rows=ROWS)
    role = sa.make_url(url).username
    monkeypatch.setenv("MOZART_TEST_CONN_URL", url)
    source = {"kind": "postgresql", "url": "${MOZART_TEST_CONN_URL}", "schema": schema, "native": reader == "native"}
    write_config(tmp_path, monkeypatch, {"acme": {"source": source}}, {"big": {"mode": "full"}})
    monkeypatch.setenv("MOZART_BATCH_ROWS", "1000")
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = :role"
    named = sql + " AND application_name = 'mozart-luigi'"  # both readers name themselves
    with paused_mid_read(extract("acme", "big"), tmp_path, monkeypatch):
        during = sessions(engine, sql, settle_to=1, role=role)
        during_named = sessions(engine, named, settle_to=1, role=role)
    manifest, _ = read_back("acme", "big")
    assert during == during_named == 1
    assert manifest.row_count == manifest.source_count == ROWS
    assert manifest.details["reader"] == ("sqlalchemy" if reader == "sqlalchemy" else "adbc-postgresql")
    assert sessions(engine, sql, settle_to=0, role=role) == 0


@pytest.fixture
def mysql_own_db(stack_env: dict[str, str]) -> Iterator[tuple[sa.Engine, str]]:
    """A database of its own on the stack's MariaDB, so PROCESSLIST.DB singles out this test's sessions."""
    engine = sa.create_engine(stack_env["MOZART_TEST_MYSQL_URL"])
    name = unique("mz_conn")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
    try:
        yield engine, name
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        engine.dispose()


def test_a_mariadb_extract_holds_one_session(mysql_own_db, reader, tmp_path: Path, monkeypatch) -> None:
    engine, database = mysql_own_db
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE `{database}`.big (id int PRIMARY KEY, h char(32), updated_at datetime(6))")
        conn.exec_driver_sql(
            f"INSERT INTO `{database}`.big SELECT seq, md5(seq), TIMESTAMP('2026-11-25') "
            f"+ INTERVAL seq * 100000 MICROSECOND FROM seq_1_to_{ROWS}"
        )
    url = engine.url.set(database=database).render_as_string(hide_password=False)
    monkeypatch.setenv("MOZART_TEST_CONN_URL", url)
    source = {"kind": "mysql", "url": "${MOZART_TEST_CONN_URL}", "native": reader == "native"}
    tables = {"big": {"mode": "full"}, "window": {"source_name": "big", "mode": "incremental", "cursor": "updated_at"}}
    write_config(tmp_path, monkeypatch, {"globex": {"source": source}}, tables)
    monkeypatch.setenv("MOZART_BATCH_ROWS", "1000")
    sql = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = :db"
    for table in ("big", "window"):  # every row falls on DAY (ROWS * 100 ms < 24 h): the window reads all
        folder = tmp_path / table
        folder.mkdir()
        with paused_mid_read(extract("globex", table), folder, monkeypatch):
            during = sessions(engine, sql, settle_to=1, db=database)
        manifest, _ = read_back("globex", table)
        if reader == "native":
            # connectorx reads ahead in Rust and may have read every row and closed its connection before
            # the first batch reaches the pause (seen on a loaded 2-core CI box): 0 is then right. The fault
            # this guards against, the snapshot's connection held while connectorx reads, shows as 2.
            assert during <= 1, table
        else:
            assert during == 1, table
        assert manifest.row_count == manifest.source_count == ROWS
        assert manifest.details["reader"] == ("sqlalchemy" if reader == "sqlalchemy" else "connectorx-mysql")
    assert sessions(engine, sql, settle_to=0, db=database) == 0


# ------------------------------------------------------------------ native connects: terminal at once
@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_a_refused_password_fails_the_native_read_at_once(dialect: str, stack_env: dict[str, str]) -> None:
    """The native reader's own connect, with a wrong password: a terminal SourceError, no retry, no secret."""
    url = sa.make_url(stack_env["MOZART_TEST_PG_URL" if dialect == "postgresql" else "MOZART_TEST_MYSQL_URL"])
    wrong = url.set(password="not-the-pw-8812").render_as_string(hide_password=False)
    sleeps: list[float] = []
    cls = PostgresConnector if dialect == "postgresql" else MySQLConnector
    tenant = TenantConfig(id="acme", source=SourceConfig(kind=dialect, url=Secret(wrong)), tables=())
    connector = cls(tenant, sleep=sleeps.append, base_delay=0.01)
    table = TableConfig(name="t", source_name="t", mode="full")
    snap = Snapshot(connector, None, table, None, [SourceColumn("id", sa.Integer())])
    with pytest.raises(SourceError) as info:
        snap.reader.count(snap)
    assert not isinstance(info.value, SourceUnavailableError) and sleeps == []
    assert "not-the-pw-8812" not in str(info.value)
    assert ("password authentication failed" if dialect == "postgresql" else "ERROR 1045") in str(info.value)


@pytest.mark.parametrize("reader", ["sqlalchemy", "native"])
def test_the_mariadb_session_statements_reach_the_reading_connection(
    mysql_own_db, reader, tmp_path: Path, monkeypatch
) -> None:
    """The rows are read in the session the connector sets up (``time_zone`` UTC, a long ``net_write_timeout``):
    a view reports its own session's values. connectorx ignores an unknown keyword, so a misspelt one
    silently dropped them on the native path (on a server whose default time zone is not UTC, TIMESTAMP
    values would then be read in that zone)."""
    engine, database = mysql_own_db
    with engine.begin() as conn:
        # a view may not name a system variable; a function it calls may (evaluated in the reading session)
        conn.exec_driver_sql(
            f"CREATE FUNCTION `{database}`.tz() RETURNS varchar(64) NOT DETERMINISTIC RETURN @@session.time_zone"
        )
        conn.exec_driver_sql(
            f"CREATE FUNCTION `{database}`.nwt() RETURNS bigint NOT DETERMINISTIC RETURN @@session.net_write_timeout"
        )
        conn.exec_driver_sql(
            f"CREATE VIEW `{database}`.session_seen AS SELECT 1 AS id, `{database}`.tz() AS tz, "
            f"`{database}`.nwt() AS nwt"
        )
    url = engine.url.set(database=database).render_as_string(hide_password=False)
    monkeypatch.setenv("MOZART_TEST_CONN_URL", url)
    source = {"kind": "mysql", "url": "${MOZART_TEST_CONN_URL}", "native": reader == "native"}
    write_config(tmp_path, monkeypatch, {"globex": {"source": source}}, {"session_seen": {"mode": "full"}})
    assert build(extract("globex", "session_seen")).scheduling_succeeded
    manifest, data = read_back("globex", "session_seen")
    assert manifest.details["reader"] == ("sqlalchemy" if reader == "sqlalchemy" else "connectorx-mysql")
    assert data.column("tz").to_pylist() == ["+00:00"]
    assert [int(v) for v in data.column("nwt").to_pylist()] == [3600]
