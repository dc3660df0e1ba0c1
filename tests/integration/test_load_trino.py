"""LoadIceberg on the real stack: PostgreSQL / MariaDB -> ExtractTable -> s3://raw -> Trino -> Iceberg.

Every test uses a unique tenant id (``t_<hex>``: the Iceberg and raw schemas) and lake prefix
(``s3://raw/_test/<uuid>``), dropped afterwards. Pipelines run through ``luigi.build``.
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
from mozart_luigi.tasks.load import LoadIceberg, maintenance_due
from mozart_luigi.warehouse import Marker
from mozart_luigi.warehouse import trino as trino_module
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
        self.warehouse.delete_markers([self.load(table, date).task_id])

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
    "id": "integer", "n_free": "decimal(38,10)", "n_12_3": "decimal(12,3)", "n_50": "varchar",
    "ts_tz": "timestamp(6) with time zone", "ts": "timestamp(6)", "t": "time(6)", "raw": "varbinary",
    "ints": "array(integer)", "texts": "array(varchar)", "flag": "boolean", "r": "real", "d": "double",
    "s": "integer", "b": "bigint", "day": "date", "money_": "decimal(19,2)",
    "amounts": "array(decimal(10,2))",
}  # fmt: skip


def test_every_pg_type_case_reaches_iceberg_exactly(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    pg_cases.setup_types(engine, schema)
    stack.configure(pg_tenant(schema), {"types": {"mode": "full"}})
    result = build(stack.load("types"))
    assert result.scheduling_succeeded, result.summary_text
    types = dict(stack.warehouse.query(
        "SELECT column_name, data_type FROM iceberg.information_schema.columns "
        "WHERE table_schema = ? AND table_name = 'types'", [stack.tenant]))  # fmt: skip
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
    types = dict(stack.warehouse.query(
        "SELECT column_name, data_type FROM iceberg.information_schema.columns "
        "WHERE table_schema = ? AND table_name = 'types'", [stack.tenant]))  # fmt: skip
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
        "WHERE operation = 'delete' ORDER BY committed_at DESC LIMIT 1")[0][0]  # fmt: skip
    assert delete["deleted-data-files"] != "0" and "added-delete-files" not in delete  # metadata-only


def test_empty_table_loads_as_a_valid_empty_partition(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".nothing (id bigint, amount numeric(10,2), at timestamptz)'
        )
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
        for ddl in ("ADD COLUMN note text", "ALTER COLUMN qty TYPE bigint",
                    "ALTER COLUMN price TYPE numeric(14,2)",
                    "ALTER COLUMN r TYPE double precision"):  # fmt: skip
            conn.exec_driver_sql(f'ALTER TABLE "{schema}".items {ddl}')
        conn.exec_driver_sql(
            f"UPDATE \"{schema}\".items SET qty = 5000000000, price = 123456789012.25, note = 'n'"
        )
    assert build(stack.load("items", day2)).scheduling_succeeded
    assert stack.rows("items", "id, qty, price, r, note", day1) == [[1, 5, Decimal("1.25"), 0.5, None]]
    assert stack.rows("items", "id, qty, price, note", day2) == [
        [1, 5000000000, Decimal("123456789012.25"), "n"]
    ]
    snapshots = stack.snapshots("items")
    with engine.begin() as conn:
        conn.exec_driver_sql(f'UPDATE "{schema}".items SET qty = 7')
        conn.exec_driver_sql(f'ALTER TABLE "{schema}".items ALTER COLUMN qty TYPE int')
    failed = build(stack.load("items", day3))
    assert not failed.scheduling_succeeded
    with pytest.raises(SchemaDriftError, match=r"column 'qty': narrowing from bigint \(table\) to integer"):
        stack.load("items", day3).run()
    assert stack.snapshots("items") == snapshots
    assert not stack.load("items", day3).complete()


def _load_in_a_fresh_process(stack: Stack, table: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``LoadIceberg`` of DAY in a new interpreter, as a Luigi worker process runs it (no warm caches)."""
    script = ("import luigi, datetime as dt; from mozart_luigi.tasks.load import LoadIceberg; "
              f"ok = luigi.build([LoadIceberg(tenant={stack.tenant!r}, table={table!r}, "
              f"date=dt.date.fromisoformat({DAY.isoformat()!r}))], local_scheduler=True); "
              "raise SystemExit(0 if ok else 1)")  # fmt: skip
    return subprocess.run([sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


def test_a_run_killed_between_delete_and_insert_converges(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "incremental", "cursor": "updated_at"}})
    assert build(stack.load("orders")).scheduling_succeeded
    stack.warehouse.delete_markers([stack.load("orders").task_id])
    killed = _load_in_a_fresh_process(stack, "orders", MOZART_TEST_CRASH_AT="after_delete")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert stack.warehouse.count_partition(stack.tenant, "orders", DAY) == 0  # deleted, never re-inserted
    assert not stack.load("orders").complete()
    assert build(stack.load("orders")).scheduling_succeeded
    assert stack.rows("orders", "id, qty") == [[2, 20], [3, 30]]


# --------------------------------------------------------------------------------- the boundary
def _our_statements(stack: Stack) -> list[str]:
    """This tenant's statements so far, oldest first (its id is in each: quoted, or a bound value)."""
    rows = stack.warehouse.query(
        "SELECT query FROM system.runtime.queries WHERE source = 'mozart-luigi' AND query LIKE ? "
        "ORDER BY created", [f"%{stack.tenant}%"])  # fmt: skip
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
    ours = _our_statements(stack)
    assert any("INSERT INTO" in q for q in ours)
    assert not [q for q in ours if secret.reveal() in q]


def _raw_tables(stack: Stack) -> list[str]:
    listing = "SELECT table_name FROM raw.information_schema.tables WHERE table_schema = ?"
    return sorted(name for (name,) in stack.warehouse.query(listing, [stack.tenant]))


def test_a_raw_table_dropped_behind_our_back_is_recreated(stack: Stack, pg_schema) -> None:
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    assert build(stack.load("orders")).scheduling_succeeded
    warehouse = stack.warehouse
    (raw,) = _raw_tables(stack)
    warehouse.query(f'DROP TABLE raw."{stack.tenant}"."{raw}"')
    manifest = Lake.from_settings(get_config().settings).read_manifest(stack.tenant, "orders", DAY)
    warehouse.replace_partition(stack.tenant, "orders", manifest, Lake.from_settings(get_config().settings))
    assert warehouse.count_partition(stack.tenant, "orders", DAY) == 3
    assert _raw_tables(stack) == [raw]


def test_a_load_of_a_known_schema_looks_nothing_up_and_a_new_schema_replaces_its_raw_table(
    stack: Stack, pg_schema
) -> None:
    """A load runs in a fresh worker process: no per-process cache may stand between it and the INSERT.
    Only a schema's first load creates its raw table (and drops the older schema's one)."""
    engine, schema = pg_schema
    _orders(engine, schema)
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    assert build(stack.load("orders")).scheduling_succeeded
    (first,) = _raw_tables(stack)
    before = _our_statements(stack)
    assert any('"raw".information_schema' in q for q in before) and any("CREATE TABLE" in q for q in before)
    stack.force("orders")
    done = _load_in_a_fresh_process(stack, "orders")
    assert done.returncode == 0 and stack.load("orders").complete(), done.stderr[-3000:]
    second_load = _our_statements(stack)[len(before):]
    data_inserts = [q for q in second_load if f'INSERT INTO "iceberg"."{stack.tenant}"' in q]
    assert len(data_inserts) == 1, second_load
    assert not [q for q in second_load if "information_schema" in q or "CREATE " in q], second_load
    with engine.begin() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{schema}".orders ADD COLUMN note text')
    stack.force("orders")
    assert build(stack.load("orders")).scheduling_succeeded
    (second,) = _raw_tables(stack)
    assert second != first and second.startswith("orders__")
    assert [row[-1] for row in stack.rows("orders", "id, note")] == [None, None, None]


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
    assert stack.snapshots("orders") >= 2  # one INSERT per date (no DELETE: first loads)
    monkeypatch.setenv("MOZART_SNAPSHOT_RETENTION_DAYS", "0")  # keep only the current snapshot
    reset_config_cache()
    assert build(stack.load("orders", due)).scheduling_succeeded
    assert stack.snapshots("orders") == 1
    for day in [*others, due]:
        assert stack.rows("orders", "id", day) == [[1], [2], [3]]


def test_the_first_marker_ever_creates_the_markers_table(stack: Stack, pg_schema, monkeypatch) -> None:
    """On a fresh catalog the first verified marker finds no markers table: it creates it, then inserts."""
    _engine, schema = pg_schema
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    warehouse = stack.warehouse
    warehouse.ensure_table(stack.tenant, "orders", pa.schema([("id", pa.int64())]))
    fresh = f'"iceberg"."{stack.tenant}"."task_markers"'  # dropped with the tenant
    monkeypatch.setattr(TrinoWarehouse, "_markers", property(lambda self: fresh))
    assert not warehouse.query("SELECT table_name FROM iceberg.information_schema.tables "
                               "WHERE table_schema = ? AND table_name = 'task_markers'", [stack.tenant])  # fmt: skip
    marker = Marker(task_family="LoadIceberg", task_id=f"{stack.tenant}-first", tenant=stack.tenant, date=DAY,
                    table="orders")  # fmt: skip
    assert warehouse.write_verified_marker(marker, 0) == 0
    assert warehouse.completed("LoadIceberg", stack.tenant, DAY) == {f"{stack.tenant}-first"}
    assert [m.rows for m in warehouse.markers(stack.tenant, DAY)] == [0]


def test_marker_housekeeping_keeps_the_markers_snapshots_bounded(stack: Stack, pg_schema, monkeypatch) -> None:
    """Every marker is a snapshot; the expiry drawn after a marker keeps only the retention window's."""
    _engine, schema = pg_schema
    stack.configure(pg_tenant(schema), {"orders": {"mode": "full"}})
    warehouse = stack.warehouse
    warehouse.ensure_table(stack.tenant, "orders", pa.schema([("id", pa.int64())]))  # the tenant's schema
    private = f'"iceberg"."{stack.tenant}"."task_markers"'  # dropped with the tenant
    monkeypatch.setattr(TrinoWarehouse, "_markers", property(lambda self: private))
    snapshots = f'SELECT count(*) FROM "iceberg"."{stack.tenant}"."task_markers$snapshots"'
    ids = [f"{stack.tenant}-{n}" for n in range(6)]
    for task_id in ids[:3]:
        warehouse.write_marker(Marker("LoadIceberg", task_id, stack.tenant, DAY, table="orders", rows=1))
    assert warehouse.query(snapshots)[0][0] >= 3  # nothing drawn yet: a snapshot per marker (+ the create)
    monkeypatch.setattr(trino_module, "MARKER_SNAPSHOT_RETENTION", "0s")  # a window that has passed
    warehouse.expire_every = 1  # every marker draws the expiry
    for task_id in ids[3:]:
        warehouse.write_marker(Marker("LoadIceberg", task_id, stack.tenant, DAY, table="orders", rows=1))
    assert warehouse.query(snapshots)[0][0] == 1
    assert warehouse.completed("LoadIceberg", stack.tenant, DAY) == set(ids)
