"""Helpers for the ExtractTable integration tests: config in tmp_path, lakes, source fixtures, read-back."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import luigi
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.connectors.snapshot import PAUSE_MID_READ
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.settings import Settings
from mozart_luigi.tasks.extract import ExtractTable

DAY = dt.date(2026, 11, 25)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def write_config(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tenants: dict[str, Any],
    tables: dict[str, Any],
    lake_url: str | None = None,
) -> Path:
    """Write tenants.yaml / tables.yaml into tmp_path/config and point MOZART_CONFIG_DIR at it."""
    config_dir = tmp_path / "config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump({"tenants": tenants}), encoding="utf-8")
    (config_dir / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}), encoding="utf-8")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOZART_LAKE_URL", lake_url or (tmp_path / "lake").as_uri())
    reset_config_cache()
    return config_dir


def build(*tasks: luigi.Task, workers: int = 1) -> luigi.execution_summary.LuigiRunResult:
    """``luigi.build`` with the local scheduler.

    luigi 3.8 warns that the repo's ``luigi.cfg`` key ``[core] default-scheduler-host`` is "not consumed"
    (it is, through a config_path alias); with ``filterwarnings = error`` that warning would abort the build.
    """
    luigi.task_register.Register.clear_instance_cache()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=luigi.parameter.UnconsumedParameterWarning)
        return luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, workers=workers)


def lake() -> Lake:
    return Lake.from_settings(get_config().settings)


def read_back(tenant: str, table: str, date: dt.date = DAY) -> tuple[Manifest, pa.Table]:
    """The manifest and the rows of exactly the parts it lists."""
    the_lake = lake()
    manifest = the_lake.read_manifest(tenant, table, date)
    folder = the_lake.date_url(tenant, table, date)
    tables = []
    for part in manifest.files:
        with the_lake.filesystem.open_input_file(the_lake.fs_path(f"{folder}/{part.name}")) as f:
            tables.append(pq.read_table(f, columns=manifest.schema.names))  # the source columns
    data = pa.concat_tables(tables) if tables else manifest.schema.empty_table()
    return manifest, data


def extract(tenant: str, table: str, date: dt.date = DAY) -> ExtractTable:
    return ExtractTable(tenant=tenant, table=table, date=date)


# ------------------------------------------------------------------------------------------ sources


@pytest.fixture
def pg_schema(stack_env: dict[str, str]) -> Iterator[tuple[sa.Engine, str]]:
    """A unique schema in the stack's ``mozart_test`` PostgreSQL database, dropped afterwards."""
    engine = sa.create_engine(stack_env["MOZART_TEST_PG_URL"])
    schema = unique("mz")
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield engine, schema
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture
def mysql_db(stack_env: dict[str, str]) -> Iterator[tuple[sa.Engine, str]]:
    """The stack's ``mozart_test`` MariaDB database and a unique table prefix; those tables are dropped."""
    engine = sa.create_engine(stack_env["MOZART_TEST_MYSQL_URL"], connect_args={"charset": "utf8mb4"})
    prefix = unique("mz")
    try:
        yield engine, prefix
    finally:
        with engine.begin() as conn:
            names = [r[0] for r in conn.exec_driver_sql(f"SHOW TABLES LIKE '{prefix}%%'")]
            for name in names:
                conn.exec_driver_sql(f"DROP TABLE `{name}`")
        engine.dispose()


@pytest.fixture(params=["sqlalchemy", "native"])
def reader(request: pytest.FixtureRequest) -> str:
    """Run a test through the SQLAlchemy row path and through the native Arrow reader (``source.native``)."""
    return request.param


def pg_tenant(schema: str, reader: str = "native", **extra: Any) -> dict[str, Any]:
    source = {"kind": "postgresql", "url": "${MOZART_TEST_PG_URL}", "schema": schema}
    return {"source": {**source, "native": reader == "native"}, **extra}


def mysql_tenant(reader: str = "native", **extra: Any) -> dict[str, Any]:
    return {
        "source": {"kind": "mysql", "url": "${MOZART_TEST_MYSQL_URL}", "native": reader == "native"},
        **extra,
    }


def assert_reader(manifest: Manifest, reader: str) -> None:
    """The SQLAlchemy path really ran when asked for; the native path may fall back to it (never silently
    changing a type: the schema is checked on every batch)."""
    if reader == "sqlalchemy":
        assert manifest.details["reader"] == "sqlalchemy"


@pytest.fixture(params=["local", "s3"])
def lake_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A local folder lake, or a unique prefix of the stack's ``s3://raw`` bucket (removed afterwards)."""
    if request.param == "local":
        yield (tmp_path / "lake").as_uri()
        return
    request.getfixturevalue("stack_env")
    url = f"s3://raw/{unique('mz-test')}"
    yield url
    the_lake = Lake(url, Settings.from_env(os.environ, []))
    the_lake.filesystem.delete_dir_contents(the_lake.fs_path(url), missing_dir_ok=True)


def create_big_table(engine: sa.Engine, schema: str, rows: int = 2500) -> None:
    """``{schema}.big(id, h)`` with ``rows`` rows: enough for several batches and parts."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, {int(rows)}) g'
        )


# ------------------------------------------------------------------ an extract held mid-read
@contextmanager
def paused_mid_read(task, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """Run ``task`` in a thread until it pauses after its first batch; on exit release it and wait."""
    monkeypatch.setenv("MOZART_TEST_PAUSE_AT", PAUSE_MID_READ)
    monkeypatch.setenv("MOZART_TEST_PAUSE_DIR", str(folder))
    failures: list[BaseException] = []

    def run() -> None:
        try:
            task.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failures.append(exc)

    thread = threading.Thread(target=run, name="paused-extract")
    thread.start()
    deadline = time.monotonic() + 120
    try:
        while not (folder / f"{PAUSE_MID_READ}.reached").exists():
            assert thread.is_alive(), f"the extract ended before its pause: {failures}"
            assert time.monotonic() < deadline, "the extract did not reach its pause in 120 s"
            time.sleep(0.05)
        yield failures
    finally:
        (folder / f"{PAUSE_MID_READ}.go").touch()
        thread.join(120)
    assert not thread.is_alive() and not failures, failures


def sessions(engine: sa.Engine, sql: str, *, settle_to: int | None = None, **params: str) -> int:
    """The session count; with ``settle_to``, asked again (up to 5 s) until it is that number: a connection
    just closed by the client may linger a moment in the server's view, one held open does not."""
    deadline = time.monotonic() + 5
    while True:
        with engine.connect() as conn:
            count = int(conn.execute(sa.text(sql), params).scalar_one())
        if settle_to is None or count == settle_to or time.monotonic() > deadline:
            return count
        time.sleep(0.1)
