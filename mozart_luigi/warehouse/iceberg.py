"""The Iceberg day load (profile ``stack``): one verified, zero-copy commit per table and date.

The one module that imports ``pyiceberg``. It talks to the same Iceberg REST catalog as Trino, so what it
commits is what Trino serves. Why pyiceberg: Trino 476's ``add_files`` refuses partitioned tables and an
``INSERT … SELECT`` re-encodes every value in two commits; pyiceberg can commit existing Parquet files, with
a delete of the date's old files, in **one snapshot** (see ``docs/load.md``).

:meth:`IcebergLoader.load_day`, in order (a crash at any step before 6 leaves the old day intact):

1. check the manifest (:func:`mozart_luigi.verify.check_manifest`: names, counts, recorded checksums);
2. HEAD every raw part: size and ETag must be the manifest's;
3. load ``{tenant}.{table}``; plan the schema drift (refused drift raises here); if the date already holds
   exactly this extract's files (a rerun after a crash between commit and marker), stop: nothing is
   committed twice. A table that does not exist yet is *staged* (the catalog's ``stage-create``): nothing
   is created until step 6 commits the creation and the day together, so a first load is one commit too;
4. copy each part **server-side** into the table's own data location
   (``{location}/data/_mozart_date={date}/{run_id}-{n}-{attempt}.parquet``), conditional on the ETag, so
   the table owns its files: snapshot expiry and orphan cleanup can never delete the raw landing zone;
5. read each copy's Parquet footer: rows, columns and ``_mozart_date`` must match the manifest;
6. one transaction, one commit: the allowed drift (add / widen columns), the name mapping (source column
   names, in their case, map to the table's fields), and an ``overwrite`` snapshot that removes the date's
   previous files and adds the copies. Its summary carries the proof: ``mozart.task-id``, ``mozart.run-id``,
   ``mozart.date``, ``mozart.manifest-rows`` and ``mozart.file-rows`` (the footers' counts).

A commit conflict (another writer committed to the same table meanwhile, or created the staged table
first) is retried from step 3 with the same copies (made again if the table's location is not theirs).
Copies of an attempt that did not commit are deleted (a SIGKILL leaves them unreferenced, for
``remove_orphan_files``). Crash-test hooks: ``MOZART_TEST_CRASH_AT`` = ``before_copy``, ``after_copy``,
``before_commit``, ``after_commit``.
"""

from __future__ import annotations

__all__ = ["IcebergLoader", "Prestage", "prestaged_url"]

import contextlib
import datetime as dt
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    CommitStateUnknownException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    ServiceUnavailableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import EqualTo
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import CreateTableTransaction, Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.name_mapping import MappedField, NameMapping
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
    TimeType,
)

from mozart_luigi.errors import LoadError, MozartError, WarehouseUnavailableError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, PartFile
from mozart_luigi.objectstore import ObjectChangedError, ObjectInfo
from mozart_luigi.parquet import crash_point
from mozart_luigi.retry import retrying
from mozart_luigi.secrets import redact
from mozart_luigi.settings import Settings
from mozart_luigi.verify import broken, check_footer, check_manifest, check_stat, etag_equal
from mozart_luigi.warehouse.base import EXTRACTED_AT_COLUMN, PARTITION_COLUMN, LoadResult
from mozart_luigi.warehouse.types import ColumnType, DriftPlan, columns_from_schema, plan_drift

log = logging.getLogger(__name__)
T = TypeVar("T")
NAME_MAPPING = "schema.name-mapping.default"
_SIMPLE: dict[str, IcebergType] = {
    "boolean": BooleanType(),
    "integer": IntegerType(),
    "bigint": LongType(),
    "real": FloatType(),
    "double": DoubleType(),
    "varchar": StringType(),
    "varbinary": BinaryType(),
    "date": DateType(),
    "time": TimeType(),
    "timestamp": TimestampType(),
    "timestamptz": TimestamptzType(),
}


@dataclass(frozen=True)
class _Copy:
    part: PartFile
    url: str
    prestaged: bool = False  # made by the extract (Prestage): never copied nor deleted by the load


class IcebergLoader:
    """Iceberg tables ``{tenant}.{table}`` in the REST catalog, loaded from the raw lake on S3."""

    def __init__(self, settings: Settings, *, attempts: int = 6, base_delay: float = 0.2) -> None:
        self._settings = settings
        self._attempts, self._base_delay = attempts, base_delay

    @cached_property
    def catalog(self) -> Catalog:
        """The REST catalog client, one per process and settings (its ``/v1/config`` round trip and FileIO
        are paid once per worker process, not once per load)."""
        key = (os.getpid(), _settings_key(self._settings))
        with _CATALOG_LOCK:
            if key not in _CATALOGS:
                _CATALOGS[key] = self._connect()
            return _CATALOGS[key]

    def _connect(self) -> Catalog:
        s = self._settings
        props: dict[str, str] = {"uri": s.iceberg_rest_uri, "s3.path-style-access": "true", "s3.region": s.s3_region}
        if s.s3_endpoint_url:
            props["s3.endpoint"] = s.s3_endpoint_url
        if s.s3_access_key and s.s3_secret_key:
            props["s3.access-key-id"] = s.s3_access_key.reveal()
            props["s3.secret-access-key"] = s.s3_secret_key.reveal()
        if s.iceberg_rest_token:
            props["token"] = s.iceberg_rest_token.reveal()
        if s.iceberg_warehouse:
            props["warehouse"] = s.iceberg_warehouse
        return self._guard("connect to the Iceberg catalog", lambda: load_catalog("mozart", type="rest", **props))

    # ------------------------------------------------------------------------------------------ tables
    def table(self, tenant: str, table: str) -> Table | None:
        try:
            return self._guard(f"load {tenant}.{table}", lambda: self.catalog.load_table((tenant, table)))
        except _NoTable:
            return None

    def ensure_table(self, tenant: str, table: str, wanted: list[tuple[str, ColumnType]]) -> tuple[Table, DriftPlan]:
        """The table (created when missing, with ``wanted``) and the drift still to apply to it (refused
        drift raises ``SchemaDriftError`` here, before any change)."""
        found = self.table(tenant, table)
        if found is None:
            created = self._create(tenant, table, wanted)
            plan = plan_drift(columns_of(created.schema()), wanted, tenant=tenant, table=table)
            return created, DriftPlan(create=True, columns=tuple(wanted), adds=plan.adds, widens=plan.widens)
        return found, plan_drift(columns_of(found.schema()), wanted, tenant=tenant, table=table)

    def evolve(self, found: Table, plan: DriftPlan) -> None:
        """Apply ``plan`` alone, in one commit (``Warehouse.ensure_table``)."""
        if plan.adds or plan.widens:
            self._guard("evolve the schema", lambda: self._commit_schema(found, plan))

    def _commit_schema(self, found: Table, plan: DriftPlan) -> None:
        with _Transaction(found) as tx:
            _apply_drift(tx, plan)

    def _create(self, tenant: str, table: str, wanted: list[tuple[str, ColumnType]]) -> Table:
        schema, spec, props = _new_table(wanted)

        def create_table() -> Table:
            try:
                return self.catalog.create_table((tenant, table), schema=schema, partition_spec=spec, properties=props)
            except TableAlreadyExistsError:  # another worker created it first: use theirs
                return self.catalog.load_table((tenant, table))

        def create() -> Table:
            try:  # the namespace exists for all but a tenant's first table: one round trip, not two
                return create_table()
            except NoSuchNamespaceError:
                with contextlib.suppress(NamespaceAlreadyExistsError):
                    self.catalog.create_namespace(tenant)
                return create_table()

        created = self._guard(f"create {tenant}.{table}", create)
        log.info("tenant %s table %s: created Iceberg table with %d column(s)", tenant, table, len(wanted))
        return created

    def stage_create(
        self, tenant: str, table: str, wanted: list[tuple[str, ColumnType]]
    ) -> CreateTableTransaction | None:
        """A table creation staged in the catalog (nothing is created until its transaction commits, with the
        day's files: a first load is one commit, not two), or None when the table exists by now."""
        schema, spec, props = _new_table(wanted)

        def stage() -> CreateTableTransaction | None:
            try:
                return self.catalog.create_table_transaction(
                    (tenant, table), schema=schema, partition_spec=spec, properties=props
                )
            except TableAlreadyExistsError:
                return None

        def staged() -> CreateTableTransaction | None:
            try:
                return stage()
            except NoSuchNamespaceError:
                with contextlib.suppress(NamespaceAlreadyExistsError):
                    self.catalog.create_namespace(tenant)
                return stage()

        return self._guard(f"create {tenant}.{table}", staged)

    def prestage(self, lake: Lake, *, tenant: str, table: str, date: dt.date, run_id: str) -> Prestage | None:
        """The extract's half of a zero-copy load: a :class:`Prestage` into ``{tenant}.{table}``'s data
        location, or None when there is nothing to gain or it cannot be had (the table does not exist yet — its
        first load copies —, the lake is not on S3, the catalog does not answer). Never raises: the load
        copies whatever was not prestaged."""
        if lake.scheme != "s3" or not self._settings.prestage:
            return None
        try:
            found = self.table(tenant, table)
        except Exception as exc:  # noqa: BLE001 — a shortcut only: any catalog trouble means the load copies
            message = self._clean(str(exc))[:300]
            log.info("tenant %s table %s: no prestage (%s); the load will copy the parts", tenant, table, message)
            return None
        if found is None or not found.location().startswith("s3://"):
            return None
        folder = lake.date_url(tenant, table, date)
        return Prestage(lake, found.location(), folder=folder, date=date, run_id=run_id)

    # ------------------------------------------------------------------------------------------- loads
    def load_day(self, manifest: Manifest, lake: Lake, proof: dict[str, str]) -> LoadResult:
        """Steps 1-6 of the module docstring. ``proof`` goes into the snapshot summary."""
        if lake.scheme != "s3":
            raise LoadError(
                f"the Iceberg load copies parts server-side; {lake.url} is not s3://",
                tenant=manifest.tenant,
                table=manifest.table,
            )
        check_manifest(manifest, require_etag=True)
        folder = lake.date_url(manifest.tenant, manifest.table, manifest.date)
        infos = _parallel(lambda part: lake.objects.head(f"{folder}/{part.name}"), manifest.files)
        for part, info in zip(manifest.files, infos, strict=True):
            size, etag = (None, None) if info is None else (info.size, info.etag)
            check_stat(manifest, part, size=size, etag=etag)
        wanted = columns_from_schema(manifest.schema, tenant=manifest.tenant, table=manifest.table)
        attempt = _Attempt(self, manifest, lake, folder, wanted=wanted, proof=proof)
        try:
            result = retrying(
                attempt.run,
                what=f"load {manifest.tenant}.{manifest.table} {manifest.date}",
                attempts=self._attempts,
                base_delay=self._base_delay,
                max_delay=5.0,
            )
        except BaseException:
            if not attempt.maybe_committed:
                attempt.discard_copies()
            raise
        if result.changes:
            log.info("tenant %s table %s: %s", manifest.tenant, manifest.table, "; ".join(result.changes))
        return result

    # -------------------------------------------------------------------------------------- boundary
    def _guard(self, what: str, operation: Callable[[], T]) -> T:
        """pyiceberg errors leave here translated, with secrets removed: a missing table is ``_NoTable``,
        an unreachable catalog or a lost commit race is retryable."""
        try:
            return operation()
        except NoSuchTableError:
            raise _NoTable from None
        except CommitFailedException as exc:
            raise WarehouseUnavailableError(self._clean(f"{what}: commit conflict, retrying: {exc}")) from None
        except (ServiceUnavailableError, ConnectionError, OSError) as exc:
            raise WarehouseUnavailableError(self._clean(f"{what}: Iceberg catalog unavailable: {exc}")) from None
        except MozartError:
            raise
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise LoadError(self._clean(f"{what} failed: {type(exc).__name__}: {exc}")) from None

    def _clean(self, text: str) -> str:
        secrets = [*self._settings.secrets(), self._settings.iceberg_rest_token]
        return redact(text, secrets)


_CATALOGS: dict[tuple[int, str], Catalog] = {}
_CATALOG_LOCK = threading.Lock()


def _settings_key(s: Settings) -> str:
    token = s.iceberg_rest_token.reveal() if s.iceberg_rest_token else ""
    keys = (s.s3_access_key.reveal() if s.s3_access_key else "", s.s3_secret_key.reveal() if s.s3_secret_key else "")
    raw = "\0".join([s.iceberg_rest_uri, s.iceberg_warehouse or "", s.s3_endpoint_url or "", s.s3_region, token, *keys])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class _Transaction(Transaction):
    """``Transaction`` whose ``table_metadata`` is computed once per state, not once per access.

    pyiceberg 0.12 re-applies every staged update to a deep copy of the whole table metadata on each access
    of ``Transaction.table_metadata``, and one snapshot commit reads it ~20 times: with a few hundred
    snapshots in the metadata that was ~100 ms of CPU per load, growing with the table's history. The
    metadata models are frozen (pydantic ``frozen=True``) and the staged updates are a tuple replaced on
    every change, so the result is reused while the base metadata and the updates are the same objects.
    """

    _memo: tuple[TableMetadata, tuple[Any, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        memo = self._memo
        if memo is None or memo[0] is not base or memo[1] is not updates:
            memo = (base, updates, super().table_metadata)
            self._memo = memo
        return memo[2]


PRESTAGE_MAX_AGE = dt.timedelta(hours=12)  # well inside remove_orphan_files' shortest retention (1 day)


def prestaged_url(location: str, date: dt.date, run_id: str, n: int) -> str:
    """Where the extract prestages part ``n`` of ``run_id`` in a table at ``location`` (the load's own copies
    end in an 8-hex-digit attempt token instead of ``-x``)."""
    return f"{location.rstrip('/')}/data/{PARTITION_COLUMN}={date.isoformat()}/{run_id}-{n:05d}-x.parquet"


class Prestage:
    """Server-side copies of an extract's parts into its Iceberg table's data location, made one at a time on
    a background thread as each part is finished, while the extract reads the next one.

    The load looks for them by name (:func:`prestaged_url`) and registers one instead of copying only when
    its size and ETag are the manifest's (a server-side copy keeps the source's ETag on SeaweedFS and MinIO;
    where a store changes it, the load copies as before), it is younger than :data:`PRESTAGE_MAX_AGE` (so
    ``remove_orphan_files`` cannot take it between the check and the commit) and its footer passes the same
    checks as a copy's. A prestaged copy is never trusted for more than a shortcut: every failure here only
    means the load copies. Copies of an extract that publishes no manifest are deleted (:meth:`discard`); a
    killed extract leaves them unreferenced in the table's location, for ``remove_orphan_files``.
    """

    def __init__(self, lake: Lake, location: str, *, folder: str, date: dt.date, run_id: str) -> None:
        self._lake, self._location, self._folder = lake, location.rstrip("/"), folder
        self._date, self._run_id = date, run_id
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prestage")
        self._jobs: list[tuple[str, Future[ObjectInfo]]] = []

    def submit(self, n: int, part: PartFile) -> None:
        """Start copying part ``n``, just closed in the extract's ``folder`` (``PartWriter``'s ``on_part``);
        empty parts are never registered, so never copied."""
        if not part.rows or not part.etag:
            return
        target = prestaged_url(self._location, self._date, self._run_id, n)
        source = f"{self._folder}/{part.name}"
        self._jobs.append((target, self._pool.submit(self._lake.objects.copy_if_match, source, target, part.etag)))

    def finish(self) -> int:
        """Wait for every copy; returns how many were made (failures are logged: the load copies those)."""
        made = 0
        for target, job in self._jobs:
            try:
                job.result()
                made += 1
            except Exception as exc:  # noqa: BLE001 — a shortcut failed; the load copies instead
                log.warning("prestage of %s failed (the load will copy the part): %s", target, exc)
        self._pool.shutdown(wait=True)
        return made

    def discard(self) -> None:
        """Delete this extract's prestaged copies (it publishes no manifest: no load can reference them)."""
        self.finish()
        for target, _job in self._jobs:
            try:
                self._lake.objects.delete(target)
            except MozartError as exc:
                log.warning("could not delete the prestaged copy %s: %s", target, exc)


class _NoTable(Exception):
    """Internal: the table does not exist."""


class _Attempt:
    """One load's state across commit retries: the copies are made once and reused."""

    def __init__(
        self,
        loader: IcebergLoader,
        manifest: Manifest,
        lake: Lake,
        folder: str,
        *,
        wanted: list[tuple[str, ColumnType]],
        proof: dict[str, str],
    ) -> None:
        self.loader, self.manifest, self.lake, self.folder = loader, manifest, lake, folder
        self.wanted, self.proof = wanted, proof
        self.copies: list[_Copy] = []
        self.footers: list[pq.FileMetaData] = []
        self.maybe_committed = False
        self.token = uuid.uuid4().hex[:8]

    def run(self) -> LoadResult:
        m = self.manifest
        found = self.loader.table(m.tenant, m.table)
        if found is None:
            staged = self.loader.stage_create(m.tenant, m.table, self.wanted)
            if staged is not None:
                return self._create_with_day(staged)
            found, plan = self.loader.ensure_table(m.tenant, m.table, self.wanted)  # created meanwhile
        else:
            plan = plan_drift(columns_of(found.schema()), self.wanted, tenant=m.tenant, table=m.table)
        current = self.loader._guard("plan the date", lambda: _date_files(found, m.date))
        if _holds_exactly(current, m):
            log.info(
                "tenant %s table %s date %s: already holds extract %s (commit found, no new commit)",
                m.tenant,
                m.table,
                m.date,
                m.run_id,
            )
            snapshot = found.current_snapshot()
            return LoadResult(
                rows=m.row_count,
                files=len(current),
                recovered=True,
                snapshot_id=snapshot.snapshot_id if snapshot else None,
            )
        self._copy(found.location(), current)
        crash_point("before_commit")
        try:
            snapshot_id = self.loader._guard("commit", lambda: self._commit(found, plan, current))
        except CommitStateUnknownException as exc:
            self.maybe_committed = True  # the copies may now be referenced: keep them
            raise WarehouseUnavailableError(self.loader._clean(f"commit outcome unknown: {exc}")) from None
        crash_point("after_commit")
        return LoadResult(
            rows=m.row_count, files=len(self.copies), changes=tuple(plan.describe()), snapshot_id=snapshot_id
        )

    def _create_with_day(self, staged: CreateTableTransaction) -> LoadResult:
        """A first load: the staged creation, the name mapping and the day's files in one commit. Another
        worker creating the table meanwhile fails it as a conflict: the retry loads into theirs."""
        m = self.manifest
        self._copy(staged.table_metadata.location, prestaged=False)  # a new table: nothing was prestaged
        crash_point("before_commit")
        try:
            snapshot_id = self.loader._guard("create and commit", lambda: self._commit_created(staged))
        except CommitStateUnknownException as exc:
            self.maybe_committed = True
            raise WarehouseUnavailableError(self.loader._clean(f"commit outcome unknown: {exc}")) from None
        crash_point("after_commit")
        plan = DriftPlan(create=True, columns=tuple(self.wanted))
        return LoadResult(
            rows=m.row_count, files=len(self.copies), changes=tuple(plan.describe()), snapshot_id=snapshot_id
        )

    def _commit_created(self, tx: CreateTableTransaction) -> int | None:
        m = self.manifest
        tx.set_properties({NAME_MAPPING: _name_mapping(tx.table_metadata.schema(), None, m)})
        pairs = zip(self.copies, self.footers, strict=True)
        files = [_data_file(tx.table_metadata, m, copy, meta) for copy, meta in pairs]
        with tx.update_snapshot(snapshot_properties=self._summary()).fast_append() as append:
            for data_file in files:
                append.append_data_file(data_file)
        snapshot = tx.commit_transaction().current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def _summary(self) -> dict[str, str]:
        m = self.manifest
        return {
            **self.proof,
            "mozart.run-id": m.run_id,
            "mozart.date": m.date.isoformat(),
            "mozart.manifest-rows": str(m.row_count),
            "mozart.file-rows": ",".join(str(meta.num_rows) for meta in self.footers),
        }

    def _copy(self, table_location: str, current: Sequence[Any] = (), *, prestaged: bool = True) -> None:
        """Copy the parts into ``table_location`` once per load, or take the extract's prestaged copies there
        (``prestaged``); copies an earlier attempt made elsewhere (the table another worker created meanwhile
        lives at another location) are dropped and made again."""
        location = table_location.rstrip("/")
        checked = len(self.footers) == len(self.copies)  # an attempt stopped between copy and check: again
        if self.copies and checked and all(copy.url.startswith(f"{location}/") for copy in self.copies):
            return
        if self.copies:
            self.discard_copies()
            self.copies, self.footers = [], []
        m = self.manifest
        if not location.startswith("s3://"):
            raise LoadError(f"table location {location} is not on S3", tenant=m.tenant, table=m.table)
        crash_point("before_copy")
        parts = []
        for n, part in enumerate(m.files):
            if not part.rows:  # an empty extract's typed zero-row part: checked, never registered
                check_footer(m, part, _footer(self.lake, f"{self.folder}/{part.name}"))
                continue
            parts.append((n, part))
        ready = self._prestaged(location, parts, current) if prestaged else {}
        for n, part in parts:
            if n in ready:
                self.copies.append(_Copy(part, ready[n][0], prestaged=True))
                continue
            target = f"{location}/data/{PARTITION_COLUMN}={m.date.isoformat()}/{m.run_id}-{n:05d}-{self.token}.parquet"
            self.copies.append(_Copy(part, target))
        # server-side, several at once: cost in files, not rows (none at all for prestaged parts)
        _parallel(self._copy_one, [copy for copy in self.copies if not copy.prestaged])
        crash_point("after_copy")
        tails = dict(ready.values())  # a prestaged copy's footer came with its check
        self.footers = _parallel(lambda copy: _footer(self.lake, copy.url, tails.get(copy.url)), self.copies)
        for copy, meta in zip(self.copies, self.footers, strict=True):
            check_footer(m, copy.part, meta)
        if ready:
            log.info(
                "tenant %s table %s date %s: %d of %d part(s) prestaged by the extract, %d copied",
                m.tenant,
                m.table,
                m.date,
                len(ready),
                len(parts),
                len(parts) - len(ready),
            )

    def _prestaged(
        self, location: str, parts: Sequence[tuple[int, PartFile]], current: Sequence[Any]
    ) -> dict[int, tuple[str, bytes]]:
        """The parts the extract prestaged (:class:`Prestage`) that can be registered as they are: same size
        and ETag as the manifest says of the raw part, young enough, not already a file of the table. One
        ranged GET each answers both the check and the footer read: {part number: (url, its last bytes)}."""
        if not parts or not self.loader._settings.prestage:
            return {}
        m = self.manifest
        urls = [prestaged_url(location, m.date, m.run_id, n) for n, _part in parts]
        answers = _parallel(lambda url: self.lake.objects.tail_and_info(url, _FOOTER_GUESS), urls)
        taken = {task.file.file_path for task in current}
        now = dt.datetime.now(dt.UTC)
        ready = {}
        for (n, part), url, answer in zip(parts, urls, answers, strict=True):
            if answer is None or url in taken:
                continue
            tail, info = answer
            if info.size != part.bytes or not etag_equal(info.etag, part.etag):
                continue
            if info.modified is None or not now - PRESTAGE_MAX_AGE < info.modified <= now + dt.timedelta(minutes=5):
                continue
            ready[n] = (url, tail)
        return ready

    def _copy_one(self, copy: _Copy) -> None:
        try:
            self.lake.objects.copy_if_match(f"{self.folder}/{copy.part.name}", copy.url, copy.part.etag or "")
        except ObjectChangedError as exc:
            message = f"changed or vanished before it was copied: {exc}"
            raise broken(self.manifest, message, file=copy.part.name) from None

    def _commit(self, found: Table, plan: DriftPlan, current: Sequence[Any]) -> int | None:
        m = self.manifest
        summary = self._summary()
        with _Transaction(found) as tx:
            _apply_drift(tx, plan)
            schema = tx.table_metadata.schema()
            mapping = _name_mapping(schema, tx.table_metadata.properties.get(NAME_MAPPING), m)
            if mapping != tx.table_metadata.properties.get(NAME_MAPPING):
                tx.set_properties({NAME_MAPPING: mapping})
            pairs = zip(self.copies, self.footers, strict=True)
            files = [_data_file(tx.table_metadata, m, copy, meta) for copy, meta in pairs]
            with tx.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
                for task in current:
                    overwrite.delete_data_file(task.file)
                for data_file in files:
                    overwrite.append_data_file(data_file)
        snapshot = found.current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def discard_copies(self) -> None:
        for copy in self.copies:
            if copy.prestaged:  # the extract's: the rerun may register it; else remove_orphan_files takes it
                continue
            try:
                self.lake.objects.delete(copy.url)
            except MozartError as exc:
                log.warning("could not delete the uncommitted copy %s: %s", copy.url, exc)


# ------------------------------------------------------------------------------------------- helpers
def _new_table(wanted: list[tuple[str, ColumnType]]) -> tuple[Schema, PartitionSpec, dict[str, str]]:
    """Schema (source columns, then ``_mozart_date`` and ``_mozart_extracted_at``), the identity partition on
    ``_mozart_date`` and the properties of a new table."""
    fields = [NestedField(i + 1, name, iceberg_type(kind), required=False) for i, (name, kind) in enumerate(wanted)]
    n = len(fields)
    fields += [
        NestedField(n + 1, PARTITION_COLUMN, DateType(), required=False),
        NestedField(n + 2, EXTRACTED_AT_COLUMN, TimestamptzType(), required=False),
    ]
    spec = PartitionSpec(
        PartitionField(source_id=n + 1, field_id=1000, transform=IdentityTransform(), name=PARTITION_COLUMN)
    )
    return Schema(*fields), spec, {"format-version": "2", "write.format.default": "PARQUET"}


def _parallel(action: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """``action`` over ``items`` on a few threads (S3 round trips), results in order; the first error wins."""
    if len(items) <= 1:
        return [action(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(action, items))


def _date_files(found: Table, date: dt.date) -> list[Any]:
    if found.current_snapshot() is None:
        return []
    # pydantic's synthesized __init__ hides pyiceberg's own EqualTo(term, literal)
    return list(found.scan(row_filter=EqualTo(PARTITION_COLUMN, date)).plan_files())  # type: ignore[call-arg, misc]


def _holds_exactly(current: Sequence[Any], m: Manifest) -> bool:
    """The date's files are exactly this extract's non-empty parts (names, record counts), no delete files."""
    parts = [(n, part) for n, part in enumerate(m.files) if part.rows]
    if len(current) != len(parts) or any(task.delete_files for task in current):
        return False
    by_name = {task.file.file_path.rsplit("/", 1)[-1]: task.file for task in current}
    for n, part in parts:
        matches = [f for name, f in by_name.items() if name.startswith(f"{m.run_id}-{n:05d}-")]
        if len(matches) != 1 or matches[0].record_count != part.rows:
            return False
    return True


_FOOTER_GUESS = 64 * 1024  # a part's footer is a few KB: one ranged GET usually holds it whole


def _footer(lake: Lake, url: str, tail: bytes | None = None) -> pq.FileMetaData:
    """The Parquet footer of ``url`` from its last bytes (one ranged GET, or ``tail`` when they were read
    already; a second GET when the footer is larger than the first guess), parsed by Arrow."""
    try:
        if tail is None:
            tail = lake.objects.tail(url, _FOOTER_GUESS)
        if tail is None:
            raise LoadError(f"cannot read the footer of {url}: no such object")
        if len(tail) < 12 or tail[-4:] != b"PAR1":
            raise LoadError(f"cannot read the footer of {url}: not a Parquet file")
        needed = int.from_bytes(tail[-8:-4], "little") + 8
        if needed > len(tail):
            tail = lake.objects.tail(url, needed) or b""
        return pq.read_metadata(pa.BufferReader(tail))
    except (OSError, pa.ArrowException) as exc:
        raise LoadError(f"cannot read the footer of {url}: {exc}") from exc


def _apply_drift(tx: Any, plan: DriftPlan) -> None:
    if not (plan.adds or plan.widens):
        return
    with tx.update_schema() as update:
        for name, kind in plan.adds:
            update.add_column(name, iceberg_type(kind))
        for name, _old, new in plan.widens:
            update.update_column(name, field_type=iceberg_type(new))


def _name_mapping(schema: Schema, current: str | None, m: Manifest) -> str:
    """The table's fields, each also known by every source spelling seen (Parquet parts keep the source's
    column names; the table's are lower-case): this one's and those already in the mapping."""
    previous: dict[int | None, set[str]] = {}
    if current:
        for field in NameMapping.model_validate_json(current):
            previous[field.field_id] = set(field.names)
    raw = {f.name.lower(): f.name for f in m.schema}
    fields = []
    for field in schema.name_mapping:
        names = set(field.names) | previous.get(field.field_id, set())
        names |= {raw[name] for name in field.names if name in raw}
        fields.append(MappedField(field_id=field.field_id, names=sorted(names), fields=field.fields))
    return NameMapping(fields).model_dump_json()


def _data_file(metadata: Any, m: Manifest, copy: _Copy, meta: pq.FileMetaData) -> DataFile:
    schema = metadata.schema()
    raw = {f.name.lower(): f.name for f in m.schema}
    mapping: dict[str, int] = {}
    for path, field_id in parquet_path_to_id_mapping(schema).items():
        head, dot, rest = path.partition(".")
        mapping[raw.get(head, head) + dot + rest] = field_id
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=meta,
        stats_columns=compute_statistics_plan(schema, metadata.properties),
        parquet_column_mapping=mapping,
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=copy.url,
        file_format=FileFormat.PARQUET,
        partition=stats.partition(metadata.spec(), schema),
        file_size_in_bytes=copy.part.bytes,
        sort_order_id=None,
        spec_id=metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **stats.to_serialized_dict(),
    )


def iceberg_type(kind: ColumnType) -> IcebergType:
    if kind.kind == "decimal":
        return DecimalType(kind.precision or 38, kind.scale or 0)
    if kind.kind == "array" and kind.element is not None:
        return ListType(element_id=1, element_type=iceberg_type(kind.element), element_required=False)
    if kind.kind in _SIMPLE:
        return _SIMPLE[kind.kind]
    raise LoadError(f"no Iceberg type for {kind}")


def column_type(kind: IcebergType) -> ColumnType:
    if isinstance(kind, DecimalType):
        return ColumnType("decimal", kind.precision, kind.scale)
    if isinstance(kind, ListType):
        return ColumnType("array", element=column_type(kind.element_type))
    for name, simple in _SIMPLE.items():
        if kind == simple:
            return ColumnType(name)
    return ColumnType(str(kind))


def columns_of(schema: Schema) -> dict[str, ColumnType]:
    return {field.name: column_type(field.field_type) for field in schema.fields}
