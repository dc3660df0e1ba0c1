"""Parallel streams (tables.yaml ``parallel: N``): N key-range streams of one snapshot, on the stack's servers.

Each extract is paused after the first batch of its streams (``MOZART_TEST_PAUSE_AT=source_mid_read``; every
stream is open by then and the coordinator's connection closed): the test counts the sessions in the server's
own view, then inserts, updates and deletes rows from another connection — at the lowest keys, in the middle
and past the highest — and releases the extract. The parts hold exactly the rows of the snapshot: no row twice,
none missing, none of the changes, and the manifest's count is the table's at the snapshot.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import extract_helpers
import pytest
import sqlalchemy as sa
from extract_helpers import DAY, build, extract, lake, paused_mid_read, read_back, sessions, unique, write_config

from mozart_luigi.errors import ConfigError
from mozart_luigi.manifest import MANIFEST_NAME

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
reader = extract_helpers.reader
ROWS = 120_000
STREAMS = 3


CHANGES = [  # run by another connection while the streams are paused: none may reach the parts
    "INSERT INTO {t} (id, h) VALUES (-5, 'new-low'), (0, 'new-zero'), ({rows} + 10, 'new-high')",
    "DELETE FROM {t} WHERE id IN (1, 40000, 80001, {rows})",
    "UPDATE {t} SET h = 'changed' WHERE id IN (2, 40001, 80002, {rows} - 1)",
    "INSERT INTO {t} (id, h) SELECT id + {rows} * 2, 'copied' FROM {t} WHERE id <= 50000",
]


def assert_the_snapshot(manifest, data, *, streams: int) -> None:
    ids = data.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == ROWS, "no row twice, none missing"
    assert sorted(ids) == list(range(1, ROWS + 1))
    assert set(data.column("h").to_pylist()) == {"orig"}, "no changed or inserted row"
    assert manifest.row_count == manifest.source_count == ROWS
    assert manifest.checksums == {"id": str(ROWS * (ROWS + 1) // 2)}, "summed by the coordinator, in the snapshot"
    assert manifest.details["streams"] == streams and manifest.details["split_by"] == "id"
    names = [part.name for part in manifest.files]
    assert names == [f"part-{manifest.run_id}-{n:05d}.parquet" for n in range(len(names))]


# ------------------------------------------------------------------------------------------ PostgreSQL
@pytest.fixture
def pg_role(pg_schema) -> Iterator[tuple[sa.Engine, str, str]]:
    """A login role of its own (``pg_stat_activity.usename`` singles out this test's sessions)."""
    engine, schema = pg_schema
    role, password = unique("mz_par"), unique("pw")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.exec_driver_sql(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT ON TABLES TO "{role}"')
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".big (id bigint PRIMARY KEY, h text) WITH (autovacuum_enabled = off)'
        )
        conn.exec_driver_sql(f"INSERT INTO \"{schema}\".big SELECT g, 'orig' FROM generate_series(1, {ROWS}) g")
    try:
        yield engine, schema, engine.url.set(username=role, password=password).render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


def pg_config(tmp_path: Path, monkeypatch, schema: str, url: str, reader: str, **table) -> None:
    monkeypatch.setenv("MOZART_TEST_PAR_URL", url)
    source = {"kind": "postgresql", "url": "${MOZART_TEST_PAR_URL}", "schema": schema, "native": reader == "native"}
    spec = {"mode": "full", "primary_key": "id", "parallel": STREAMS, "parallel_min_rows": 0, "checksum": ["id"]}
    spec.update(table)
    write_config(tmp_path, monkeypatch, {"acme": {"source": source, "max_connections": 4}}, {"big": spec})
    monkeypatch.setenv("MOZART_BATCH_ROWS", "1000")
    monkeypatch.setenv("MOZART_PART_ROWS", "7000")


def test_postgres_streams_read_exactly_the_exported_snapshot(pg_role, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema, url = pg_role
    pg_config(tmp_path, monkeypatch, schema, url, reader)
    role = sa.make_url(url).username
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = :role"
    with paused_mid_read(extract("acme", "big"), tmp_path, monkeypatch):
        during = sessions(engine, sql, settle_to=STREAMS, role=role)
        with engine.begin() as conn:
            for change in CHANGES:
                conn.exec_driver_sql(change.format(t=f'"{schema}".big', rows=ROWS))
    assert during == STREAMS, "one session per stream (the coordinator's is closed once they started)"
    manifest, data = read_back("acme", "big")
    assert_the_snapshot(manifest, data, streams=STREAMS)
    assert manifest.details["reader"] == ("sqlalchemy" if reader == "sqlalchemy" else "adbc-postgresql")
    assert sessions(engine, sql, settle_to=0, role=role) == 0
    with engine.connect() as conn:  # the changes did land in the table: the extract did not see them
        assert conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}".big').scalar_one() == ROWS - 4 + 3 + 50_000


def test_postgres_small_table_stays_one_stream(pg_role, tmp_path: Path, monkeypatch) -> None:
    engine, schema, url = pg_role
    pg_config(tmp_path, monkeypatch, schema, url, "native", parallel_min_rows=ROWS + 1)
    assert build(extract("acme", "big")).scheduling_succeeded
    manifest, data = read_back("acme", "big")
    assert "streams" not in manifest.details and manifest.row_count == data.num_rows == ROWS


def test_postgres_streams_killed_mid_stream_converge_in_one_rerun(pg_role, reader, tmp_path: Path, monkeypatch) -> None:
    engine, schema, url = pg_role
    pg_config(tmp_path, monkeypatch, schema, url, reader)
    folder = lake().date_url("acme", "big", DAY)
    crashed = run_luigi(tmp_path, "acme", crash_at="mid_stream")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    leftovers = lake().list_files(folder)
    assert MANIFEST_NAME not in leftovers and leftovers

    assert build(extract("acme", "big")).scheduling_succeeded
    manifest, data = read_back("acme", "big")
    assert_the_snapshot(manifest, data, streams=STREAMS)
    assert lake().list_files(folder) == sorted([MANIFEST_NAME, *(f.name for f in manifest.files)])


def run_luigi(cwd: Path, tenant: str, *, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOZART_TEST_PAUSE")}
    if crash_at:
        env["MOZART_TEST_CRASH_AT"] = crash_at
    command = [sys.executable, "-m", "luigi", "--module", "mozart_luigi", "ExtractTable", "--tenant", tenant]
    command += ["--table", "big", "--date", DAY.isoformat(), "--local-scheduler"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False)


# --------------------------------------------------------------------------------------------- MariaDB
@pytest.fixture
def mysql_own(stack_env: dict[str, str]) -> Iterator[tuple[sa.Engine, str]]:
    """A database of its own (PROCESSLIST.DB singles out this test's sessions) holding ``big``."""
    engine = sa.create_engine(stack_env["MOZART_TEST_MYSQL_URL"])
    name = unique("mz_par")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
        conn.exec_driver_sql(f"CREATE TABLE `{name}`.big (id bigint PRIMARY KEY, h varchar(16))")
        conn.exec_driver_sql(f"INSERT INTO `{name}`.big SELECT seq, 'orig' FROM seq_1_to_{ROWS}")
    try:
        yield engine, name
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{name}`")
        engine.dispose()


def mysql_config(tmp_path: Path, monkeypatch, url: str, reader: str) -> None:
    monkeypatch.setenv("MOZART_TEST_PAR_URL", url)
    source = {"kind": "mysql", "url": "${MOZART_TEST_PAR_URL}", "native": reader == "native"}
    spec = {"mode": "full", "primary_key": "id", "parallel": STREAMS, "parallel_min_rows": 0, "checksum": ["id"]}
    write_config(tmp_path, monkeypatch, {"globex": {"source": source, "max_connections": 4}}, {"big": spec})
    monkeypatch.setenv("MOZART_BATCH_ROWS", "1000")
    monkeypatch.setenv("MOZART_PART_ROWS", "7000")


def test_mariadb_streams_read_one_consistent_snapshot(mysql_own, reader, tmp_path: Path, monkeypatch) -> None:
    engine, database = mysql_own
    mysql_config(tmp_path, monkeypatch, engine.url.set(database=database).render_as_string(hide_password=False), reader)
    sql = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = :db"
    with paused_mid_read(extract("globex", "big"), tmp_path, monkeypatch):
        during = sessions(engine, sql, settle_to=STREAMS, db=database)
        with engine.begin() as conn:
            for change in CHANGES:
                conn.exec_driver_sql(change.format(t=f"`{database}`.big", rows=ROWS))
    if reader == "native":
        # connectorx reads ahead in Rust and may have read its whole range and closed its connection before
        # the first batch reaches the pause (0 is then right); a stream never holds more than one
        assert during <= STREAMS
    else:
        assert during == STREAMS, "one session per stream (the coordinator's is closed once they started)"
    manifest, data = read_back("globex", "big")
    assert_the_snapshot(manifest, data, streams=STREAMS)
    assert manifest.details["reader"] == ("sqlalchemy" if reader == "sqlalchemy" else "connectorx-mysql")
    assert sessions(engine, sql, settle_to=0, db=database) == 0


def test_mariadb_without_reload_reads_in_one_stream(mysql_own, tmp_path: Path, monkeypatch, caplog) -> None:
    """No RELOAD privilege: no global read lock, so no parallel snapshot: one stream, logged, still exact."""
    engine, database = mysql_own
    user, password = unique("mzp")[:30], unique("pw")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
        conn.exec_driver_sql(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%%'")
    try:
        url = engine.url.set(username=user, password=password, database=database)
        mysql_config(tmp_path, monkeypatch, url.render_as_string(hide_password=False), "native")
        caplog.set_level(logging.WARNING, logger="mozart_luigi.connectors.parallel")
        extract("globex", "big").run()
        manifest, data = read_back("globex", "big")
        assert "streams" not in manifest.details
        assert manifest.row_count == manifest.source_count == data.num_rows == ROWS
        assert "FLUSH TABLES WITH READ LOCK" in caplog.text and "one stream" in caplog.text
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")


def test_mariadb_streams_killed_mid_stream_converge_in_one_rerun(mysql_own, tmp_path: Path, monkeypatch) -> None:
    engine, database = mysql_own
    mysql_config(
        tmp_path, monkeypatch, engine.url.set(database=database).render_as_string(hide_password=False), "native"
    )
    folder = lake().date_url("globex", "big", DAY)
    crashed = run_luigi(tmp_path, "globex", crash_at="mid_stream")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert MANIFEST_NAME not in lake().list_files(folder)
    with engine.connect() as conn:  # the global read lock died with the process
        conn.exec_driver_sql(f"INSERT INTO `{database}`.big VALUES ({ROWS} + 1, 'orig')")
        conn.exec_driver_sql(f"DELETE FROM `{database}`.big WHERE id = {ROWS} + 1")
        conn.commit()

    assert build(extract("globex", "big")).scheduling_succeeded
    manifest, data = read_back("globex", "big")
    assert_the_snapshot(manifest, data, streams=STREAMS)
    assert lake().list_files(folder) == sorted([MANIFEST_NAME, *(f.name for f in manifest.files)])


def test_postgres_split_by_a_nullable_column_takes_every_row_once(pg_role, tmp_path: Path, monkeypatch) -> None:
    """``split_by`` on a nullable, non-unique column with NULLs and negatives: the ranges still take every row
    exactly once (NULL keys in the first stream)."""
    engine, schema, url = pg_role
    with engine.begin() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{schema}".big ADD COLUMN grp int')
        conn.exec_driver_sql(f'UPDATE "{schema}".big SET grp = CASE WHEN id %% 7 = 0 THEN NULL ELSE id %% 100 - 50 END')
    pg_config(tmp_path, monkeypatch, schema, url, "native", primary_key=[], split_by="grp")
    assert build(extract("acme", "big")).scheduling_succeeded
    manifest, data = read_back("acme", "big")
    ids = data.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == ROWS == manifest.row_count == manifest.source_count
    assert manifest.details["streams"] == STREAMS and manifest.details["split_by"] == "grp"
    assert data.column("grp").null_count == ROWS // 7


def test_postgres_split_column_must_be_an_integer(pg_role, tmp_path: Path, monkeypatch) -> None:
    engine, schema, url = pg_role
    pg_config(tmp_path, monkeypatch, schema, url, "native", split_by="h")
    with pytest.raises(ConfigError) as info:
        extract("acme", "big").run()
    assert "tables.big.split_by" in str(info.value) and "not an integer type" in str(info.value)
    assert MANIFEST_NAME not in lake().list_files(lake().date_url("acme", "big", DAY))
