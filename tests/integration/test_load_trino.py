"""LoadIceberg on the real stack: PostgreSQL / MariaDB -> ExtractTable -> s3://raw -> one Iceberg commit
(pyiceberg, copies in the table's own location) -> read through Trino.

Every test uses a unique tenant id (``t_<hex>``: the Iceberg schema) and lake prefix (``s3://raw/_test/<uuid>``,
which also holds the marker objects), dropped afterwards. Pipelines run through ``luigi.build``; crashes are
``kill -9`` of a fresh worker process (``MOZART_TEST_CRASH_AT``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import extract_helpers
import pyarrow as pa
import pytest
import test_extract_mysql as mysql_cases
import test_extract_postgres as pg_cases
from extract_helpers import build, mysql_tenant, pg_tenant, write_config

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.errors import LoadError, SchemaDriftError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.tasks.load import LoadIceberg, maintenance_due
from mozart_luigi.warehouse import iceberg
from mozart_luigi.warehouse.iceberg import prestaged_url
from mozart_luigi.warehouse.trino import TrinoQueryFailed, TrinoWarehouse

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
mysql_db = extract_helpers.mysql_db
DAY = extract_helpers.DAY
UTC = dt.UTC


class Stack:
    """One test's tenant on the stack: config written, Trino at hand, everything dropped afterwards."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tenant = f"t_{uuid.uuid4().hex[:12]}"
        self.lake_url = f"s3://raw/_test/{uuid.uuid4().hex}"
        self._tmp, self._monkeypatch = tmp_path, monkeypatch

    def configure(self, source: dict[str, Any], tables: dict[str, Any]) -> None:
        write_config(self._tmp, self._monkeypatch, {self.tenant: source}, tables, self.lake_url)

    @property
    def warehouse(self) -> TrinoWarehouse:
        return TrinoWarehouse.from_settings(get_config().settings, tenant=self.tenant)

    def load(self, table: str, date: dt.date = DAY) -> LoadIceberg:
        return LoadIceberg(tenant=self.tenant, table=table, date=date)

    def rows(self, table: str, columns: str = "*", date: dt.date = DAY) -> list[list[Any]]:
        sql = f'SELECT {columns} FROM iceberg."{self.tenant}"."{table}" WHERE _mozart_date = ? ORDER BY 1'
        return self.warehouse.query(sql, [date])

    def snapshots(self, table: str) -> int:
        return self.warehouse.query(f'SELECT count(*) FROM iceberg."{self.tenant}"."{table}$snapshots"')[0][0]

    def force(self, table: str, date: dt.date = DAY) -> None:
        """Forget the extract (manifest) and the load (marker) of one date, as an operator would."""
        lake = Lake.from_settings(get_config().settings)
        lake.delete_file(lake.manifest_url(self.tenant, table, date))
        self.unmark(table, date)

    def unmark(self, table: str, date: dt.date = DAY) -> None:
        """Forget only the load (its marker object): the extract stays, the task is incomplete again."""
        self.warehouse.delete_markers(self.tenant, date, [self.load(table, date).task_id])

    def summary(self, table: str) -> dict[str, str]:
        """The current snapshot's summary (where the load's proof rides)."""
        sql = f'SELECT summary FROM iceberg."{self.tenant}"."{table}$snapshots" ORDER BY committed_at DESC LIMIT 1'
        return self.warehouse.query(sql)[0][0]

    def data_files(self, table: str) -> list[str]:
        """Every data file the table's current snapshot references."""
        sql = f'SELECT file_path FROM iceberg."{self.tenant}"."{table}$files"'
        return [path for (path,) in self.warehouse.query(sql)]

    def location(self, table: str) -> str:
        found = self.warehouse.loader.table(self.tenant, table)
        assert found is not None, f"{self.tenant}.{table} does not exist"
        return found.location().rstrip("/")

    def manifest(self, table: str, date: dt.date = DAY) -> Manifest:
        return Lake.from_settings(get_config().settings).read_manifest(self.tenant, table, date)

    def cleanup(self) -> None:
        try:
            settings = get_config().settings
        except Exception:  # noqa: BLE001 - configure() was never called: nothing to drop
            return
        TrinoWarehouse.from_settings(settings).drop_tenant(self.tenant)
        lake = Lake(self.lake_url, settings)
        lake.filesystem.delete_dir_contents(lake.fs_path(self.lake_url), missing_dir_ok=True)
        with contextlib.suppress(FileNotFoundError):  # the (empty) prefix itself, when it was created
            lake.filesystem.delete_dir(lake.fs_path(self.lake_url))


@pytest.fixture
def stack(stack_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.delenv("MOZART_TEST_CRASH_AT", raising=False)
    env = Stack(tmp_path, monkeypatch)
    yield env
    env.cleanup()


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _same(got: Any, want: Any) -> bool:
    """Equal values of the same type; a float32 source value (``real``) compares as float32, since Trino
    sends a ``real`` as its shortest decimal text."""
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, float) and isinstance(want, float) and got != want and _f32(want) == want:
        return _f32(got) == want
    return type(got) is type(want) and got == want or (isinstance(got, Decimal | float) and got == want)


def _check_row(stack: Stack, table: str, expected: dict[str, Any], *, key: int = 1) -> None:
    names = list(expected)
    columns = ", ".join(f'"{n.lower()}"' for n in names)
    (row,) = [r for r in stack.rows(table, columns) if r[0] == key]
    wrong = {n: (g, expected[n]) for n, g in zip(names, row, strict=True) if not _same(g, expected[n])}
    assert not wrong, wrong


# ------------------------------------------------------------------------------------- type cases
PG_ICEBERG_TYPES = {
    "id": "integer",
    "n_free": "decimal(38,10)",
    "n_12_3": "decimal(12,3)",
    "n_50": "varchar",
    "ts_tz": "timestamp(6) with time zone",
    "ts": "timestamp(6)",
    "t": "time(6)",
    "raw": "varbinary",
    "ints": "array(integer)",
    "texts": "array(varchar)",
    "flag": "boolean",
    "r": "real",
    "d": "double",
    "s": "integer",
    "b": "bigint",
    "day": "date",
    "money_": "decimal(19,2)",
    "amounts": "array(decimal(10,2))",
}


def test_every_pg_type_case_reaches_iceberg_exactly(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    pg_cases.setup_types(engine, schema)
    stack.configure(pg_tenant(schema), {"types": {"mode": "full"}})
    result = build(stack.load("types"))
    assert result.scheduling_succeeded, result.summary_text
    types = dict(
        stack.warehouse.query(
            "SELECT column_name, data_type FROM iceberg.information_schema.columns "
            "WHERE table_schema = ? AND table_name = 'types'",
            [stack.tenant],
        )
    )
    assert {k: types[k] for k in PG_ICEBERG_TYPES} == PG_ICEBERG_TYPES
    expected = {"id": 1, "r": math.nan, **{k: v for k, v in pg_cases.EXPECTED_ROW.items() if k != "id"}}
    _check_row(stack, "types", expected)
    assert stack.rows("types", "id, d, r, flag")[1] == [2, math.inf, 3.5, False]
    assert all(v is None for v in stack.rows("types", ", ".join(f'"{k}"' for k in expected))[2][1:])


def test_every_mysql_type_case_reaches_iceberg_exactly(stack: Stack, mysql_db) -> None:
    engine, prefix = mysql_db
    name = mysql_cases.setup_types(engine, prefix)
    stack.configure(mysql_tenant(), {"types": {"source_name": name, "mode": "full"}})
    result = build(stack.load("types"))
    assert result.scheduling_succeeded, result.summary_text
    _check_row(stack, "types", mysql_cases.EXPECTED_ROW)
    types = dict(
        stack.warehouse.query(
            "SELECT column_name, data_type FROM iceberg.information_schema.columns "
            "WHERE table_schema = ? AND table_name = 'types'",
            [stack.tenant],
        )
    )
    assert (types["big_u"], types["tiny_u"], types["ts6"], types["t6"]) == (
        "decimal(20,0)",
        "integer",
        "timestamp(6) with time zone",
        "time(6)",
    )


def test_hostile_names_are_quoted(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}"."select" ("from" text, "Where Now" int)')
        conn.exec_driver_sql(f"""INSERT INTO "{schema}"."select" VALUES ('x''; DROP TABLE y; --', 7)""")
    stack.configure(pg_tenant(schema), {"select": {"mode": "full"}})
    assert build(stack.load("select")).scheduling_succeeded
    assert stack.rows("select", '"from", "where now"') == [["x'; DROP TABLE y; --", 7]]


# ---------------------------------------------------------------------------------- runs and reruns
def _orders(engine, schema: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".orders (id int, qty int, updated_at timestamptz)')
        conn.exec_driver_sql(f"""INSERT INTO "{schema}".orders VALUES (1, 10, '2026-11-24 10:00+00'),
            (2, 20, '2026-11-25 10:00+00'), (3, 30, '2026-11-25 11:00+00')""")


def test_second_run_does_nothing_and_forced_rerun_replaces_one_date(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "incremental", "cursor": "updated_at"}})
    before = DAY - dt.timedelta(days=1)
    first = build(stack.load("orders", before), stack.load("orders"))
    assert first.scheduling_succeeded, first.summary_text
    assert stack.rows("orders", "id, qty") == [[2, 20], [3, 30]]
    snapshots = stack.snapshots("orders")
    other = stack.rows("orders", "id, qty, _mozart_extracted_at", before)
    second = build(stack.load("orders", before), stack.load("orders"))
    assert second.scheduling_succeeded and "ran successfully" not in second.summary_text
    assert stack.snapshots("orders") == snapshots
    with engine.begin() as conn:
        conn.exec_driver_sql(f'UPDATE "{schema}".orders SET qty = 99 WHERE id = 3')
        conn.exec_driver_sql(f"""INSERT INTO "{schema}".orders VALUES (4, 40, '2026-11-25 12:00+00')""")
    stack.force("orders")
    third = build(stack.load("orders", before), stack.load("orders"))
    assert third.scheduling_succeeded, third.summary_text
    assert stack.rows("orders", "id, qty") == [[2, 20], [3, 99], [4, 40]]
    assert stack.rows("orders", "id, qty, _mozart_extracted_at", before) == other
    delete = stack.warehouse.query(
        f'SELECT summary FROM iceberg."{stack.tenant}"."orders$snapshots" '
        "WHERE operation = 'overwrite' ORDER BY committed_at DESC LIMIT 1"
    )[0][0]
    assert delete["deleted-data-files"] != "0" and "added-delete-files" not in delete  # metadata-only


def test_empty_table_loads_as_a_valid_empty_partition(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".nothing (id bigint, amount numeric(10,2), at timestamptz)')
    stack.configure(pg_tenant(schema), {"nothing": {"mode": "full"}})
    assert build(stack.load("nothing")).scheduling_succeeded
    assert stack.load("nothing").complete()
    assert stack.warehouse.count_partition(stack.tenant, "nothing", DAY) == 0
    (marker,) = stack.warehouse.markers(stack.tenant, DAY)
    assert marker.rows == 0


def test_drift_add_widen_then_narrow(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".items (id int, qty int, price numeric(10,2), r real)')
        conn.exec_driver_sql(f'INSERT INTO "{schema}".items VALUES (1, 5, 1.25, 0.5)')
    stack.configure(pg_tenant(schema), {"items": {"mode": "full"}})
    day1, day2, day3 = DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    assert build(stack.load("items", day1)).scheduling_succeeded
    with engine.begin() as conn:
        for ddl in (
            "ADD COLUMN note text",
            "ALTER COLUMN qty TYPE bigint",
            "ALTER COLUMN price TYPE numeric(14,2)",
            "ALTER COLUMN r TYPE double precision",
        ):
            conn.exec_driver_sql(f'ALTER TABLE "{schema}".items {ddl}')
        conn.exec_driver_sql(f"UPDATE \"{schema}\".items SET qty = 5000000000, price = 123456789012.25, note = 'n'")
    assert build(stack.load("items", day2)).scheduling_succeeded
    assert stack.rows("items", "id, qty, price, r, note", day1) == [[1, 5, Decimal("1.25"), 0.5, None]]
    assert stack.rows("items", "id, qty, price, note", day2) == [[1, 5000000000, Decimal("123456789012.25"), "n"]]
    snapshots = stack.snapshots("items")
    with engine.begin() as conn:
        conn.exec_driver_sql(f'UPDATE "{schema}".items SET qty = 7')
        conn.exec_driver_sql(f'ALTER TABLE "{schema}".items ALTER COLUMN qty TYPE int')
    failed = build(stack.load("items", day3))
    assert not failed.scheduling_succeeded
    assert not extract_helpers.extract(stack.tenant, "items", day3).complete()  # the refused extract moved aside
    assert build(extract_helpers.extract(stack.tenant, "items", day3)).scheduling_succeeded
    with pytest.raises(SchemaDriftError, match=r"column 'qty': narrowing from bigint \(table\) to integer"):
        stack.load("items", day3).run()
    assert stack.snapshots("items") == snapshots
    assert not stack.load("items", day3).complete()


def _load_in_a_fresh_process(stack: Stack, table: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``LoadIceberg`` of DAY in a new interpreter, as a Luigi worker process runs it (no warm caches)."""
    script = (
        "import luigi, datetime as dt; from mozart_luigi.tasks.load import LoadIceberg; "
        f"ok = luigi.build([LoadIceberg(tenant={stack.tenant!r}, table={table!r}, "
        f"date=dt.date.fromisoformat({DAY.isoformat()!r}))], local_scheduler=True); "
        "raise SystemExit(0 if ok else 1)"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


CRASH_POINTS = ("before_copy", "after_copy", "before_commit", "after_commit")


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_reload_killed_at_any_step_keeps_a_whole_day_and_converges(stack: Stack, pg_schema, point: str) -> None:
    """kill -9 at each step of a forced reload: before the commit the old day stands whole, after it the new
    one; one rerun converges exactly, on files the table owns, and a commit already made is not made twice."""
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "incremental", "cursor": "updated_at"}})
    assert build(stack.load("orders")).scheduling_succeeded
    old = stack.rows("orders", "id, qty")
    assert old == [[2, 20], [3, 30]]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"""INSERT INTO "{schema}".orders VALUES (4, 40, '2026-11-25 12:00+00')""")
    stack.force("orders")
    snapshots = stack.snapshots("orders")
    killed = _load_in_a_fresh_process(stack, "orders", MOZART_TEST_CRASH_AT=point)
    assert killed.returncode == -9, killed.stderr[-3000:]
    committed = point == "after_commit"
    new = [[2, 20], [3, 30], [4, 40]]
    assert stack.rows("orders", "id, qty") == (new if committed else old)
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == len(new if committed else old)
    assert stack.snapshots("orders") == snapshots + (1 if committed else 0)
    assert not stack.load("orders").complete()
    rerun = build(stack.load("orders"))
    assert rerun.scheduling_succeeded, rerun.summary_text
    manifest = stack.manifest("orders")
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == manifest.row_count == len(new)
    assert stack.rows("orders", "id, qty") == new
    assert stack.load("orders").complete()
    (marker,) = stack.warehouse.markers(stack.tenant, DAY)
    assert marker.details["recovered"] is committed  # after the commit, the rerun found it and made none
    assert stack.snapshots("orders") == snapshots + 1
    location, files = stack.location("orders"), stack.data_files("orders")
    assert files and not location.startswith("s3://raw/")
    assert [f for f in files if not f.startswith(f"{location}/data/") or f.startswith("s3://raw/")] == []


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_first_load_killed_at_any_step_converges(stack: Stack, pg_schema, point: str) -> None:
    """kill -9 at each step of a table's first load (its creation is staged and committed with the day):
    before the commit no table exists, after it the table holds the whole day; one rerun converges exactly,
    with one snapshot, on files the table owns."""
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "incremental", "cursor": "updated_at"}})
    killed = _load_in_a_fresh_process(stack, "orders", MOZART_TEST_CRASH_AT=point)
    assert killed.returncode == -9, killed.stderr[-3000:]
    committed = point == "after_commit"
    found = stack.warehouse.loader.table(stack.tenant, "orders")
    assert (found is not None) is committed  # a staged creation leaves nothing behind before its commit
    assert not stack.load("orders").complete()
    rerun = build(stack.load("orders"))
    assert rerun.scheduling_succeeded, rerun.summary_text
    assert stack.rows("orders", "id, qty") == [[2, 20], [3, 30]]
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == stack.manifest("orders").row_count == 2
    assert stack.snapshots("orders") == 1
    (marker,) = stack.warehouse.markers(stack.tenant, DAY)
    assert marker.details["recovered"] is committed
    location, files = stack.location("orders"), stack.data_files("orders")
    assert len(files) == 1 and files[0].startswith(f"{location}/data/"), (location, files)


# --------------------------------------------------------------------------------- the boundary
def _our_statements(stack: Stack) -> list[str]:
    """This tenant's statements so far, oldest first (its id is in each: quoted, or a bound value)."""
    rows = stack.warehouse.query(
        "SELECT query FROM system.runtime.queries WHERE source = 'mozart-luigi' AND query LIKE ? ORDER BY created",
        [f"%{stack.tenant}%"],
    )
    return [" ".join(query.split()) for (query,) in rows]


def test_errors_keep_the_query_id_and_queries_carry_source_and_no_secret(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    assert build(stack.load("orders")).scheduling_succeeded
    with pytest.raises(TrinoQueryFailed, match=r"TABLE_NOT_FOUND.*\(query \d{8}_\d{6}_\d+_\w+\)") as info:
        stack.warehouse.query(f'SELECT * FROM iceberg."{stack.tenant}".missing')
    assert info.value.query_id and not info.value.retryable and isinstance(info.value, LoadError)
    secret = get_config().settings.s3_secret_key
    assert secret is not None  # the dev access key id is a plain word, so only the secret key is checked
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == 3
    ours = _our_statements(stack)
    assert any("count(*)" in q.lower() for q in ours)  # loads commit through pyiceberg: Trino only reads
    assert not [q for q in ours if secret.reveal() in q]
    properties = stack.warehouse.query(f'SELECT key, value FROM iceberg."{stack.tenant}"."orders$properties"')
    metadata = [*(f"{k}={v}" for k, v in properties), *(f"{k}={v}" for k, v in stack.summary("orders").items())]
    assert not [item for item in metadata if secret.reveal() in item]


def test_first_loads_of_a_new_tenant_racing_to_create_its_schema_all_succeed(stack: Stack, pg_schema) -> None:
    """Workers creating one new tenant's schema at once: Trino's IF NOT EXISTS is check-then-create, and the
    catalog refuses the losers ("Namespace already exists"); every table must still be created."""
    _engine, schema = pg_schema
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    arrow = pa.schema([("id", pa.int64()), ("name", pa.string())])
    tables = [f"race_{i}" for i in range(8)]
    barrier = threading.Barrier(len(tables))

    def create(table: str) -> list[str]:
        warehouse = stack.warehouse  # one connection per worker, as in separate Luigi workers
        barrier.wait()
        return warehouse.ensure_table(stack.tenant, table, arrow)

    with ThreadPoolExecutor(len(tables)) as pool:
        changes = list(pool.map(create, tables))
    assert all(change for change in changes), changes  # every worker created its table
    listed = stack.warehouse.query(
        "SELECT table_name FROM iceberg.information_schema.tables WHERE table_schema = ?", [stack.tenant]
    )
    assert sorted(name for (name,) in listed) == tables


def test_the_weekly_load_expires_old_snapshots_and_keeps_every_date(stack: Stack, pg_schema, monkeypatch) -> None:
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    week = [DAY + dt.timedelta(days=i) for i in range(7)]
    due = next(day for day in week if maintenance_due("orders", day))
    others = [day for day in week if day != due][:2]
    assert build(*(stack.load("orders", day) for day in others)).scheduling_succeeded
    assert stack.snapshots("orders") >= 2  # one commit per date (first loads)
    monkeypatch.setenv("MOZART_SNAPSHOT_RETENTION_DAYS", "0")  # keep only the current snapshot
    reset_config_cache()
    assert build(stack.load("orders", due)).scheduling_succeeded
    assert stack.snapshots("orders") == 1
    for day in [*others, due]:
        assert stack.rows("orders", "id", day) == [[1], [2], [3]]


# ----------------------------------------------------------------------- the commit and its proof
def test_the_proof_rides_in_the_commit(stack: Stack, pg_schema, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, schema = pg_schema
    extract_helpers.create_big_table(engine, schema)
    monkeypatch.setenv("MOZART_PART_ROWS", "1000")  # several parts: one footer count each
    stack.configure(pg_tenant(schema), {"big": {"mode": "full"}})
    assert build(stack.load("big")).scheduling_succeeded
    manifest = stack.manifest("big")
    assert len(manifest.files) > 1
    summary = stack.summary("big")
    proof = {
        key: summary.get(key)
        for key in ("mozart.task-id", "mozart.run-id", "mozart.date", "mozart.manifest-rows", "mozart.file-rows")
    }
    assert proof == {
        "mozart.task-id": stack.load("big").task_id,
        "mozart.run-id": manifest.run_id,
        "mozart.date": DAY.isoformat(),
        "mozart.manifest-rows": str(manifest.row_count),
        "mozart.file-rows": ",".join(str(part.rows) for part in manifest.files),
    }
    assert stack.warehouse.count_partition(stack.tenant, "big", DAY) == manifest.row_count == 2500


def _expire_all_and_check(stack: Stack) -> None:
    """Expire every snapshot but the current one: the raw extract stays whole and the day reads back exactly."""
    left = stack.warehouse.expire_snapshots(stack.tenant, "orders", 0)
    lake = Lake.from_settings(get_config().settings)
    manifest = stack.manifest("orders")
    folder = lake.date_url(stack.tenant, "orders", DAY)
    raw = [*(f"{folder}/{part.name}" for part in manifest.files), lake.manifest_url(stack.tenant, "orders", DAY)]
    assert [url for url in raw if not lake.exists(url)] == []
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == manifest.row_count == 3
    assert stack.rows("orders", "id") == [[1], [2], [3]]
    assert left == stack.snapshots("orders") == 1


def test_snapshot_expiry_deletes_the_tables_old_copies_and_never_a_raw_file(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    assert build(stack.load("orders")).scheduling_succeeded
    first_copies = stack.data_files("orders")
    stack.force("orders")
    assert build(stack.load("orders")).scheduling_succeeded  # a new extract, a new commit
    assert stack.snapshots("orders") >= 2
    _expire_all_and_check(stack)
    # Iceberg deletes a replaced file once the snapshot that replaced it has expired too: one more reload
    stack.force("orders")
    assert build(stack.load("orders")).scheduling_succeeded
    _expire_all_and_check(stack)
    lake = Lake.from_settings(get_config().settings)
    assert first_copies and [url for url in first_copies if lake.exists(url)] == []  # expiry did delete them


def test_a_reader_sees_the_whole_day_throughout_twenty_reloads(stack: Stack, pg_schema) -> None:
    """Each reload replaces the day in one snapshot: a concurrent reader sees the old day or the new one,
    never none of it, half of it or both."""
    engine, schema = pg_schema
    extract_helpers.create_big_table(engine, schema, rows=50)
    stack.configure(pg_tenant(schema), {"big": {"mode": "full"}})
    assert build(stack.load("big")).scheduling_succeeded
    snapshots = stack.snapshots("big")
    reader = stack.warehouse  # its own connection, used by the reader thread only
    count = f"SELECT count(*) FROM iceberg.\"{stack.tenant}\".big WHERE _mozart_date = DATE '{DAY.isoformat()}'"
    stop = threading.Event()

    def poll() -> list[int]:
        seen: list[int] = []
        deadline = time.monotonic() + 600
        while not stop.is_set() and time.monotonic() < deadline:
            seen.append(reader.query(count)[0][0])
        return seen

    run_ids = set()
    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(poll)
        try:
            for _ in range(20):
                stack.force("big")
                reload = build(stack.load("big"))
                assert reload.scheduling_succeeded, reload.summary_text
                run_ids.add(stack.manifest("big").run_id)
        finally:
            stop.set()
        seen = polling.result()
    reader.close()
    assert set(seen) == {50} and len(seen) >= 20, (len(seen), sorted(set(seen)))
    assert len(run_ids) == 20 and stack.snapshots("big") == snapshots + 20
    assert stack.rows("big", "id") == [[n] for n in range(1, 51)]


def test_two_first_loads_racing_to_create_one_table_both_land(stack: Stack, pg_schema, tmp_path: Path) -> None:
    """A first load stages the table's creation and commits it with its day in one commit. Two first loads of
    one table (two dates): the one held before its commit loses the creation to the other, retries into the
    table the other created, and both days land exactly, on files the table owns."""
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    later = DAY + dt.timedelta(days=1)
    pause = tmp_path / "pause"
    pause.mkdir()
    script = (
        "import luigi, datetime as dt; from mozart_luigi.tasks.load import LoadIceberg; "
        f"ok = luigi.build([LoadIceberg(tenant={stack.tenant!r}, table='orders', "
        f"date=dt.date.fromisoformat({DAY.isoformat()!r}))], local_scheduler=True); "
        "raise SystemExit(0 if ok else 1)"
    )
    env = {**os.environ, "MOZART_TEST_PAUSE_AT": "before_commit", "MOZART_TEST_PAUSE_DIR": str(pause)}
    held = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 180
        while not (pause / "before_commit.reached").exists():
            assert held.poll() is None, held.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the first load did not reach its commit in 180 s"
            time.sleep(0.1)
        assert stack.warehouse.loader.table(stack.tenant, "orders") is None  # staged only: nothing created yet
        assert build(stack.load("orders", later)).scheduling_succeeded  # creates the table with its day
    finally:
        (pause / "before_commit.go").touch()
        output = held.communicate(timeout=300)[0]
    assert held.returncode == 0, output[-3000:]
    assert "table already exists" in output  # the held load did lose the creation, and retried
    every = [[1], [2], [3]]
    for day in (DAY, later):
        assert stack.rows("orders", "id", day) == every
        assert stack.warehouse.count_partition(stack.tenant, "orders", day) == stack.manifest("orders", day).row_count
        assert stack.load("orders", day).complete()
    location, files = stack.location("orders"), stack.data_files("orders")
    assert len(files) == 2 and all(f.startswith(f"{location}/data/") for f in files), (location, files)


# ------------------------------------------------------------------------- the extract's prestage
def _orders_table(stack: Stack, pg_schema, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """``orders`` (full) loaded once (a first load: copied by the load), then forgotten: the next build
    extracts again into an existing table, which the extract prestages into. Parts of one row each."""
    engine, schema = pg_schema
    _orders(engine, schema)
    monkeypatch.setenv("MOZART_PART_ROWS", "1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    assert build(stack.load("orders")).scheduling_succeeded
    assert [f for f in stack.data_files("orders") if f.endswith("-x.parquet")] == []  # a first load copies
    with engine.begin() as conn:
        conn.exec_driver_sql(f"""INSERT INTO "{schema}".orders VALUES (4, 40, '2026-11-25 12:00+00')""")
    stack.force("orders")
    return engine


def _prestaged(stack: Stack) -> list[str]:
    manifest = stack.manifest("orders")
    return [prestaged_url(stack.location("orders"), DAY, manifest.run_id, n) for n in range(len(manifest.files))]


def test_a_reload_registers_the_copies_the_extract_prestaged(stack: Stack, pg_schema, monkeypatch) -> None:
    """An extract into an existing table copies each finished part into the table's location while it reads
    on; the load registers those very objects (no copy of its own), and the day reads back exactly."""
    _orders_table(stack, pg_schema, monkeypatch)
    assert build(ExtractTable(tenant=stack.tenant, table="orders", date=DAY)).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    manifest, staged = stack.manifest("orders"), _prestaged(stack)
    assert len(staged) == 4
    folder = lake.date_url(stack.tenant, "orders", DAY)
    for part, url in zip(manifest.files, staged, strict=True):
        raw, copy = lake.objects.head(f"{folder}/{part.name}"), lake.objects.head(url)
        assert raw is not None and copy is not None, url
        assert (copy.size, copy.etag) == (raw.size, raw.etag) == (part.bytes, part.etag)
    assert build(stack.load("orders")).scheduling_succeeded
    assert sorted(stack.data_files("orders")) == sorted(staged)
    assert stack.rows("orders", "id, qty") == [[1, 10], [2, 20], [3, 30], [4, 40]]
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == manifest.row_count == 4
    assert stack.summary("orders")["mozart.file-rows"] == "1,1,1,1"
    _expire_all_and_check_rows(stack, 4)


def _expire_all_and_check_rows(stack: Stack, rows: int) -> None:
    stack.warehouse.expire_snapshots(stack.tenant, "orders", 0)
    lake = Lake.from_settings(get_config().settings)
    manifest, folder = stack.manifest("orders"), lake.date_url(stack.tenant, "orders", DAY)
    raw = [*(f"{folder}/{part.name}" for part in manifest.files), lake.manifest_url(stack.tenant, "orders", DAY)]
    assert [url for url in raw if not lake.exists(url)] == []  # expiry never touches the raw landing zone
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == manifest.row_count == rows


def test_a_tampered_missing_or_old_prestaged_copy_is_not_registered(stack: Stack, pg_schema, monkeypatch) -> None:
    """The load takes a prestaged object only when its size and ETag are the raw part's and it is young: one
    overwritten with other bytes of the same size, one deleted and one aged past the limit are copied again
    from the raw part, and the day is exact."""
    _orders_table(stack, pg_schema, monkeypatch)
    assert build(ExtractTable(tenant=stack.tenant, table="orders", date=DAY)).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    staged = _prestaged(stack)
    size = lake.objects.head(staged[0]).size
    lake.objects.put(staged[0], b"\0" * size)  # same size, other bytes (a new ETag)
    lake.objects.delete(staged[1])
    monkeypatch.setattr(iceberg, "PRESTAGE_MAX_AGE", dt.timedelta(0))  # every prestaged copy is too old now
    assert build(stack.load("orders")).scheduling_succeeded
    files = stack.data_files("orders")
    assert len(files) == 4 and [f for f in files if f in staged] == []
    assert all(f.startswith(f"{stack.location('orders')}/data/") for f in files)
    assert stack.rows("orders", "id, qty") == [[1, 10], [2, 20], [3, 30], [4, 40]]


def test_only_the_damaged_prestaged_copies_are_copied_again(stack: Stack, pg_schema, monkeypatch) -> None:
    _orders_table(stack, pg_schema, monkeypatch)
    assert build(ExtractTable(tenant=stack.tenant, table="orders", date=DAY)).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    staged = _prestaged(stack)
    lake.objects.put(staged[2], b"PAR1 not the part")  # another size
    assert build(stack.load("orders")).scheduling_succeeded
    files = stack.data_files("orders")
    assert sorted(f for f in files if f in staged) == sorted(staged[:2] + staged[3:])
    assert len(files) == 4
    assert stack.rows("orders", "id, qty") == [[1, 10], [2, 20], [3, 30], [4, 40]]


def test_prestage_off_the_load_copies(stack: Stack, pg_schema, monkeypatch) -> None:
    _orders_table(stack, pg_schema, monkeypatch, MOZART_PRESTAGE="0")
    assert build(ExtractTable(tenant=stack.tenant, table="orders", date=DAY)).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    assert [url for url in _prestaged(stack) if lake.exists(url)] == []
    assert build(stack.load("orders")).scheduling_succeeded
    assert [f for f in stack.data_files("orders") if f.endswith("-x.parquet")] == []
    assert stack.rows("orders", "id, qty") == [[1, 10], [2, 20], [3, 30], [4, 40]]


def test_an_extract_killed_mid_stream_after_prestaging_converges(stack: Stack, pg_schema, monkeypatch) -> None:
    """kill -9 of the extract while it prestages (a part done and copied, the next one half written): its
    copies are never referenced; the rerun's extract prestages its own and the day is exact."""
    _orders_table(stack, pg_schema, monkeypatch)
    killed = _load_in_a_fresh_process(
        stack, "orders", MOZART_TEST_CRASH_AT="mid_stream", MOZART_PART_ROWS="2", MOZART_BATCH_ROWS="1"
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert stack.rows("orders", "id, qty") == [[1, 10], [2, 20], [3, 30]]  # the old day, whole
    rerun = build(stack.load("orders"))
    assert rerun.scheduling_succeeded, rerun.summary_text
    assert sorted(stack.data_files("orders")) == sorted(_prestaged(stack))  # the rerun's own, registered
    assert stack.rows("orders", "id, qty") == [[1, 10], [2, 20], [3, 30], [4, 40]]
    assert stack.snapshots("orders") == 2
