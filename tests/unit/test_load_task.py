"""LoadIceberg through Luigi on the local profile: SQLite source -> local lake -> DuckDB (no services needed).

The Trino twin of these tests is ``tests/integration/test_load_trino.py``.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest
from local_pipeline import build, configure_local
from luigi.tools.range import RangeDaily

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.errors import LoadError, VerificationError, WarehouseUnavailableError
from mozart_luigi.lake import Lake
from mozart_luigi.targets import MarkerTarget, clear_marker_cache
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.tasks.load import LoadIceberg, maintenance_due
from mozart_luigi.warehouse import open_warehouse
from mozart_luigi.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 25)
TENANT = "shop"


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Config with one SQLite tenant, a local lake and a DuckDB file, all in tmp_path."""
    source = tmp_path / "shop.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute(
            "CREATE TABLE orders (order_id INTEGER PRIMARY KEY, amount NUMERIC(10,2), note TEXT, updated_at TIMESTAMP)"
        )
        rows = [(i, f"{i}.25", f"n{i}", f"2026-11-25 10:00:0{i}") for i in range(1, 4)]
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)
    tables = {"orders": {"mode": "full", "primary_key": ["order_id"]}}
    configure_local(tmp_path, monkeypatch, tenant=TENANT, source=source, tables=tables)
    yield source
    clear_marker_cache()


def _rows(date: dt.date = DAY) -> list[tuple]:
    warehouse = DuckDBWarehouse.from_settings(get_config().settings)
    return warehouse.query(
        f'SELECT order_id, amount, note FROM "{TENANT}"."orders" WHERE _mozart_date = ? ORDER BY 1', [date]
    )


def test_extract_then_load_and_a_second_run_does_nothing(local: Path):
    first = build(LoadIceberg(tenant=TENANT, table="orders", date=DAY))
    assert first.scheduling_succeeded, first.summary_text
    expected = [(1, "1.25", "n1"), (2, "2.25", "n2"), (3, "3.25", "n3")]
    assert [(r[0], str(r[1]), r[2]) for r in _rows()] == expected
    with open_warehouse(get_config().settings) as warehouse:
        (marker,) = warehouse.markers(TENANT, DAY)
    assert marker.rows == 3 and marker.table == "orders" and marker.details["files"]
    with sqlite3.connect(local) as conn:
        conn.execute("INSERT INTO orders VALUES (9, 9.99, 'late', '2026-11-25 12:00:00')")
    second = build(LoadIceberg(tenant=TENANT, table="orders", date=DAY))
    assert second.scheduling_succeeded and "ran successfully" not in second.summary_text
    assert len(_rows()) == 3
    with open_warehouse(get_config().settings) as warehouse:
        assert warehouse.markers(TENANT, DAY)[0].finished_at == marker.finished_at


def test_forced_rerun_replaces_exactly_that_date(local: Path):
    other = DAY - dt.timedelta(days=1)
    loads = [LoadIceberg(tenant=TENANT, table="orders", date=d) for d in (other, DAY)]
    assert build(*loads).scheduling_succeeded
    with sqlite3.connect(local) as conn:
        conn.execute("DELETE FROM orders WHERE order_id = 1")
    lake = Lake.from_settings(get_config().settings)
    lake.delete_file(lake.manifest_url(TENANT, "orders", DAY))  # force: the extract and the load rerun
    task = LoadIceberg(tenant=TENANT, table="orders", date=DAY)
    with open_warehouse(get_config().settings) as warehouse:
        warehouse.delete_markers(TENANT, DAY, [task.task_id])
    assert build(task).scheduling_succeeded
    assert [r[0] for r in _rows()] == [2, 3]
    assert [r[0] for r in _rows(other)] == [1, 2, 3]


def test_count_mismatch_fails_without_a_marker(local: Path):
    assert build(ExtractTable(tenant=TENANT, table="orders", date=DAY)).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    manifest = lake.read_manifest(TENANT, "orders", DAY)
    from dataclasses import replace

    lake.write_manifest(replace(manifest, row_count=manifest.row_count + 1))  # a manifest that lies
    task = LoadIceberg(tenant=TENANT, table="orders", date=DAY)
    with pytest.raises(VerificationError, match="row counts disagree: parts 3, row_count 4.*invalidated"):
        task.run()
    assert not task.complete()
    with open_warehouse(get_config().settings) as warehouse:  # refused before any commit: nothing loaded
        assert warehouse.count_partition(TENANT, "orders", DAY) == 0
    assert not lake.exists(lake.manifest_url(TENANT, "orders", DAY))  # the next run extracts again


def test_output_is_pure(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MOZART_CONFIG_DIR", "/nonexistent")  # output() must not read config or connect
    task = LoadIceberg(tenant="acme", table="orders", date=DAY)
    target = task.output()
    assert isinstance(target, MarkerTarget) and target.task_id == task.task_id
    assert task.requires() == ExtractTable(tenant="acme", table="orders", date=DAY)


def test_one_writer_per_table(local: Path):
    resources = LoadIceberg(tenant=TENANT, table="orders", date=DAY).resources
    assert resources[f"iceberg_{TENANT}_orders"] == 1
    other = LoadIceberg(tenant=TENANT, table="customers", date=DAY).resources
    assert other[f"iceberg_{TENANT}_customers"] == 1


def test_bulk_complete_answers_a_range_in_one_go(local: Path):
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    assert build(*(LoadIceberg(tenant=TENANT, table="orders", date=d) for d in days[:2])).scheduling_succeeded
    clear_marker_cache()
    partial = functools.partial(LoadIceberg, tenant=TENANT, table="orders")
    assert LoadIceberg.bulk_complete.__func__(partial, days) == days[:2]
    assert LoadIceberg(tenant=TENANT, table="orders", date=days[0]).complete()  # served by the cache
    backfill = RangeDaily(
        of=LoadIceberg,
        of_params={"tenant": TENANT, "table": "orders"},
        param_name="date",
        start=days[0],
        stop=days[-1] + dt.timedelta(days=1),
        reverse=False,
    )
    assert [t.date for t in backfill.requires()] == [days[2]]


def test_a_crash_between_delete_and_insert_converges(local: Path):
    assert build(LoadIceberg(tenant=TENANT, table="orders", date=DAY)).scheduling_succeeded
    task = LoadIceberg(tenant=TENANT, table="orders", date=DAY)
    with open_warehouse(get_config().settings) as warehouse:
        warehouse.delete_markers(TENANT, DAY, [task.task_id])
    script = (
        "import luigi; from mozart_luigi.tasks.load import LoadIceberg; import datetime as dt; "
        f"luigi.build([LoadIceberg(tenant={TENANT!r}, table='orders', date=dt.date(2026, 11, 25))], "
        "local_scheduler=True)"
    )
    env = {**os.environ, "MOZART_TEST_CRASH_AT": "after_delete"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not task.complete()
    assert len(_rows()) == 3  # DuckDB rolled the delete back; on Trino the partition may be empty here
    assert build(task).scheduling_succeeded
    assert len(_rows()) == 3 and task.complete()


_HOLD = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
    "time.sleep(float(sys.argv[2]))"
)


def _holding(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that holds the DuckDB file (its single-writer lock) for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_duckdb_waits_for_another_process_holding_the_file(tmp_path: Path):
    path = tmp_path / "warehouse.duckdb"
    with _holding(path, 1.5) as holder:
        assert DuckDBWarehouse(path).count_partition(TENANT, "orders", DAY) == 0  # waited, then answered
        assert holder.wait(timeout=30) == 0
    with _holding(path, 10) as blocker:
        try:
            with pytest.raises(WarehouseUnavailableError, match="locked by another process"):
                DuckDBWarehouse(path, lock_attempts=2, lock_delay=0.05).count_partition(TENANT, "orders", DAY)
        finally:
            blocker.kill()


def test_maintenance_is_due_once_a_week_per_table_on_a_day_spread_by_name():
    week = [DAY + dt.timedelta(days=i) for i in range(7)]
    for table in ("orders", "customers", "order_items", "t042"):
        due = [day for day in week if maintenance_due(table, day)]
        assert len(due) == 1, (table, due)
        assert maintenance_due(table, due[0] + dt.timedelta(days=7))
    days = {next(d for d in week if maintenance_due(t, d)) for t in (f"t{i:03d}" for i in range(50))}
    assert len(days) == 7  # 50 tables do not all expire on the same day


def test_a_failed_snapshot_expiry_is_logged_and_the_load_stands(local: Path, monkeypatch, caplog):
    due = next(d for d in (DAY + dt.timedelta(days=i) for i in range(7)) if maintenance_due("orders", d))
    calls: list[tuple[str, str, int]] = []

    def refuse(self, tenant: str, table: str, retention_days: int) -> int:
        calls.append((tenant, table, retention_days))
        raise LoadError("catalog said no", tenant=tenant, table=table)

    monkeypatch.setattr(DuckDBWarehouse, "expire_snapshots", refuse)
    monkeypatch.setenv("MOZART_SNAPSHOT_RETENTION_DAYS", "3")
    reset_config_cache()
    not_due = due + dt.timedelta(days=1)
    with caplog.at_level("WARNING", logger="mozart_luigi.tasks.load"):
        result = build(
            LoadIceberg(tenant=TENANT, table="orders", date=not_due),
            LoadIceberg(tenant=TENANT, table="orders", date=due),
        )
    assert result.scheduling_succeeded, result.summary_text
    assert calls == [(TENANT, "orders", 3)]  # only the due date
    assert "snapshot expiry skipped" in caplog.text and "catalog said no" in caplog.text
    assert LoadIceberg(tenant=TENANT, table="orders", date=due).complete()


class _NeedsOrders(luigi.Task):
    """A downstream task (as DbtRun is) whose run-time dependency check reads LoadIceberg's marker."""

    date = luigi.DateParameter()

    def requires(self) -> LoadIceberg:
        return LoadIceberg(tenant=TENANT, table="orders", date=self.date)

    def run(self) -> None:
        return None


def test_a_cached_missing_is_asked_again_at_the_run_time_dependency_check(local: Path):
    """Forced interleaving of two workers: this process caches "missing" while building its graph, another
    process finishes the load, then this process's Luigi run-time check (TaskProcess.run, as a worker runs
    it before DbtRun) must see it done, not fail with "Unfulfilled dependency at run time"."""
    clear_marker_cache()
    load = LoadIceberg(tenant=TENANT, table="orders", date=DAY)
    assert not load.complete()  # cached: "missing"
    script = (
        "import luigi, datetime as dt; from mozart_luigi.tasks.load import LoadIceberg; "
        f"ok = luigi.build([LoadIceberg(tenant={TENANT!r}, table='orders', date=dt.date(2026, 11, 25))], "
        "local_scheduler=True); raise SystemExit(0 if ok else 1)"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300, check=False)
    assert other.returncode == 0, other.stderr[-2000:]
    assert not load.complete()  # outside a run-time check the graph-time answer may still be served
    results: list[tuple] = []

    class _Queue:
        def put(self, item: tuple) -> None:
            results.append(item)

    downstream = _NeedsOrders(date=DAY)
    process = luigi.worker.TaskProcess(
        downstream,
        "w1",
        _Queue(),
        status_reporter=luigi.worker.TaskStatusReporter(luigi.scheduler.Scheduler(), downstream.task_id, "w1", None),
        check_unfulfilled_deps=True,
    )
    process.run()
    (task_id, status, explanation, *_rest) = results[0]
    assert task_id == downstream.task_id and status == "DONE", explanation


def test_a_task_run_by_a_forked_worker_is_complete_for_the_scheduling_process_at_once(local: Path):
    """Luigi with workers > 1 runs each task in a forked process; the scheduling process cached "missing"
    while building the graph. Right after the build (well within the cache's TTL) it must answer "done",
    and a second build in the same process must not run the task again."""
    clear_marker_cache()
    loads = [LoadIceberg(tenant=TENANT, table="orders", date=DAY - dt.timedelta(days=n)) for n in range(2)]
    pids = local.parent / "pids"
    pids.mkdir()

    def started(task: luigi.Task) -> None:  # runs in the task's process
        (pids / f"{os.getpid()}-{task.task_id}").touch()

    callbacks = luigi.Task._event_callbacks.setdefault(LoadIceberg, {}).setdefault(luigi.Event.START, set())
    callbacks.add(started)
    try:
        luigi.task_register.Register.clear_instance_cache()
        assert luigi.build(loads, local_scheduler=True, workers=2)
    finally:
        callbacks.discard(started)
    ran_in = {int(name.split("-")[0]) for name in os.listdir(pids)}
    assert len(os.listdir(pids)) == 2 and os.getpid() not in ran_in  # both loads ran in forked processes
    assert all(MarkerTarget("LoadIceberg", t.task_id, TENANT, t.date).exists() for t in loads)
    assert all(t.complete() for t in loads)
    again = luigi.build(loads, local_scheduler=True, detailed_summary=True)
    assert again.scheduling_succeeded and "ran successfully" not in again.summary_text, again.summary_text


def test_a_garbage_manifest_names_its_file_and_is_invalidated(local: Path):
    assert build(ExtractTable(tenant=TENANT, table="orders", date=DAY)).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    url = lake.manifest_url(TENANT, "orders", DAY)
    lake.write_text_atomic(url, "{not json")
    task = LoadIceberg(tenant=TENANT, table="orders", date=DAY)
    with pytest.raises(VerificationError) as info:
        task.run()
    message = str(info.value)
    assert f"tenant '{TENANT}'" in message and "table 'orders'" in message and str(DAY) in message
    assert url in message and "not valid JSON" in message and "invalidated" in message
    assert not lake.exists(url)  # moved aside: the next run extracts again, nobody deletes a file by hand
    assert build(task).scheduling_succeeded and len(_rows()) == 3


def test_a_column_dropped_at_the_source_then_restored_converges(local: Path):
    """The day is extracted while the source lacks a column the table has: the load refuses the drift and
    invalidates that extract; once the source is fixed, the next run re-extracts and loads the day."""
    other = DAY - dt.timedelta(days=1)
    assert build(LoadIceberg(tenant=TENANT, table="orders", date=other)).scheduling_succeeded
    with sqlite3.connect(local) as conn:
        conn.execute("ALTER TABLE orders DROP COLUMN note")
    first = build(LoadIceberg(tenant=TENANT, table="orders", date=DAY))
    assert not first.scheduling_succeeded or "failed" in first.summary_text
    lake = Lake.from_settings(get_config().settings)
    assert not lake.exists(lake.manifest_url(TENANT, "orders", DAY))  # invalidated, not frozen
    with sqlite3.connect(local) as conn:
        conn.execute("ALTER TABLE orders ADD COLUMN note TEXT")
        conn.execute("UPDATE orders SET note = 'n' || order_id")
    assert build(LoadIceberg(tenant=TENANT, table="orders", date=DAY)).scheduling_succeeded
    assert [r[2] for r in _rows()] == ["n1", "n2", "n3"]
