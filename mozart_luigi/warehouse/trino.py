"""Trino + Iceberg warehouse (profile ``stack``): ``iceberg.{tenant}.{table}``, raw Parquet read through Hive.

The one module that imports the ``trino`` client. Every statement goes through
:meth:`TrinoWarehouse._execute`, the single boundary where driver errors are translated, keeping Trino's
query id:

- user errors (``TrinoUserError``) and other query failures -> :class:`TrinoQueryFailed` (a ``LoadError``),
  at once;
- HTTP 502/503/504, connection errors and Iceberg commit conflicts -> :class:`TrinoUnavailable`
  (a retryable ``WarehouseUnavailableError``), retried with bounded backoff around the whole operation
  (each operation is idempotent, so retrying it is safe).

Values are bound (``?``, sent by the client as ``EXECUTE IMMEDIATE ... USING``); identifiers are quoted by
:func:`~mozart_luigi.warehouse.common.quote_ident`. No credential is ever part of a statement: Trino reads S3
with its own catalog configuration. Queries carry ``source=mozart-luigi`` and the client tag ``tenant:<id>``.

The raw side: one external Hive table per tenant, table and Parquet schema, ``raw.{tenant}.{table}__{hash}``,
over ``{lake}/{tenant}/{table}/`` with the date folder as a projected partition (``_mozart_folder``), so no
partition is ever registered. A load reads only the manifest's files (``"$path" IN (...)``) of that folder.
No load looks the raw table up: the INSERT names the one for its schema, and only a ``TABLE_NOT_FOUND``
creates it (a new schema's first load), dropping the stale versions.
"""

from __future__ import annotations

__all__ = ["TrinoQueryFailed", "TrinoUnavailable", "TrinoWarehouse"]

import datetime as dt
import hashlib
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pyarrow as pa
import requests
import trino
from trino.exceptions import HttpError, TrinoConnectionError, TrinoQueryError

from mozart_luigi.config import validate_tenant_id
from mozart_luigi.errors import LoadError, WarehouseUnavailableError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.retry import retrying
from mozart_luigi.secrets import Secret, redact
from mozart_luigi.settings import Settings
from mozart_luigi.warehouse import sql
from mozart_luigi.warehouse.base import META_SCHEMA, Marker, Warehouse
from mozart_luigi.warehouse.common import (
    MARKER_CACHE,
    crash_point,
    latest_markers,
    marker_from_row,
    marker_row,
    placeholders,
    qualified,
    quote_ident,
)
from mozart_luigi.warehouse.types import (
    ColumnType,
    DriftPlan,
    columns_from_schema,
    hive_type,
    parse_trino_type,
    plan_drift,
    raw_expression,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
SOURCE = "mozart-luigi"
_NOT_FOUND = {"TABLE_NOT_FOUND", "SCHEMA_NOT_FOUND"}
_ALREADY_EXISTS = {"ALREADY_EXISTS", "TABLE_ALREADY_EXISTS", "SCHEMA_ALREADY_EXISTS"}
_RETRYABLE_NAMES = {"TRANSACTION_CONFLICT", "ICEBERG_COMMIT_CONFLICT", "SERVER_STARTING_UP",
                    "SERVER_SHUTTING_DOWN"}  # fmt: skip
_CONFLICT_WORDS = ("conflict", "requirement failed", "commitfailed", "has changed", "cannot commit",
                   "concurrent", "commit state unknown")  # fmt: skip
_RETRY_HTTP = ("502", "503", "504")
# The markers table's snapshots kept by its housekeeping. Its readers (completeness queries, well under a
# second) only need the current one, while every marker append adds one and every commit rewrites metadata
# listing them all: measured, a marker commit took 0.18 s with 11 snapshots, 0.27 s with 138 and 4.7 s with
# ~1,000. At a nightly run's rate (1-2 markers/s) a 10-minute window kept ~1,000; one minute keeps ~100.
MARKER_SNAPSHOT_RETENTION = "1m"


def _already_exists(exc: TrinoQueryFailed) -> bool:
    return exc.error_name in _ALREADY_EXISTS or (
        exc.error_name == "GENERIC_INTERNAL_ERROR" and "already exists" in str(exc).lower()
    )


class TrinoQueryFailed(LoadError):
    """A statement failed for good (user error, or a failure a retry will not fix)."""

    def __init__(self, message: str, *, query_id: str | None, error_name: str | None,
                 tenant: str | None = None, table: str | None = None) -> None:  # fmt: skip
        self.query_id = query_id
        self.error_name = error_name
        super().__init__(message, tenant=tenant, table=table)


class TrinoUnavailable(WarehouseUnavailableError):
    """Trino or the Iceberg catalog is unavailable or a commit conflicted: retried with backoff."""

    def __init__(self, message: str, *, query_id: str | None = None, tenant: str | None = None,
                 table: str | None = None) -> None:  # fmt: skip
        self.query_id = query_id
        super().__init__(message, tenant=tenant, table=table)


class TrinoWarehouse(Warehouse):
    """Tables ``{catalog}.{tenant}.{table}``, markers in ``{catalog}.mozart_meta.task_markers``.

    Each marker is one Iceberg append, so one small file and one snapshot; reading a date's markers reads
    all its files. To keep that one query and the appends fast, about one marker write in ``compact_every``
    (chosen by a hash of the task id, so across processes) also compacts that date's marker files
    (:meth:`compact_markers`, best effort), and one in ``expire_every`` expires the markers' snapshots older
    than ``MARKER_SNAPSHOT_RETENTION``, so their number stays bounded by the write rate.
    """

    compact_every = 64
    expire_every = 16  # a divisor of compact_every: a compaction also expires

    def __init__(self, *, host: str, port: int, user: str, catalog: str = "iceberg", raw_catalog: str = "raw",
                 tenant: str | None = None, secrets: Sequence[Secret] = (), attempts: int = 4,
                 base_delay: float = 1.0) -> None:  # fmt: skip
        self.host, self.port, self.user = host, port, user
        self.catalog, self.raw_catalog = catalog, raw_catalog
        self.key = f"trino://{host}:{port}/{catalog}"
        self._tenant = validate_tenant_id(tenant) if tenant else None
        self._secrets = tuple(secrets)
        self._attempts, self._base_delay = attempts, base_delay
        self._connections: dict[str | None, trino.dbapi.Connection] = {}  # by tenant tag (+ "\0meta")
        self._partition_rows: dict[tuple[str, str, dt.date | None], int] = {}  # see _columns

    @classmethod
    def from_settings(cls, settings: Settings, tenant: str | None = None) -> TrinoWarehouse:
        return cls(host=settings.trino_host, port=settings.trino_port, user=settings.trino_user,
                   catalog=settings.trino_catalog, raw_catalog=settings.trino_raw_catalog, tenant=tenant,
                   secrets=_secret_keys(settings))  # fmt: skip

    # --------------------------------------------------------------------------------- the boundary
    def _connection(self, tenant: str | None, *, meta: bool = False) -> trino.dbapi.Connection:
        """One connection per tenant tag; ``meta``: the one that writes the markers table.

        Marker appends skip the extended (NDV) statistics Trino computes on every INSERT: nothing plans
        joins over the markers table, and the sketches and their Puffin file cost ~0.1 s per marker.
        """
        tag = tenant or self._tenant
        key = f"{tag}\0meta" if meta else tag
        if key not in self._connections:
            # the catalog's guard (default 7d) would refuse the markers' one minute and a retention the
            # operator set below 7 days; every expire_snapshots here passes its own explicit threshold
            session = {f"{self.catalog}.expire_snapshots_min_retention": "0s"}
            if meta:
                session[f"{self.catalog}.collect_extended_statistics_on_write"] = "false"
            self._connections[key] = trino.dbapi.connect(
                host=self.host, port=self.port, user=self.user, http_scheme="http", source=SOURCE,
                catalog=self.catalog, client_tags=[f"tenant:{tag}"] if tag else [], timezone="UTC",
                session_properties=session,
            )  # fmt: skip
        return self._connections[key]

    def _execute(self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None,
                 table: str | None = None, meta: bool = False) -> list[list[Any]]:  # fmt: skip
        """Run one statement; every driver error leaves here translated (with the query id)."""
        return self._execute_described(statement, params, tenant=tenant, table=table, meta=meta)[0]

    def _execute_described(self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None,
                           table: str | None = None,
                           meta: bool = False) -> tuple[list[list[Any]], list[tuple[str, str]]]:  # fmt: skip
        """:meth:`_execute`, also returning the result's columns as (name, Trino type)."""
        cursor = self._connection(tenant, meta=meta).cursor()
        try:
            cursor.execute(statement, list(params) if params else None)
            rows = cursor.fetchall()
            return rows, [(column[0], column[1]) for column in cursor.description or ()]
        except TrinoQueryError as exc:
            raise self._translate(exc, tenant, table) from exc
        except (HttpError, TrinoConnectionError, requests.ConnectionError, requests.Timeout) as exc:
            message = self._clean(
                f"Trino at {self.host}:{self.port} unavailable: {type(exc).__name__}: {exc}"
            )
            if isinstance(exc, HttpError) and not str(exc).startswith(_RETRY_HTTP):
                raise TrinoQueryFailed(message, query_id=cursor.query_id, error_name=None, tenant=tenant,
                                       table=table) from exc  # fmt: skip
            raise TrinoUnavailable(message, query_id=cursor.query_id, tenant=tenant, table=table) from exc
        finally:
            cursor.close()

    def _create(self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None,
                table: str | None = None) -> None:  # fmt: skip
        """Run a ``CREATE ... IF NOT EXISTS``; losing the race to a concurrent creator is success.

        Trino checks existence, then creates: two workers creating one schema both pass the check and
        the catalog refuses the second (``SCHEMA_ALREADY_EXISTS``, or the REST catalog's
        ``GENERIC_INTERNAL_ERROR: Namespace already exists``). Either way the object now exists.
        """
        try:
            self._execute(statement, params, tenant=tenant, table=table)
        except TrinoQueryFailed as exc:
            if not _already_exists(exc):
                raise
            log.debug("created concurrently by another worker: %s", exc)

    def _translate(self, exc: TrinoQueryError, tenant: str | None, table: str | None) -> LoadError:
        message = self._clean(f"Trino {exc.error_type} error {exc.error_name}: {exc.message} "
                              f"(query {exc.query_id})")  # fmt: skip
        retryable = exc.error_name in _RETRYABLE_NAMES or (
            exc.error_name == "ICEBERG_COMMIT_ERROR"
            and any(w in exc.message.lower() for w in _CONFLICT_WORDS)
        )
        if retryable:
            return TrinoUnavailable(message, query_id=exc.query_id, tenant=tenant, table=table)
        return TrinoQueryFailed(message, query_id=exc.query_id, error_name=exc.error_name, tenant=tenant,
                                table=table)  # fmt: skip

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    def _retry(self, what: str, operation: Callable[[], T], *, quick: bool = False) -> T:
        """Bounded backoff; ``quick`` for appends that lose a commit race: retry soon, a few more times."""
        if quick:
            return retrying(
                operation, what=what, attempts=self._attempts * 2, base_delay=self._base_delay / 4
            )
        return retrying(operation, what=what, attempts=self._attempts, base_delay=self._base_delay)

    def _sql(self, name: str, **identifiers: str) -> str:
        return sql.statement("trino", name, catalog=quote_ident(self.catalog), **identifiers)

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    # -------------------------------------------------------------------------------------- tables
    def ensure_table(self, tenant: str, table: str, schema: pa.Schema, *, date: dt.date | None = None) -> list[str]:
        validate_tenant_id(tenant)
        wanted = columns_from_schema(schema, tenant=tenant, table=table)
        ensure = lambda: self._ensure(tenant, table, wanted, date)  # noqa: E731
        changes = self._retry(f"ensure_table {tenant}.{table}", ensure)
        if changes:
            log.info("tenant %s table %s: %s", tenant, table, "; ".join(changes))
        return changes

    def _ensure(self, tenant: str, table: str, wanted: list[tuple[str, ColumnType]],
                date: dt.date | None) -> list[str]:  # fmt: skip
        plan = plan_drift(self._columns(tenant, table, date), wanted, tenant=tenant, table=table)  # raises first
        self._apply(tenant, table, plan)
        return plan.describe()

    def _columns(self, tenant: str, table: str, date: dt.date | None = None) -> dict[str, ColumnType]:
        """The table's columns (empty: no table), read from the description of an empty result (cheaper
        than ``information_schema``). With ``date``, the same round trip counts that partition (kept for the
        next :meth:`replace_partition`, which then skips its own count)."""
        self._partition_rows.pop((tenant, table, date), None)
        target = qualified(self.catalog, tenant, table)
        name, params = ("columns", []) if date is None else ("columns_and_count", [date])
        try:
            rows, described = self._execute_described(self._sql(name, table=target), params, tenant=tenant,
                                                       table=table)  # fmt: skip
        except TrinoQueryFailed as exc:
            if exc.error_name not in _NOT_FOUND:
                raise
            rows, described = [], []  # no table yet: no columns, an empty partition
        if date is not None:
            self._partition_rows[(tenant, table, date)] = int(rows[0][0]) if rows else 0
            described = described[1:]  # the count
        return {column: parse_trino_type(kind) for column, kind in described}

    def _apply(self, tenant: str, table: str, plan: DriftPlan) -> None:
        target = qualified(self.catalog, tenant, table)
        run = lambda statement: self._execute(statement, tenant=tenant, table=table)  # noqa: E731
        if plan.create:
            defs = [f"{quote_ident(name)} {kind.trino()}" for name, kind in plan.columns]
            defs += ['"_mozart_date" date', '"_mozart_extracted_at" timestamp(6) with time zone']
            self._create(self._sql("create_schema", schema=qualified(self.catalog, tenant)), tenant=tenant)
            self._create(self._sql("create_table", table=target, columns=", ".join(defs)), tenant=tenant,
                         table=table)  # fmt: skip
        for name, kind in plan.adds:
            run(self._sql("add_column", table=target, column=quote_ident(name), type=kind.trino()))
        for name, _old, new in plan.widens:
            run(self._sql("widen_column", table=target, column=quote_ident(name), type=new.trino()))

    def replace_partition(self, tenant: str, table: str, manifest: Manifest, lake: Lake) -> int:
        """Delete the date, insert the manifest's files. The raw table is not looked up first: the INSERT
        names the one for this schema, and only when it is missing (a schema's first load, or dropped) is it
        created and the replace run again (the delete is idempotent, so the rerun converges)."""
        validate_tenant_id(tenant)
        if lake.scheme != "s3":
            raise LoadError(f"Trino reads the lake through its S3 catalog; {lake.url} is not s3://",
                            tenant=tenant, table=table)  # fmt: skip
        columns = columns_from_schema(manifest.schema, tenant=tenant, table=table)
        raw_name, raw_columns = self._raw_name(tenant, table, manifest, lake)
        raw = qualified(self.raw_catalog, tenant, raw_name) if manifest.files else ""
        replace = lambda: self._replace(tenant, table, manifest, lake, columns=columns, raw=raw)  # noqa: E731
        what = f"replace {tenant}.{table} {manifest.date}"
        try:
            return self._retry(what, replace)
        except TrinoQueryFailed as exc:
            if not raw or exc.error_name not in _NOT_FOUND:
                raise
            log.debug("raw table %s missing (%s); creating it", raw, exc)
        create = lambda: self._create_raw_table(tenant, table, raw_name, raw_columns, lake)  # noqa: E731
        self._retry(f"raw table {tenant}.{table}", create)
        return self._retry(what, replace)

    def _replace(self, tenant: str, table: str, manifest: Manifest, lake: Lake, *,
                 columns: list[tuple[str, ColumnType]], raw: str) -> int:  # fmt: skip
        target = qualified(self.catalog, tenant, table)
        existing = self._partition_rows.pop((tenant, table, manifest.date), None)  # counted by ensure_table
        if existing is None:
            count = self._sql("count_partition", table=target)
            existing = self._execute(count, [manifest.date], tenant=tenant, table=table)[0][0]
        if existing:
            # an empty partition (a date's first load) skips the DELETE: it would commit an empty snapshot
            delete = self._sql("delete_partition", table=target)
            self._execute(delete, [manifest.date], tenant=tenant, table=table)
        crash_point("after_delete")
        if not manifest.files:
            return 0
        folder = lake.date_url(tenant, table, manifest.date)
        paths = [f"{folder}/{part.name}" for part in manifest.files]
        names = [quote_ident(name) for name, _ in columns]
        expressions = [raw_expression(quote_ident(f.name.lower()), f.type) for f in manifest.schema]
        statement = self._sql("insert_partition", table=target, columns=", ".join(names), raw_table=raw,
                              expressions=", ".join(expressions), paths=placeholders(len(paths)))  # fmt: skip
        extracted_at = manifest.extracted_at
        if extracted_at.tzinfo is None:
            extracted_at = extracted_at.replace(tzinfo=dt.UTC)
        params = [manifest.date, extracted_at.astimezone(dt.UTC), manifest.date.isoformat(), *paths]
        rows = self._execute(statement, params, tenant=tenant, table=table)
        return int(rows[0][0]) if rows else 0

    def _raw_name(self, tenant: str, table: str, manifest: Manifest, lake: Lake) -> tuple[str, str]:
        """The name of the external Hive table for this Parquet schema (``{table}__{hash}`` in schema
        ``raw.{tenant}``) and its column definitions."""
        defs = ", ".join(f"{quote_ident(f.name.lower())} {hive_type(f.type)}" for f in manifest.schema)
        digest = hashlib.sha256(f"{lake.table_url(tenant, table)}\n{defs}".encode()).hexdigest()[:10]
        return f"{table}__{digest}", defs

    def _create_raw_table(self, tenant: str, table: str, name: str, defs: str, lake: Lake) -> None:
        """Create the raw table ``name`` (see :meth:`_raw_name`) and drop the older schemas' versions."""
        run = lambda statement, params=(): self._execute(statement, params, tenant=tenant, table=table)  # noqa: E731
        folder = lake.table_url(tenant, table)
        self._create(self._sql("create_schema", schema=qualified(self.raw_catalog, tenant)), tenant=tenant)
        self._create(self._sql("create_raw_table", table=qualified(self.raw_catalog, tenant, name), columns=defs),
                     [folder, folder + "/${_mozart_folder}"], tenant=tenant, table=table)  # fmt: skip
        listing = sql.statement("trino", "tables", catalog=quote_ident(self.raw_catalog))
        versions = re.compile(re.escape(table) + r"__[0-9a-f]{10}")  # not another table's "orders__x__..."
        rows = run(listing, [tenant, table.replace("_", "\\_") + "\\_\\_%"])
        for stale in {row[0] for row in rows if versions.fullmatch(row[0])} - {name}:
            # an older schema's table (external: dropping it keeps the files)
            run(self._sql("drop_table", table=qualified(self.raw_catalog, tenant, stale)))

    def count_partition(self, tenant: str, table: str, date: dt.date) -> int:
        validate_tenant_id(tenant)
        statement = self._sql("count_partition", table=qualified(self.catalog, tenant, table))
        count = lambda: self._execute_or_empty(statement, [date], tenant=tenant, table=table)  # noqa: E731
        rows = self._retry(f"count {tenant}.{table} {date}", count)
        return int(rows[0][0]) if rows else 0

    def _execute_or_empty(self, statement: str, params: Sequence[Any], *, tenant: str | None = None,
                          table: str | None = None) -> list[list[Any]]:  # fmt: skip
        """Like :meth:`_execute`, but a missing schema or table reads as no rows."""
        try:
            return self._execute(statement, params, tenant=tenant, table=table)
        except TrinoQueryFailed as exc:
            if exc.error_name in _NOT_FOUND:
                return []
            raise

    # ------------------------------------------------------------------------------------- markers
    @property
    def _markers(self) -> str:
        return qualified(self.catalog, META_SCHEMA, "task_markers")

    def _ensure_markers(self) -> None:
        self._create(self._sql("create_schema", schema=qualified(self.catalog, META_SCHEMA)))
        self._create(self._sql("create_markers", table=self._markers))

    def write_marker(self, marker: Marker) -> None:
        validate_tenant_id(marker.tenant)

        insert = self._sql("insert_marker", table=self._markers)
        write = lambda: self._insert_marker(insert, marker_row(marker), marker)  # noqa: E731
        self._retry(f"marker {marker.task_id}", write, quick=True)
        self._after_marker(marker)

    def _insert_marker(self, statement: str, params: Sequence[Any], marker: Marker) -> list[list[Any]]:
        """Run a marker INSERT; the first marker ever creates the markers table, then inserts."""
        run = lambda: self._execute(statement, params, tenant=marker.tenant, table=marker.table, meta=True)  # noqa: E731
        try:
            return run()
        except TrinoQueryFailed as exc:
            if exc.error_name not in _NOT_FOUND:
                raise
            self._ensure_markers()
            return run()

    def write_verified_marker(self, marker: Marker, expected_rows: int) -> int:
        """One statement: the marker INSERT selects from the partition count, so it inserts a row only when
        the count equals ``expected_rows`` (a mismatch costs a second count, for the caller's message)."""
        validate_tenant_id(marker.tenant)
        if marker.table is None:
            raise ValueError(f"marker {marker.task_id} names no table to count")
        tenant, table = marker.tenant, marker.table
        statement = self._sql("insert_verified_marker", table=self._markers,
                              data_table=qualified(self.catalog, tenant, table))  # fmt: skip
        family, task_id, _, table_name, run_date, _, finished_at, details = marker_row(marker)
        params = [family, task_id, tenant, table_name, run_date, finished_at, details, marker.date, expected_rows]

        write = lambda: int(self._insert_marker(statement, params, marker)[0][0])  # noqa: E731
        if not self._retry(f"marker {marker.task_id}", write, quick=True):
            return self.count_partition(tenant, table, marker.date)
        self._after_marker(replace(marker, rows=expected_rows))
        return expected_rows

    def _after_marker(self, marker: Marker) -> None:
        MARKER_CACHE.add(self.key, marker)
        draw = zlib.crc32(marker.task_id.encode("utf-8"))
        if draw % self.compact_every == 0:
            self._housekeeping_quietly(marker.date, self._compact_statements(marker.date))
        elif draw % self.expire_every == 0:
            self._housekeeping_quietly(marker.date, [self._expire_markers_statement()])

    def expire_snapshots(self, tenant: str, table: str, retention_days: int) -> int | None:
        """``expire_snapshots`` on ``{tenant}.{table}``: a daily DELETE + INSERT adds one or two snapshots,
        and every commit rewrites metadata that lists them all (commits slow down as they pile up)."""
        validate_tenant_id(tenant)
        if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 0:
            raise ValueError(f"retention_days must be a whole number >= 0, got {retention_days!r}")
        target = qualified(self.catalog, tenant, table)
        # EXECUTE takes no parameters: the threshold is rendered from a checked int, never from text
        expire = self._sql("expire_snapshots", table=target, retention=f"'{retention_days}d'")
        self._retry(f"expire snapshots {tenant}.{table}", lambda: self._execute(expire, tenant=tenant, table=table))
        count = self._sql("count_snapshots", table=qualified(self.catalog, tenant, f"{table}$snapshots"))
        return int(self._execute(count, tenant=tenant, table=table)[0][0])

    def _housekeeping_quietly(self, date: dt.date, statements: list[str]) -> None:
        """Housekeeping after a marker: a failure (say, a conflict with another writer) is only logged."""
        try:
            for statement in statements:
                self._execute(statement)
        except LoadError as exc:
            log.warning("markers housekeeping for %s skipped: %s", date, exc)

    def completed(self, task_family: str, tenant: str, date: dt.date) -> set[str]:
        return self.completed_many(task_family, [(tenant, date)])

    def completed_many(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[str]:
        return {task_id for task_id, _, _ in self.completed_rows(task_family, pairs)}

    def completed_rows(self, task_family: str,
                       pairs: Iterable[tuple[str, dt.date]]) -> set[tuple[str, str, dt.date]]:  # fmt: skip
        wanted = {(validate_tenant_id(t), d) for t, d in pairs}
        if not wanted:
            return set()
        tenants = sorted({t for t, _ in wanted})
        dates = sorted({d for _, d in wanted})
        statement = self._sql("completed", table=self._markers, dates=placeholders(len(dates)),
                              tenants=placeholders(len(tenants)))  # fmt: skip
        tag = tenants[0] if len(tenants) == 1 else None
        rows = self._read_markers("completed markers", statement, [task_family, *dates, *tenants], tenant=tag)
        return {(task_id, tenant, day) for task_id, tenant, day in rows if (tenant, day) in wanted}

    def _read_markers(self, what: str, statement: str, params: Sequence[Any], *,
                      tenant: str | None = None) -> list[list[Any]]:  # fmt: skip
        """A read of the markers table (none yet: no rows), retried when it loses a race to housekeeping: a
        compaction replaced the files it planned on and the expiry deleted them before it read them
        (``ICEBERG_CANNOT_OPEN_SPLIT``); planned again, it reads the current snapshot."""

        def read() -> list[list[Any]]:
            try:
                return self._execute_or_empty(statement, params, tenant=tenant)
            except TrinoQueryFailed as exc:
                if exc.error_name != "ICEBERG_CANNOT_OPEN_SPLIT":
                    raise
                raise TrinoUnavailable(str(exc), query_id=exc.query_id, tenant=tenant) from exc

        return self._retry(what, read, quick=True)

    def delete_markers(self, task_ids: Iterable[str]) -> None:
        ids = sorted(set(task_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            statement = self._sql("delete_markers", table=self._markers, ids=placeholders(len(chunk)))
            self._retry("delete markers", lambda s=statement, c=chunk: self._execute_or_empty(s, c))
        MARKER_CACHE.discard(self.key, ids)

    def markers(self, tenant: str | None, date: dt.date) -> list[Marker]:
        params: list[Any] = [date] if tenant is None else [date, validate_tenant_id(tenant)]
        statement = self._sql(
            "markers", table=self._markers, and_tenant="" if tenant is None else "AND tenant = ?"
        )
        rows = self._read_markers("markers", statement, params, tenant=tenant)
        return latest_markers(marker_from_row(row) for row in rows)

    def latest_marker_date(self, task_family: str, tenant: str) -> dt.date | None:
        params = [task_family, validate_tenant_id(tenant)]
        statement = self._sql("latest_marker_date", table=self._markers)
        rows = self._read_markers("latest marker", statement, params, tenant=tenant)
        return rows[0][0] if rows else None

    def compact_markers(self, date: dt.date) -> None:
        """Rewrite one date's marker files into one, merge the manifests, expire the old snapshots.

        Each marker is an append: one small file and one snapshot. Checking completeness reads every file
        of the date, and every commit rewrites the table metadata listing every snapshot, so both grow with
        each marker until compacted. Safe while loads append markers (a lost commit race is retried).
        """
        for statement in self._compact_statements(date):
            self._retry(f"compact markers {date}", lambda s=statement: self._execute_or_empty(s, ()))

    def _compact_statements(self, date: dt.date) -> list[str]:
        if not isinstance(date, dt.date):
            raise TypeError(f"date expected, got {date!r}")
        # EXECUTE ... WHERE takes no parameters: the literal is built from a date object, never from text
        return [self._sql("compact_markers", table=self._markers, date=f"DATE '{date.isoformat()}'"),
                self._sql("merge_marker_manifests", table=self._markers),
                self._expire_markers_statement()]  # fmt: skip

    def _expire_markers_statement(self) -> str:
        return self._sql("expire_snapshots", table=self._markers, retention=f"'{MARKER_SNAPSHOT_RETENTION}'")

    # -------------------------------------------------------------------------------------- extras
    def query(
        self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None
    ) -> list[list[Any]]:
        """Run one statement with bound values through the boundary (tests, benchmarks, ``mozart status``)."""
        return self._execute(statement, params, tenant=tenant)

    def drop_tenant(self, tenant: str) -> None:
        """Drop the tenant's Iceberg and raw schemas with their tables, and its markers (test clean-up)."""
        validate_tenant_id(tenant)
        for catalog in (self.catalog, self.raw_catalog):
            listing = sql.statement("trino", "tables", catalog=quote_ident(catalog))
            for (name,) in self._execute(listing, [tenant, "%"], tenant=tenant):
                self._execute(self._sql("drop_table", table=qualified(catalog, tenant, name)), tenant=tenant)
            self._execute(self._sql("drop_schema", schema=qualified(catalog, tenant)), tenant=tenant)
        self._execute_or_empty(
            self._sql("delete_tenant_markers", table=self._markers), [tenant], tenant=tenant
        )
        MARKER_CACHE.clear()


def _secret_keys(settings: Settings) -> tuple[Secret, ...]:
    """What to redact from Trino's messages: the S3 secret key (an access key id is an identifier, and the
    dev stack's is a plain word that would blank out table names). Neither is ever sent in a statement."""
    return (settings.s3_secret_key,) if settings.s3_secret_key else ()
