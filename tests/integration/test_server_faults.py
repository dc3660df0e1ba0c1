"""Server faults on the real stack: a service stops, is killed or restarts in the middle of a task.

Pass criteria for each: no row lost or doubled, a clear error naming the component, exit 30 (Luigi's
``task_failed``), and the next run converges. The task runs in a fresh worker process that pauses at the
critical step (``MOZART_TEST_PAUSE_AT``, see :func:`mozart_luigi.parquet.pause_point`); the test breaks the
service while it is held there, then lets it go: the interleaving is forced, never left to timing. Every
service is brought back in a ``finally``, so a failing test leaves the stack up for the next ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_load_trino as load_cases
from extract_helpers import mysql_tenant, pg_tenant
from test_load_trino import Stack

from mozart_luigi.config import get_config

pytestmark = pytest.mark.integration
pg_schema = load_cases.pg_schema
mysql_db = load_cases.mysql_db
stack = load_cases.stack
REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "scripts" / "stack"
DAY = load_cases.DAY
ROWS = 3000


def _service(action: str, name: str) -> None:
    done = subprocess.run(
        [str(STACK), action, name], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"scripts/stack {action} {name}: {done.stderr[-3000:]}"


class Held:
    """A LoadIceberg worker (fresh process) held at a pause point until :meth:`release`."""

    def __init__(self, stack: Stack, table: str, point: str, tmp_path: Path) -> None:
        self.folder = tmp_path / f"pause-{point}"
        self.folder.mkdir(exist_ok=True)
        self.point = point
        env = {
            **os.environ,
            "MOZART_TEST_PAUSE_AT": point,
            "MOZART_TEST_PAUSE_DIR": str(self.folder),
            "MOZART_PART_ROWS": "500",
            "MOZART_BATCH_ROWS": "250",
        }
        argv = [
            sys.executable,
            "-m",
            "luigi",
            "--module",
            "mozart_luigi",
            "LoadIceberg",
            "--tenant",
            stack.tenant,
            "--table",
            table,
            "--date",
            DAY.isoformat(),
            "--local-scheduler",
        ]
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not (self.folder / f"{point}.reached").exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited before {point}: {self.proc.communicate()[1][-4000:]}")
            assert time.monotonic() < deadline, f"the worker never reached {point}"
            time.sleep(0.05)

    def release(self) -> tuple[int, str]:
        (self.folder / f"{self.point}.go").touch()
        out, err = self.proc.communicate(timeout=600)
        return self.proc.returncode, out + err


def _source(engine, schema: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".events (id int PRIMARY KEY, note text)')
        conn.exec_driver_sql(f"INSERT INTO \"{schema}\".events SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g")


@pytest.fixture
def events(stack: Stack, pg_schema) -> Iterator[Stack]:
    engine, schema = pg_schema
    _source(engine, schema)
    stack.configure(pg_tenant(schema), {"events": {"mode": "full"}})
    yield stack


def _converges(stack: Stack, table: str = "events", rows: int = ROWS) -> None:
    """One more run succeeds, and Iceberg holds every source row exactly once."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "luigi",
            "--module",
            "mozart_luigi",
            "LoadIceberg",
            "--tenant",
            stack.tenant,
            "--table",
            table,
            "--date",
            DAY.isoformat(),
            "--local-scheduler",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert stack.rows(table, "count(*), count(DISTINCT id), min(id), max(id)") == [[rows, rows, 1, rows]]
    assert stack.manifest(table).row_count == rows


def _failed_naming(code: int, output: str, *words: str) -> None:
    assert code == 30, output[-4000:]
    assert any(word in output for word in words), f"no mention of {words}: {output[-4000:]}"


def _break_while_held(stack: Stack, point: str, action: str, service: str, tmp_path: Path) -> tuple[int, str]:
    """Hold a load at ``point``, ``action`` (stop or kill) ``service``, let the load go, bring it back."""
    held = Held(stack, "events", point, tmp_path)
    try:
        _service(action, service)
        return held.release()
    finally:
        _service("start", service)


@pytest.mark.parametrize(
    ("point", "service", "words"),
    [
        ("mid_stream", "s3", ("s3://", "S3")),  # S3 stopped during an extract
        ("before_copy", "s3", ("S3 ", "s3://")),  # S3 stopped during a load
        ("before_commit", "iceberg-rest", ("Iceberg catalog", "commit")),  # the catalog stopped at the commit
    ],
)
def test_a_storage_service_stopped_mid_task(
    events: Stack, tmp_path: Path, point: str, service: str, words: tuple[str, ...]
) -> None:
    code, output = _break_while_held(events, point, "stop", service, tmp_path)
    _failed_naming(code, output, *words)
    assert events.warehouse.count_partition(events.tenant, "events", DAY) == 0  # nothing committed
    _converges(events)


def test_trino_killed_during_a_load_does_not_stop_it(events: Stack, tmp_path: Path) -> None:
    """The load commits through the Iceberg catalog, not through Trino: Trino dying mid-load costs nothing."""
    code, output = _break_while_held(events, "before_commit", "kill", "trino", tmp_path)
    assert code == 0, output[-4000:]
    assert events.rows("events", "count(*), count(DISTINCT id)") == [[ROWS, ROWS]]


@pytest.mark.parametrize("database", ["postgres", "mysql"])
def test_a_source_restarted_during_an_extract(stack: Stack, pg_schema, mysql_db, database: str, tmp_path) -> None:
    if database == "postgres":
        engine, schema = pg_schema
        _source(engine, schema)
        stack.configure(pg_tenant(schema), {"events": {"mode": "full"}})
    else:
        engine, prefix = mysql_db
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE `{prefix}events` (id int PRIMARY KEY, note text)")
            conn.exec_driver_sql(
                f"INSERT INTO `{prefix}events` VALUES (%s, %s)", [(n, f"n{n}") for n in range(1, ROWS + 1)]
            )
        stack.configure(mysql_tenant(), {"events": {"mode": "full", "source_name": f"{prefix}events"}})
    held = Held(stack, "events", "mid_stream", tmp_path)
    try:
        _service("stop", database)
        _service("start", database)
        code, output = held.release()
    finally:
        _service("start", database)
        engine.dispose()  # the fixture's pooled connections died with the server
    # a reader that had already fetched every row finishes exactly; one that had not fails naming the source
    assert code in (0, 30), output[-4000:]
    if code == 30:
        _failed_naming(code, output, "tenant '" + stack.tenant + "'")
    _converges(stack)


def test_the_lake_filesystem_full(local: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Profile local, the lake on a 1 MiB tmpfs: the extract fails naming the lake file, publishes nothing;
    with room again (the tmpfs unmounted, the same folder on the big disk) the rerun converges."""
    import sqlite3

    from mozart_luigi.config import reset_config_cache
    from mozart_luigi.lake import Lake
    from mozart_luigi.warehouse import open_warehouse

    lake_dir = tmp_path / "small-lake"
    lake_dir.mkdir()
    source = tmp_path / "big.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO blobs VALUES (?, ?)", ((i, os.urandom(300).hex()) for i in range(6000)))
    config = tmp_path / "config"
    config.mkdir()
    (config / "tenants.yaml").write_text(f"tenants:\n  shop:\n    source: {{kind: sqlite, path: '{source}'}}\n")
    (config / "tables.yaml").write_text("tables:\n  blobs: {mode: full}\n")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config))
    monkeypatch.setenv("MOZART_LAKE_URL", lake_dir.as_uri())
    reset_config_cache()
    argv = [
        sys.executable,
        "-m",
        "luigi",
        "--module",
        "mozart_luigi",
        "LoadIceberg",
        "--tenant",
        "shop",
        "--table",
        "blobs",
        "--date",
        DAY.isoformat(),
        "--local-scheduler",
    ]
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(lake_dir)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        full = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
        lake = Lake.from_settings(get_config().settings)
        assert not lake.exists(lake.manifest_url("shop", "blobs", DAY))  # nothing published
    finally:
        subprocess.run(["umount", str(lake_dir)], check=False)
    _failed_naming(full.returncode, full.stdout + full.stderr, "No space left")
    assert str(lake_dir) in full.stderr  # the error names the lake file
    again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-4000:]
    with open_warehouse(get_config().settings) as warehouse:
        assert warehouse.count_partition("shop", "blobs", DAY) == 6000


def test_trino_killed_during_a_dbt_build(stack_env: dict[str, str], tmp_path: Path) -> None:
    """dbt has built a node when Trino is killed -9: DbtRun fails naming the Trino endpoint (exit 30), no
    marker; with Trino back the next run builds the marts and completes."""
    from pipeline_helpers import cleanup, stack_setup, unique

    setup = stack_setup(tmp_path, stack_env, unique("fault"), ["acme"])
    pause = tmp_path / "pause"
    pause.mkdir()
    argv = [str(REPO / ".venv" / "bin" / "mozart"), "run", "--date", "2026-11-28", "--local-scheduler"]
    env = {**setup.env, "MOZART_TEST_PAUSE_AT": "dbt_mid_build", "MOZART_TEST_PAUSE_DIR": str(pause)}
    try:
        worker = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 900
        while not (pause / "dbt_mid_build.reached").exists():
            assert worker.poll() is None, worker.communicate()[1][-4000:]
            assert time.monotonic() < deadline, "dbt never built a node"
            time.sleep(0.2)
        try:
            _service("kill", "trino")
            (pause / "dbt_mid_build.go").touch()
            out, err = worker.communicate(timeout=900)
        finally:
            _service("start", "trino")
        assert worker.returncode == 30, (out + err)[-4000:]
        assert "DbtRun" in out + err and any(w in out + err for w in ("8080", "Trino", "trino"))
        again = subprocess.run(argv, cwd=REPO, env=setup.env, capture_output=True, text=True, timeout=1200, check=False)
        assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
        assert "0 missing, 0 failed" in again.stdout
    finally:
        cleanup(setup)
