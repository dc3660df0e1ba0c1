"""Trino + Iceberg warehouse (profile ``stack``): ``iceberg.{tenant}.{table}``, served by Trino.

Loads do not go through Trino: :class:`~mozart_luigi.warehouse.iceberg.IcebergLoader` commits the verified
Parquet parts to the same REST catalog in one snapshot, and completion markers are small objects on S3
(:class:`~mozart_luigi.markers.ObjectMarkerStore`). Trino answers what SQL answers best:
counts, ``mozart status``, tests, and the weekly snapshot expiry.

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
"""

from __future__ import annotations

__all__ = ["TrinoQueryFailed", "TrinoUnavailable", "TrinoWarehouse"]

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any, TypeVar

import pyarrow as pa
import requests
import trino
from trino.exceptions import HttpError, TrinoConnectionError, TrinoQueryError

from mozart_luigi.checksums import compare, warehouse_sums
from mozart_luigi.errors import LoadError, MozartError, WarehouseUnavailableError
from mozart_luigi.manifest import Manifest
from mozart_luigi.markers import MARKER_CACHE, Marker, ObjectMarkerStore
from mozart_luigi.objectstore import S3Objects
from mozart_luigi.retry import retrying
from mozart_luigi.secrets import Secret, redact
from mozart_luigi.settings import Settings
from mozart_luigi.warehouse import sql
from mozart_luigi.warehouse.base import DayLoad, LoadResult, ModelUpkeep, Warehouse
from mozart_luigi.warehouse.common import qualified, quote_ident
from mozart_luigi.warehouse.iceberg import IcebergLoader
from mozart_luigi.warehouse.types import columns_from_schema

log = logging.getLogger(__name__)
T = TypeVar("T")
SOURCE = "mozart-luigi"
_NOT_FOUND = {"TABLE_NOT_FOUND", "SCHEMA_NOT_FOUND"}
_ALREADY_EXISTS = {"ALREADY_EXISTS", "TABLE_ALREADY_EXISTS", "SCHEMA_ALREADY_EXISTS"}
_RETRYABLE_NAMES = {"TRANSACTION_CONFLICT", "ICEBERG_COMMIT_CONFLICT", "SERVER_STARTING_UP", "SERVER_SHUTTING_DOWN"}
_CONFLICT_WORDS = (
    "conflict",
    "requirement failed",
    "commitfailed",
    "has changed",
    "cannot commit",
    "concurrent",
    "commit state unknown",
)
_RETRY_HTTP = ("502", "503", "504")


def _refusal(exc: Exception) -> str | None:
    """A failure a retry cannot fix, named for the operator: bad credentials or an untrusted certificate."""
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "presented a certificate that is not trusted (MOZART_TRINO_VERIFY)"
    if isinstance(exc, HttpError) and str(exc).startswith(("401", "403", "error 401", "error 403")):
        return "refused the credentials (MOZART_TRINO_USER / MOZART_TRINO_PASSWORD / MOZART_TRINO_JWT)"
    return None


def _already_exists(exc: TrinoQueryFailed) -> bool:
    return exc.error_name in _ALREADY_EXISTS or (
        exc.error_name == "GENERIC_INTERNAL_ERROR" and "already exists" in str(exc).lower()
    )


class TrinoQueryFailed(LoadError):
    """A statement failed for good (user error, or a failure a retry will not fix)."""

    def __init__(
        self,
        message: str,
        *,
        query_id: str | None,
        error_name: str | None,
        tenant: str | None = None,
        table: str | None = None,
    ) -> None:
        self.query_id = query_id
        self.error_name = error_name
        super().__init__(message, tenant=tenant, table=table)


class TrinoUnavailable(WarehouseUnavailableError):
    """Trino or the Iceberg catalog is unavailable or a commit conflicted: retried with backoff."""

    def __init__(
        self, message: str, *, query_id: str | None = None, tenant: str | None = None, table: str | None = None
    ) -> None:
        self.query_id = query_id
        super().__init__(message, tenant=tenant, table=table)


class TrinoWarehouse(Warehouse):
    """Tables ``{catalog}.{tenant}.{table}`` (loaded by :class:`IcebergLoader`), markers on S3."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        catalog: str = "iceberg",
        tenant: str | None = None,
        secrets: Sequence[Secret] = (),
        attempts: int = 4,
        base_delay: float = 1.0,
        settings: Settings | None = None,
        http_scheme: str = "http",
        password: Secret | None = None,
        jwt: Secret | None = None,
        verify: bool | str = True,
    ) -> None:
        self.host, self.port, self.user = host, port, user
        self._http_scheme, self._password, self._jwt, self._verify = http_scheme, password, jwt, verify
        self.catalog = catalog
        self.key = f"trino://{host}:{port}/{catalog}"
        self._tenant = tenant or None
        self._secrets = tuple(secrets)
        self._attempts, self._base_delay = attempts, base_delay
        self._connections: dict[str | None, trino.dbapi.Connection] = {}  # by tenant tag
        self._settings = settings or Settings(profile="stack", trino_host=host, trino_port=port, trino_user=user)

    @classmethod
    def from_settings(cls, settings: Settings, tenant: str | None = None) -> TrinoWarehouse:
        credentials = tuple(s for s in (settings.trino_password, settings.trino_jwt) if s)
        return cls(
            host=settings.trino_host,
            port=settings.trino_port,
            user=settings.trino_user,
            catalog=settings.trino_catalog,
            tenant=tenant,
            secrets=(*_secret_keys(settings), *credentials),
            settings=settings,
            http_scheme=settings.trino_http_scheme,
            password=settings.trino_password,
            jwt=settings.trino_jwt,
            verify=settings.trino_verify,
        )

    @cached_property
    def loader(self) -> IcebergLoader:
        return IcebergLoader(self._settings)

    @cached_property
    def marker_store(self) -> ObjectMarkerStore:
        return ObjectMarkerStore(S3Objects(self._settings), self._settings.markers_root)

    # --------------------------------------------------------------------------------- the boundary
    def _connection(self, tenant: str | None) -> trino.dbapi.Connection:
        """One connection per tenant tag; over HTTPS with the password (HTTP basic) or JWT when configured.

        The credential travels only in the ``Authorization`` header, revealed here and nowhere else.
        """
        tag = tenant or self._tenant
        key = tag
        if key not in self._connections:
            # the catalog's guard (default 7d) would refuse a retention the operator set below 7 days; every
            # expire_snapshots here passes its own explicit threshold
            session = {
                f"{self.catalog}.expire_snapshots_min_retention": "0s",
                f"{self.catalog}.remove_orphan_files_min_retention": "1d",
            }
            auth: trino.auth.Authentication | None = None
            if self._password:
                auth = trino.auth.BasicAuthentication(self.user, self._password.reveal())
            elif self._jwt:
                auth = trino.auth.JWTAuthentication(self._jwt.reveal())
            self._connections[key] = trino.dbapi.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                http_scheme=self._http_scheme,
                source=SOURCE,
                catalog=self.catalog,
                client_tags=[f"tenant:{tag}"] if tag else [],
                timezone="UTC",
                session_properties=session,
                auth=auth,
                http_session=_VerifyingSession(self._verify),
            )
        return self._connections[key]

    def _execute(
        self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None, table: str | None = None
    ) -> list[list[Any]]:
        """Run one statement; every driver error leaves here translated (with the query id)."""
        return self._execute_described(statement, params, tenant=tenant, table=table)[0]

    def _execute_described(
        self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None, table: str | None = None
    ) -> tuple[list[list[Any]], list[tuple[str, str]]]:
        """:meth:`_execute`, also returning the result's columns as (name, Trino type)."""
        cursor = self._connection(tenant).cursor()
        try:
            cursor.execute(statement, list(params) if params else None)
            rows = cursor.fetchall()
            return rows, [(column[0], column[1]) for column in cursor.description or ()]
        except TrinoQueryError as exc:
            raise self._translate(exc, tenant, table) from exc
        except (HttpError, TrinoConnectionError, requests.ConnectionError, requests.Timeout) as exc:
            what = _refusal(exc)
            message = self._clean(
                f"Trino at {self.host}:{self.port} {what or 'unavailable'}: {type(exc).__name__}: {exc}"
            )
            if what or (isinstance(exc, HttpError) and not str(exc).startswith(_RETRY_HTTP)):
                raise TrinoQueryFailed(
                    message, query_id=cursor.query_id, error_name=None, tenant=tenant, table=table
                ) from exc
            raise TrinoUnavailable(message, query_id=cursor.query_id, tenant=tenant, table=table) from exc
        finally:
            cursor.close()

    def _create(
        self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None, table: str | None = None
    ) -> None:
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
        message = self._clean(f"Trino {exc.error_type} error {exc.error_name}: {exc.message} (query {exc.query_id})")
        retryable = exc.error_name in _RETRYABLE_NAMES or (
            exc.error_name == "ICEBERG_COMMIT_ERROR" and any(w in exc.message.lower() for w in _CONFLICT_WORDS)
        )
        if retryable:
            return TrinoUnavailable(message, query_id=exc.query_id, tenant=tenant, table=table)
        return TrinoQueryFailed(message, query_id=exc.query_id, error_name=exc.error_name, tenant=tenant, table=table)

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)

    def _retry(self, what: str, operation: Callable[[], T]) -> T:
        return retrying(operation, what=what, attempts=self._attempts, base_delay=self._base_delay)

    def _sql(self, name: str, **identifiers: str) -> str:
        return sql.statement("trino", name, catalog=quote_ident(self.catalog), **identifiers)

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    # -------------------------------------------------------------------------------------- tables
    def ensure_table(self, tenant: str, table: str, schema: pa.Schema) -> list[str]:
        """Create the Iceberg table, or apply allowed drift in one commit (refused drift raises first)."""
        wanted = columns_from_schema(schema, tenant=tenant, table=table)

        def ensure() -> list[str]:
            found, plan = self.loader.ensure_table(tenant, table, wanted)
            self.loader.evolve(found, plan)
            return plan.describe()

        return self._retry(f"ensure_table {tenant}.{table}", ensure)

    def load_day(self, load: DayLoad) -> LoadResult:
        """:meth:`IcebergLoader.load_day` (one verified commit), then the task's marker object."""
        proof = {
            "mozart.task-id": load.marker.task_id,
            "mozart.tenant": load.manifest.tenant,
            "mozart.table": load.manifest.table,
        }
        result = self.loader.load_day(load.manifest, load.lake, proof)
        if load.manifest.checksums:  # after the commit, before the marker: a difference leaves no marker
            self._check_sums(load.manifest)
        details = {**load.marker.details, "snapshot_id": result.snapshot_id, "recovered": result.recovered}
        self.write_marker(replace(load.marker, rows=result.rows, details=details))
        return result

    def _check_sums(self, manifest: Manifest) -> None:
        """The day's sums of the ``checksum`` columns, compared exactly with the extract's (VerificationError)."""
        tenant, table = manifest.tenant, manifest.table
        target = qualified(self.catalog, tenant, table)
        statement = self._sql("partition_sums", table=target, sums=warehouse_sums(manifest))
        summed = lambda: self._execute(statement, [manifest.date], tenant=tenant, table=table)  # noqa: E731
        rows = self._retry(f"checksums {tenant}.{table} {manifest.date}", summed)
        compare(tenant, table, manifest.date, manifest.checksums, rows[0] if rows else ())

    def count_partition(self, tenant: str, table: str, date: dt.date) -> int:
        statement = self._sql("count_partition", table=qualified(self.catalog, tenant, table))
        count = lambda: self._execute_or_empty(statement, [date], tenant=tenant, table=table)  # noqa: E731
        rows = self._retry(f"count {tenant}.{table} {date}", count)
        return int(rows[0][0]) if rows else 0

    def _execute_or_empty(
        self, statement: str, params: Sequence[Any], *, tenant: str | None = None, table: str | None = None
    ) -> list[list[Any]]:
        """Like :meth:`_execute`, but a missing schema or table reads as no rows."""
        try:
            return self._execute(statement, params, tenant=tenant, table=table)
        except TrinoQueryFailed as exc:
            if exc.error_name in _NOT_FOUND:
                return []
            raise

    def expire_snapshots(self, tenant: str, table: str, retention_days: int) -> int | None:
        """``expire_snapshots`` on ``{tenant}.{table}``: every load adds a snapshot, and every commit rewrites
        metadata that lists them all. It deletes only files the table owns (copies, never the raw parts)."""
        return self._expire(tenant, tenant, table, retention_days)

    def _expire(self, tenant: str, schema: str, table: str, retention_days: int) -> int:
        """Merge manifests, expire snapshots older than ``retention_days``, remove orphan files older than a day
        (at least) of ``{schema}.{table}``; the snapshots left."""
        if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 0:
            raise ValueError(f"retention_days must be a whole number >= 0, got {retention_days!r}")
        target = qualified(self.catalog, schema, table)
        where = f"{schema}.{table}"
        # EXECUTE takes no parameters: the threshold is rendered from a checked int, never from text
        expire = self._sql("expire_snapshots", table=target, retention=f"'{retention_days}d'")
        # one manifest per load piles up: merged, so planning a load stays flat in the table's history
        manifests = self._sql("optimize_manifests", table=target)
        self._retry(f"merge manifests {where}", lambda: self._execute(manifests, tenant=tenant, table=table))
        self._retry(f"expire snapshots {where}", lambda: self._execute(expire, tenant=tenant, table=table))
        # copies of loads killed before their commit: unreferenced, older than a day (no load runs that long)
        orphans = self._sql("remove_orphan_files", table=target, retention=f"'{max(retention_days, 1)}d'")
        self._retry(f"remove orphans {where}", lambda: self._execute(orphans, tenant=tenant, table=table))
        count = self._sql("count_snapshots", table=qualified(self.catalog, schema, f"{table}$snapshots"))
        return int(self._execute(count, tenant=tenant, table=table)[0][0])

    def upkeep_models(self, tenant: str, schemas: Sequence[str], retention_days: int) -> ModelUpkeep | None:
        """Every Iceberg table (not view) of ``schemas``: ``optimize`` (small files and a ``MERGE``'s delete
        files rewritten into few files; the rows are the same), then :meth:`_expire`. One table failing is
        logged and recorded, the others go on; the caller treats the whole as best effort."""
        tables = before = after = deletes_before = deletes_after = 0
        failed: list[str] = []
        for schema in schemas:
            for name, kind in self._execute(self._sql("relations"), [schema], tenant=tenant):
                if kind != "BASE TABLE":
                    continue
                try:
                    files = qualified(self.catalog, schema, f"{name}$files")
                    count = self._sql("count_data_files", table=files)
                    n, deletes = self._execute(count, tenant=tenant, table=name)[0]
                    optimize = self._sql("optimize", table=qualified(self.catalog, schema, name))
                    self._retry(f"optimize {schema}.{name}", functools.partial(self._execute, optimize, tenant=tenant))
                    self._expire(tenant, schema, name, retention_days)
                    m, deletes_left = self._execute(count, tenant=tenant, table=name)[0]
                except MozartError as exc:
                    log.warning("tenant %s: upkeep of %s.%s failed: %s", tenant, schema, name, exc)
                    failed.append(f"{schema}.{name}: {exc}")
                    continue
                tables += 1
                before, after = before + int(n), after + int(m)
                deletes_before, deletes_after = deletes_before + int(deletes), deletes_after + int(deletes_left)
        return ModelUpkeep(tables, before, after, deletes_before, deletes_after, tuple(failed))

    # ------------------------------------------------------------------------------------- markers
    def write_marker(self, marker: Marker) -> None:
        try:
            self._retry(f"marker {marker.task_id}", lambda: self.marker_store.write(marker))
        finally:  # after the write (or its lost answer): a fetch that started before it is asked again
            MARKER_CACHE.changed()

    def completed_rows(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[tuple[str, str, dt.date]]:
        wanted = list(pairs)
        return self._retry("completed markers", lambda: self.marker_store.completed_rows(task_family, wanted))

    def delete_markers(self, tenant: str, date: dt.date, task_ids: Iterable[str]) -> None:
        ids = set(task_ids)
        try:
            self._retry("delete markers", lambda: self.marker_store.delete(tenant, date, ids))
        finally:
            MARKER_CACHE.changed()

    def markers(self, tenant: str | None, date: dt.date) -> list[Marker]:
        return self._retry("markers", lambda: self.marker_store.markers(tenant, date))

    def latest_marker_date(self, task_family: str, tenant: str) -> dt.date | None:
        return self._retry("latest marker", lambda: self.marker_store.latest_date(task_family, tenant))

    # -------------------------------------------------------------------------------------- extras
    def query(self, statement: str, params: Sequence[Any] = (), *, tenant: str | None = None) -> list[list[Any]]:
        """Run one statement with bound values through the boundary (tests, benchmarks, ``mozart status``)."""
        return self._execute(statement, params, tenant=tenant)

    def drop_schema(self, schema: str, *, tenant: str | None = None) -> None:
        """Drop one schema of the catalog with its views and tables (clean-up of a tenant's dbt schemas
        ``{tenant}_staging`` ... in tests and benchmarks)."""
        listing = self._sql("relations")
        for name, kind in self._execute(listing, [schema], tenant=tenant):
            relation = qualified(self.catalog, schema, name)
            drop = self._sql("drop_view", view=relation) if kind == "VIEW" else self._sql("drop_table", table=relation)
            self._execute(drop, tenant=tenant)
        self._execute(self._sql("drop_schema", schema=qualified(self.catalog, schema)), tenant=tenant)

    def drop_tenant(self, tenant: str) -> None:
        """Drop the tenant's Iceberg schema with its tables, and its markers (test clean-up)."""
        listing = sql.statement("trino", "tables", catalog=quote_ident(self.catalog))
        for (name,) in self._execute(listing, [tenant, "%"], tenant=tenant):
            self._execute(self._sql("drop_table", table=qualified(self.catalog, tenant, name)), tenant=tenant)
        self._execute(self._sql("drop_schema", schema=qualified(self.catalog, tenant)), tenant=tenant)
        self.marker_store.delete_tenant(tenant)
        MARKER_CACHE.clear()


class _VerifyingSession(requests.Session):
    """A session whose ``verify`` (a CA bundle path, or False) is used as given: plain requests lets
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace a session's own ``verify`` (psf/requests#3829), so
    ``MOZART_TRINO_VERIFY`` would be ignored wherever those are set. ``True`` keeps requests' usual choice."""

    def __init__(self, verify: bool | str) -> None:
        super().__init__()
        self.verify = verify

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        return super().merge_environment_settings(url, proxies, stream, self.verify if verify is None else verify, cert)


def _secret_keys(settings: Settings) -> tuple[Secret, ...]:
    """What to redact from Trino's messages: the S3 secret key (an access key id is an identifier, and the
    dev stack's is a plain word that would blank out table names). Neither is ever sent in a statement."""
    return (settings.s3_secret_key,) if settings.s3_secret_key else ()
