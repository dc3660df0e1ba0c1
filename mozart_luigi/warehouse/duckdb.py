"""DuckDB warehouse (profile ``local``): one file, a schema per tenant, the same table layout as Iceberg.

The one module that imports ``duckdb``. DuckDB lets one process write a file at a time, so a connection is
opened per operation and closed right after; a lock held by another process (another Luigi worker,
dbt-duckdb) is retried briefly.

:meth:`DuckDBWarehouse.load_day` holds the same contract as the Iceberg load: every part is opened once,
checked (name, size, SHA-256 of its bytes, footer rows and columns) and then streamed from that same open
file into the table, so a file replaced after the check is never read. Drift, the delete of the date, the
insert, the row-count check and the task's marker run in **one transaction**: a failure or a crash anywhere
leaves the old day and no marker.
"""

from __future__ import annotations

__all__ = ["DuckDBWarehouse"]

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from mozart_luigi.checksums import compare, warehouse_sums
from mozart_luigi.errors import LoadError, VerificationError, WarehouseUnavailableError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, PartFile
from mozart_luigi.markers import MARKER_CACHE, Marker, latest_markers, marker_from_row, marker_row
from mozart_luigi.retry import retrying
from mozart_luigi.settings import Settings
from mozart_luigi.verify import broken, check_footer, check_manifest, check_stat, sha256_of
from mozart_luigi.warehouse import sql
from mozart_luigi.warehouse.base import (
    EXTRACTED_AT_COLUMN,
    META_SCHEMA,
    PARTITION_COLUMN,
    DayLoad,
    LoadResult,
    Warehouse,
)
from mozart_luigi.warehouse.common import crash_point, placeholders, qualified, quote_ident
from mozart_luigi.warehouse.types import (
    ColumnType,
    DriftPlan,
    columns_from_schema,
    parse_duckdb_type,
    plan_drift,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Conn = duckdb.DuckDBPyConnection


def _sql(name: str, **identifiers: str) -> str:
    return sql.statement("duckdb", name, **identifiers)


class DuckDBWarehouse(Warehouse):
    """One file: schema ``{tenant}``, tables ``{tenant}.{table}``, markers in ``mozart_meta.task_markers``."""

    def __init__(self, path: Path, *, lock_attempts: int = 12, lock_delay: float = 0.2) -> None:
        self.path = Path(path)
        self.key = f"duckdb://{self.path}"
        self._lock_attempts = lock_attempts
        self._lock_delay = lock_delay

    @classmethod
    def from_settings(cls, settings: Settings) -> DuckDBWarehouse:
        return cls(settings.duckdb_path)

    # -------------------------------------------------------------------------------- connections
    @contextmanager
    def _connect(self) -> Iterator[Conn]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = retrying(
            self._open,
            what=f"opening {self.path}",
            attempts=self._lock_attempts,
            base_delay=self._lock_delay,
            max_delay=5.0,
        )
        try:
            yield conn
        finally:
            conn.close()

    def _open(self) -> Conn:
        try:
            conn = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise WarehouseUnavailableError(f"DuckDB file {self.path} is locked by another process") from exc
            raise LoadError(f"cannot open DuckDB file {self.path}: {exc}") from exc
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def _run(
        self, what: str, operation: Callable[[Conn], T], *, tenant: str | None = None, table: str | None = None
    ) -> T:
        """One connection, one operation; DuckDB errors become ``LoadError`` naming tenant and table."""
        with self._connect() as conn:
            try:
                return operation(conn)
            except duckdb.Error as exc:
                raise LoadError(f"{what} failed in {self.path}: {exc}", tenant=tenant, table=table) from exc

    # ------------------------------------------------------------------------------------- tables
    def ensure_table(self, tenant: str, table: str, schema: pa.Schema) -> list[str]:
        wanted = columns_from_schema(schema, tenant=tenant, table=table)

        def apply(conn: Conn) -> list[str]:
            existing = _columns(conn, tenant, table)
            plan = plan_drift(existing, wanted, tenant=tenant, table=table)  # raises before any change
            conn.execute("BEGIN")
            _apply_plan(conn, tenant, table, plan)
            conn.execute("COMMIT")
            return plan.describe()

        changes = self._run("ensure_table", apply, tenant=tenant, table=table)
        if changes:
            log.info("tenant %s table %s: %s", tenant, table, "; ".join(changes))
        return changes

    def load_day(self, load: DayLoad) -> LoadResult:
        manifest, lake = load.manifest, load.lake
        tenant, table = manifest.tenant, manifest.table
        if lake.scheme != "file":
            raise NotImplementedError("the DuckDB warehouse reads a local (file://) lake only; use profile 'stack'")
        check_manifest(manifest, require_etag=False)
        folder = lake.date_url(tenant, table, manifest.date)
        wanted = columns_from_schema(manifest.schema, tenant=tenant, table=table)
        with ExitStack() as opened:
            parts = [opened.enter_context(_verified_part(lake, folder, manifest, part)) for part in manifest.files]

            def replace_day(conn: Conn) -> LoadResult:
                conn.execute("BEGIN")
                plan = plan_drift(_columns(conn, tenant, table), wanted, tenant=tenant, table=table)
                _apply_plan(conn, tenant, table, plan)
                conn.execute(_sql("delete_partition", table=qualified(tenant, table)), [manifest.date])
                crash_point("after_delete")
                rows = sum(_insert_part(conn, qualified(tenant, table), manifest, part) for part in parts)
                if rows != manifest.row_count:
                    raise VerificationError(
                        f"date {manifest.date}: {rows} row(s) read from the parts, the manifest "
                        f"says {manifest.row_count}; nothing committed",
                        tenant=tenant,
                        table=table,
                    )
                if manifest.checksums:  # in the load's transaction: a difference leaves the old day
                    sums = _sql("partition_sums", table=qualified(tenant, table), sums=warehouse_sums(manifest))
                    loaded = conn.execute(sums, [manifest.date]).fetchone() or ()
                    compare(tenant, table, manifest.date, manifest.checksums, loaded)
                _write_marker(conn, replace(load.marker, rows=rows))
                crash_point("before_commit")
                conn.execute("COMMIT")
                return LoadResult(rows=rows, files=len(parts), changes=tuple(plan.describe()))

            try:
                result = self._run("load", replace_day, tenant=tenant, table=table)
            finally:  # also when the commit's answer was lost: a marker may have been written
                MARKER_CACHE.changed()
        if result.changes:
            log.info("tenant %s table %s: %s", tenant, table, "; ".join(result.changes))
        return result

    def count_partition(self, tenant: str, table: str, date: dt.date) -> int:
        def count(conn: Conn) -> int:
            if not _columns(conn, tenant, table):
                return 0
            row = conn.execute(_sql("count_partition", table=qualified(tenant, table)), [date]).fetchone()
            assert row is not None  # COUNT(*) always answers one row
            return int(row[0])

        return self._run("count_partition", count, tenant=tenant, table=table)

    # ------------------------------------------------------------------------------------ markers
    def write_marker(self, marker: Marker) -> None:
        def write(conn: Conn) -> None:
            conn.execute("BEGIN")
            _write_marker(conn, marker)
            conn.execute("COMMIT")

        try:
            self._run("write_marker", write, tenant=marker.tenant, table=marker.table)
        finally:
            MARKER_CACHE.changed()

    def completed_rows(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[tuple[str, str, dt.date]]:
        wanted = set(pairs)
        if not wanted:
            return set()
        tenants = sorted({t for t, _ in wanted})
        dates = sorted({d for _, d in wanted})
        query = _sql("completed", tenants=placeholders(len(tenants)), dates=placeholders(len(dates)))
        rows = self._run("completed", lambda c: _query_markers(c, query, [task_family, *tenants, *dates]))
        return {(task_id, tenant, day) for task_id, tenant, day in rows if (tenant, day) in wanted}

    def delete_markers(self, tenant: str, date: dt.date, task_ids: Iterable[str]) -> None:
        ids = sorted(set(task_ids))
        if not ids:
            return

        def delete(conn: Conn) -> None:
            _ensure_markers(conn)
            conn.execute(_sql("delete_markers", ids=placeholders(len(ids))), ids)

        try:
            self._run("delete_markers", delete)
        finally:
            MARKER_CACHE.changed()

    def markers(self, tenant: str | None, date: dt.date) -> list[Marker]:
        params: list[object] = [date] if tenant is None else [date, tenant]
        query = _sql("markers", and_tenant="" if tenant is None else "AND tenant = ?")
        rows = self._run("markers", lambda c: _query_markers(c, query, params))
        return latest_markers(marker_from_row(row) for row in rows)

    def latest_marker_date(self, task_family: str, tenant: str) -> dt.date | None:
        params = [task_family, tenant]
        rows = self._run("latest marker", lambda c: _query_markers(c, _sql("latest_marker_date"), params))
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------------------------- extras
    def query(self, statement: str, params: Iterable[Any] = ()) -> list[Any]:
        """Run one statement with bound values and return its rows (tests, benchmarks, ``mozart status``)."""
        return self._run("query", lambda c: c.execute(statement, list(params)).fetchall())

    def drop_tenant(self, tenant: str) -> None:
        """Drop a tenant's schema with its tables and forget its markers (test clean-up, tenant removal)."""

        def drop(conn: Conn) -> None:
            conn.execute(_sql("drop_schema", schema=quote_ident(tenant)))
            if _columns(conn, META_SCHEMA, "task_markers"):
                conn.execute(_sql("delete_tenant_markers"), [tenant])

        self._run("drop_tenant", drop, tenant=tenant)
        MARKER_CACHE.clear()


def _columns(conn: Conn, schema: str, table: str) -> dict[str, ColumnType]:
    rows = conn.execute(_sql("columns"), [schema, table]).fetchall()
    return {name: parse_duckdb_type(kind) for name, kind in rows}


def _apply_plan(conn: Conn, tenant: str, table: str, plan: DriftPlan) -> None:
    target = qualified(tenant, table)
    if plan.create:
        defs = [f"{quote_ident(name)} {kind.duckdb()}" for name, kind in plan.columns]
        defs += [
            f"{quote_ident(PARTITION_COLUMN)} DATE NOT NULL",
            f"{quote_ident(EXTRACTED_AT_COLUMN)} TIMESTAMP WITH TIME ZONE NOT NULL",
        ]
        conn.execute(_sql("create_schema", schema=quote_ident(tenant)))
        conn.execute(_sql("create_table", table=target, columns=", ".join(defs)))
    for name, kind in plan.adds:
        conn.execute(_sql("add_column", table=target, column=quote_ident(name), type=kind.duckdb()))
    for name, _old, new in plan.widens:
        conn.execute(_sql("widen_column", table=target, column=quote_ident(name), type=new.duckdb()))


@contextmanager
def _verified_part(lake: Lake, folder: str, manifest: Manifest, part: PartFile) -> Iterator[pq.ParquetFile]:
    """Open a part once, check its size, SHA-256 and footer, and yield it read from that same handle."""
    path = lake.fs_path(f"{folder}/{part.name}")
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the insert streamed from it
    except FileNotFoundError:
        check_stat(manifest, part, size=None)
        raise
    except OSError as exc:
        raise LoadError(f"cannot open {path}: {exc}", tenant=manifest.tenant, table=manifest.table) from exc
    with handle:
        check_stat(manifest, part, size=os.fstat(handle.fileno()).st_size, sha256=sha256_of(handle))
        handle.seek(0)
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowException, OSError) as exc:
            raise broken(manifest, f"not a readable Parquet file: {exc}", file=part.name) from None
        check_footer(manifest, part, parquet.metadata)
        yield parquet


def _insert_part(conn: Conn, target: str, manifest: Manifest, parquet: pq.ParquetFile) -> int:
    """Stream one verified part into ``target`` (bounded by the batch, not the file)."""
    names = [quote_ident(f.name) for f in manifest.schema]
    kinds = [kind for _, kind in columns_from_schema(manifest.schema, tenant=manifest.tenant, table=manifest.table)]
    casts = [f"CAST({name} AS {kind.duckdb()})" for name, kind in zip(names, kinds, strict=True)]
    lowered = [quote_ident(f.name.lower()) for f in manifest.schema]
    statement = _sql("insert_partition", table=target, columns=", ".join(lowered), expressions=", ".join(casts))
    reader = pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches(batch_size=64 * 1024))
    conn.register("mozart_part", reader)
    try:
        row = conn.execute(statement).fetchone()
    finally:
        conn.unregister("mozart_part")
    return int(row[0]) if row else 0


def _write_marker(conn: Conn, marker: Marker) -> None:
    _ensure_markers(conn)
    conn.execute(_sql("delete_markers", ids="?"), [marker.task_id])
    conn.execute(_sql("insert_marker"), list(marker_row(marker)))


def _ensure_markers(conn: Conn) -> None:
    conn.execute(_sql("create_schema", schema=quote_ident(META_SCHEMA)))
    conn.execute(_sql("create_markers"))


def _query_markers(conn: Conn, statement: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
    if not _columns(conn, META_SCHEMA, "task_markers"):
        return []
    return conn.execute(statement, params).fetchall()
