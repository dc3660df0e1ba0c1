"""Local profile: ExtractTable from a SQLite source into a file:// lake, through luigi.build, twice."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from decimal import Decimal
from pathlib import Path

import luigi
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.errors import TypeMappingError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import MANIFEST_NAME
from mozart_luigi.parquet import PartWriter
from mozart_luigi.tasks.extract import ExtractTable

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 25)
TABLES = {
    "orders": {"mode": "incremental", "cursor": "updated_at", "primary_key": ["order_id"]},
    "Order Items": {"mode": "full"},
    "products": {"mode": "full", "exclude": ["secret_note"]},
    "empty": {"mode": "full"},
}


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite source with odd but legal SQLite data, config in tmp_path, a file:// lake."""
    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.executescript("""
            CREATE TABLE orders (order_id INTEGER PRIMARY KEY, amount NUMERIC(10, 2), note TEXT,
                                 updated_at TIMESTAMP, placed DATE, paid BOOLEAN, raw BLOB);
            CREATE TABLE "Order Items" ("select" INTEGER, "Unit Price" DECIMAL(8, 3), "from" VARCHAR(20));
            CREATE TABLE products (id INTEGER, name TEXT, secret_note TEXT, ratio REAL, t TIME);
            CREATE TABLE empty (id INTEGER, at DATETIME, amount NUMERIC(12, 4));
        """)
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (1, 12.34, "late 😀", "2026-11-24 23:59:59.999999", "2026-11-24", 1, b"\x00\x01"),
                (2, "7.10", "exactly midnight", "2026-11-25 00:00:00", "2026-11-25", 0, None),
                (3, 5, "ISO T and Z", "2026-11-25T13:14:15.5Z", "2026-11-25", "true", None),
                (4, 0.1, "offset", "2026-11-26T00:30:00+02:00", "2026-11-26", None, b""),
                (5, None, "next day", "2026-11-26 00:00:00", "2026-11-26", 0, None),
            ],
        )
        db.execute("""INSERT INTO "Order Items" VALUES (1, 2.5, 'x'), (2, 0.125, NULL)""")
        db.execute("INSERT INTO products VALUES (1, 'tea', 'do not copy', 0.5, '10:11:12.5')")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    tenants = {"tenants": {"demo": {"source": {"kind": "sqlite", "path": str(source)}, "max_connections": 2}}}
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump(tenants), encoding="utf-8")
    (config_dir / "tables.yaml").write_text(yaml.safe_dump({"tables": TABLES}), encoding="utf-8")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.delenv("MOZART_LAKE_URL", raising=False)
    monkeypatch.setenv("MOZART_BATCH_ROWS", "2")
    reset_config_cache()
    return source


def build(*tasks: luigi.Task) -> luigi.execution_summary.LuigiRunResult:
    luigi.task_register.Register.clear_instance_cache()
    with warnings.catch_warnings():  # luigi 3.8 misreports the repo luigi.cfg's [core] aliases as unconsumed
        warnings.filterwarnings("ignore", category=luigi.parameter.UnconsumedParameterWarning)
        return luigi.build(list(tasks), local_scheduler=True, detailed_summary=True)


def read(table: str, date: dt.date = DAY) -> tuple[object, pa.Table]:
    lake = Lake.from_settings(get_config().settings)
    manifest = lake.read_manifest("demo", table, date)
    folder = lake.fs_path(lake.date_url("demo", table, date))
    # the source columns of exactly the parts listed (each part also carries the two pipeline columns)
    columns = manifest.schema.names
    data = pa.concat_tables([pq.read_table(f"{folder}/{f.name}", columns=columns) for f in manifest.files])
    return manifest, data


def test_local_extract_runs_through_luigi_and_the_second_run_does_nothing(local: Path) -> None:
    tasks = [ExtractTable(tenant="demo", table=t, date=DAY) for t in ("orders", "order_items", "products", "empty")]
    first = build(*tasks)
    assert first.scheduling_succeeded and "4 ran successfully" in first.summary_text
    lake = Lake.from_settings(get_config().settings)
    assert lake.url.startswith("file://") and lake.url.endswith("/data/lake/raw")
    runs = {t.table: t.output().read().run_id for t in tasks}

    second = build(*(ExtractTable(tenant="demo", table=t.table, date=DAY) for t in tasks))
    assert second.scheduling_succeeded and "ran successfully" not in second.summary_text
    assert "4 complete ones were encountered" in second.summary_text
    assert {t.table: t.output().read().run_id for t in tasks} == runs


def test_local_values_are_parsed_exactly_and_the_window_is_half_open(local: Path) -> None:
    assert build(ExtractTable(tenant="demo", table="orders", date=DAY)).scheduling_succeeded
    manifest, data = read("orders")
    assert data.schema.types == [
        pa.int64(),
        pa.decimal128(10, 2),
        pa.string(),
        pa.timestamp("us"),
        pa.date32(),
        pa.bool_(),
        pa.binary(),
    ]
    rows = {r["order_id"]: r for r in data.to_pylist()}
    assert sorted(rows) == [2, 3, 4]  # 4 is 2026-11-25 22:30 UTC
    assert rows[2]["amount"] == Decimal("7.10") and rows[2]["paid"] is False
    assert rows[3]["updated_at"] == dt.datetime(2026, 11, 25, 13, 14, 15, 500000) and rows[3]["paid"] is True
    assert rows[4]["updated_at"] == dt.datetime(2026, 11, 25, 22, 30) and rows[4]["amount"] == Decimal("0.10")
    assert rows[4]["raw"] == b"" and rows[4]["placed"] == dt.date(2026, 11, 26)
    assert manifest.row_count == manifest.source_count == 3 and len(manifest.files) == 1
    assert manifest.mode == "incremental" and manifest.window_start == dt.datetime(2026, 11, 25, tzinfo=dt.UTC)


def test_local_hostile_names_exclude_and_empty_table(local: Path) -> None:
    assert build(*(ExtractTable(tenant="demo", table=t, date=DAY) for t in ("order_items", "products", "empty")))
    _, items = read("order_items")
    assert items.to_pylist() == [
        {"select": 1, "Unit Price": Decimal("2.500"), "from": "x"},
        {"select": 2, "Unit Price": Decimal("0.125"), "from": None},
    ]
    _, products = read("products")
    assert products.schema.names == ["id", "name", "ratio", "t"]
    assert products.column("t").to_pylist() == [dt.time(10, 11, 12, 500000)]
    manifest, empty = read("empty")
    assert manifest.row_count == 0 and empty.num_rows == 0 and len(manifest.files) == 1
    assert empty.schema.types == [pa.int64(), pa.timestamp("us"), pa.decimal128(12, 4)]


def test_stale_parts_are_removed_before_writing(local: Path) -> None:
    lake = Lake.from_settings(get_config().settings)
    folder = lake.date_url("demo", "products", DAY)
    with lake.open_output(f"{folder}/part-crashed-00000.parquet") as out:
        out.write(b"half a file")
    with lake.open_output(f"{folder}/part-live-00000.parquet") as out:
        out.write(b"another attempt, being written or read right now")
    old = time.time() - 2 * 3600  # the crashed attempt's part is two hours old
    os.utime(lake.fs_path(f"{folder}/part-crashed-00000.parquet"), (old, old))
    ExtractTable(tenant="demo", table="products", date=DAY).run()
    manifest = lake.read_manifest("demo", "products", DAY)
    expected = sorted([MANIFEST_NAME, "part-live-00000.parquet", *(f.name for f in manifest.files)])
    assert lake.list_files(folder) == expected


def test_lossy_value_fails_without_manifest(local: Path) -> None:
    with sqlite3.connect(local) as db:
        db.execute("INSERT INTO orders VALUES (9, 1.005, 'three decimals', '2026-11-25 10:00', NULL, NULL, NULL)")
    task = ExtractTable(tenant="demo", table="orders", date=DAY)
    with pytest.raises(TypeMappingError, match=r"tenant 'demo', table 'orders': column 'amount' \(NUMERIC"):
        task.run()
    assert not task.output().exists()


def test_resources_take_one_of_max_connections_slots(local: Path) -> None:
    tables = ("orders", "order_items", "products", "empty")
    resources = [ExtractTable(tenant="demo", table=t, date=DAY).resources for t in tables]
    assert all(len(r) == 1 and set(r.values()) == {1} for r in resources)
    assert {name for r in resources for name in r} <= {"db_demo_0", "db_demo_1"}
    again = [ExtractTable(tenant="demo", table=t, date=DAY + dt.timedelta(days=1)).resources for t in tables]
    assert again == resources, "the slot depends on the table only (stable across runs and dates)"


# --------------------------------------------------------------------------------------- part writer


def test_part_writer_rotates_exactly_and_writes_an_empty_typed_part(tmp_path: Path) -> None:
    lake = Lake(tmp_path.as_uri())
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    batch = pa.record_batch([pa.array(range(7)), pa.array([str(i) for i in range(7)])], schema=schema)
    stamp = dt.datetime(2026, 11, 26, 1, 2, 3, 4, tzinfo=dt.UTC)
    with PartWriter(
        lake, f"{lake.url}/t", "r1", schema, date=DAY, extracted_at=stamp, compression="snappy", part_rows=3
    ) as writer:
        writer.write(batch)
        writer.write(batch.slice(0, 2))
        files = writer.close()
    assert [(f.name, f.rows) for f in files] == [
        ("part-r1-00000.parquet", 3),
        ("part-r1-00001.parquet", 3),
        ("part-r1-00002.parquet", 3),
    ]
    assert all(f.bytes == (tmp_path / "t" / f.name).stat().st_size for f in files)
    assert all(f.sha256 == hashlib.sha256((tmp_path / "t" / f.name).read_bytes()).hexdigest() for f in files)
    part = pq.read_table(tmp_path / "t" / "part-r1-00001.parquet")
    assert part.schema.names == ["id", "name", "_mozart_date", "_mozart_extracted_at"]
    assert set(part.column("_mozart_date").to_pylist()) == {DAY}
    assert set(part.column("_mozart_extracted_at").to_pylist()) == {stamp}
    assert pq.read_table(tmp_path / "t" / "part-r1-00002.parquet").column("id").to_pylist() == [6, 0, 1]
    meta = pq.ParquetFile(tmp_path / "t" / "part-r1-00000.parquet").metadata
    assert meta.row_group(0).column(0).compression == "SNAPPY"

    with PartWriter(lake, f"{lake.url}/e", "r2", schema, date=DAY, extracted_at=stamp) as writer:
        (empty,) = writer.close()
    assert empty.rows == 0 and pq.read_table(tmp_path / "e" / empty.name).schema.names[:2] == schema.names


def test_a_straggler_never_overwrites_a_published_day(local: Path, tmp_path: Path) -> None:
    """Forced interleaving: attempt A is paused right before publishing; attempt B extracts and publishes the
    same day; A resumes. A must keep B's manifest (publish once), delete only its own parts, and succeed;
    every part B's manifest lists still exists."""
    straggler, pause = _held_before_manifest(tmp_path, "('orders',)", workers=1)
    assert build(ExtractTable(tenant="demo", table="orders", date=DAY)).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    published = lake.read_manifest("demo", "orders", DAY)
    (pause / "before_manifest.go").touch()
    _, err = straggler.communicate(timeout=120)
    assert straggler.returncode == 0, err[-2000:]
    assert "a newer attempt published this day" in err
    assert lake.read_manifest("demo", "orders", DAY) == published
    folder = lake.date_url("demo", "orders", DAY)
    assert sorted(n for n in lake.list_files(folder) if n.startswith("part-")) == [f.name for f in published.files]


def test_a_task_process_dies_with_its_killed_worker(local: Path, tmp_path: Path) -> None:
    """``--workers 2``: Luigi forks a process per task. SIGKILL the worker while its extract is paused before
    publishing: the task process must die too (no straggler publishing later)."""
    worker, pause = _held_before_manifest(tmp_path, "('orders', 'products')", workers=2)
    task_pid = int((pause / "before_manifest.reached").read_text())
    assert task_pid != worker.pid  # a forked task process
    worker.kill()
    worker.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(task_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(task_pid), "the task process outlived its killed worker"
    lake = Lake.from_settings(get_config().settings)
    assert not lake.exists(lake.manifest_url("demo", "orders", DAY))


def _held_before_manifest(tmp_path: Path, tables: str, *, workers: int) -> tuple[subprocess.Popen[str], Path]:
    """A fresh worker extracting ``tables`` (a Python tuple literal) of demo, held right before publishing."""
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "MOZART_TEST_PAUSE_AT": "before_manifest", "MOZART_TEST_PAUSE_DIR": str(pause)}
    script = (
        "import luigi, datetime as dt; from mozart_luigi.tasks.extract import ExtractTable; "
        "ok = luigi.build([ExtractTable(tenant='demo', table=t, date=dt.date(2026, 11, 25)) "
        f"for t in {tables}], local_scheduler=True, workers={workers}); "
        "raise SystemExit(0 if ok else 1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    flag, deadline = pause / "before_manifest.reached", time.monotonic() + 120
    while not flag.exists() or not flag.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, "no extract reached the pause"
        time.sleep(0.05)
    return proc, pause


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie holds nothing
    except FileNotFoundError:
        return False


def test_a_newer_attempt_replaces_an_older_published_day(local: Path) -> None:
    """Run again on purpose (a direct ``run()``, as a rerun does): the newer extract replaces the older one."""
    lake = Lake.from_settings(get_config().settings)
    ExtractTable(tenant="demo", table="orders", date=DAY).run()
    first = lake.read_manifest("demo", "orders", DAY)
    ExtractTable(tenant="demo", table="orders", date=DAY).run()
    second = lake.read_manifest("demo", "orders", DAY)
    assert second.run_id != first.run_id and second.extracted_at > first.extracted_at
    names = set(lake.list_files(lake.date_url("demo", "orders", DAY)))
    assert {f.name for f in second.files} <= names
    assert {f.name for f in first.files} <= names  # younger than an hour: a load may still be reading them
