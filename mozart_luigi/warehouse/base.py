"""The ``Warehouse`` interface: what ``LoadIceberg`` and ``DbtRun`` need of Iceberg (via Trino) or DuckDB.

Every implementation passes ``tests/contract/test_warehouse_contract.py``. Failure semantics:
- :meth:`Warehouse.load_day` verifies the extract (names, sizes, checksums, footer row counts against the
  manifest: :mod:`mozart_luigi.verify`) and checks the schema drift **before** it changes anything, then
  replaces the date **in one commit** (one Iceberg snapshot, or one DuckDB transaction): readers see the old
  day or the new one, never a hole or a doubled day. A crash before the commit leaves the old day intact;
  after it the day is the new one, and a rerun recognises its own commit and only completes the marker;
- :meth:`ensure_table` either applies every allowed change or raises ``SchemaDriftError`` before changing
  anything;
- a marker (completion record) is written only after a verified load, or by ``DbtRun`` after its build.
"""

from __future__ import annotations

__all__ = [
    "EXTRACTED_AT_COLUMN",
    "META_SCHEMA",
    "PARTITION_COLUMN",
    "DayLoad",
    "LoadResult",
    "Marker",
    "ModelUpkeep",
    "Warehouse",
]

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.markers import Marker  # re-exported: the Warehouse ABC's marker type

PARTITION_COLUMN = "_mozart_date"
EXTRACTED_AT_COLUMN = "_mozart_extracted_at"
META_SCHEMA = "mozart_meta"


@dataclass(frozen=True)
class DayLoad:
    """One load: the manifest (already read, not yet trusted), where its parts are, and the task's marker
    (written with the data where the warehouse can, else right after the commit)."""

    manifest: Manifest
    lake: Lake
    marker: Marker


@dataclass(frozen=True)
class LoadResult:
    """What a load did: rows and files now in the date, schema changes, the commit's snapshot id (None for
    DuckDB), and ``recovered`` when the day already held exactly this extract (a rerun after a crash
    between the commit and the marker): then nothing was committed again."""

    rows: int
    files: int
    changes: tuple[str, ...] = ()
    snapshot_id: int | None = None
    recovered: bool = False


@dataclass(frozen=True)
class ModelUpkeep:
    """What :meth:`Warehouse.upkeep_models` did: tables kept up, their data files and delete files before and
    after compaction, and the tables whose upkeep failed (``{schema}.{table}: error``; best effort)."""

    tables: int
    files_before: int
    files_after: int
    delete_files_before: int
    delete_files_after: int
    failed: tuple[str, ...] = ()


class Warehouse(ABC):
    """Schema per tenant; table ``{tenant}.{table}`` partitioned by ``_mozart_date``."""

    @abstractmethod
    def ensure_table(self, tenant: str, table: str, schema: pa.Schema) -> list[str]:
        """Create schema and table when missing, or apply allowed drift (add column, widen).

        Returns a description of each change applied. Raises ``SchemaDriftError`` naming the column and
        both types, before any change, for narrowing, type changes and dropped columns. (A load applies the
        same rules inside its own commit; this is the standalone form.)
        """

    @abstractmethod
    def load_day(self, load: DayLoad) -> LoadResult:
        """Verify the extract, apply allowed drift, and replace the date with exactly the manifest's parts in
        one commit; then record ``load.marker`` (with the rows). Raises ``ExtractBrokenError`` (the extract is
        bad), ``SchemaDriftError`` (refused drift) or ``VerificationError`` before any commit."""

    @abstractmethod
    def count_partition(self, tenant: str, table: str, date: dt.date) -> int:
        """Rows in the ``_mozart_date = date`` partition (0 when the table does not exist)."""

    @abstractmethod
    def write_marker(self, marker: Marker) -> None:
        """Record a completed task (replacing an older marker of the same task id)."""

    def expire_snapshots(self, tenant: str, table: str, retention_days: int) -> int | None:  # noqa: ARG002
        """Housekeeping: forget the table's snapshots older than ``retention_days`` (the newest is kept).

        Returns how many snapshots remain, or None where there are none to expire (DuckDB).
        """
        return None

    def upkeep_models(self, tenant: str, schemas: Sequence[str], retention_days: int) -> ModelUpkeep | None:  # noqa: ARG002
        """Housekeeping of the tables dbt builds in ``schemas`` (the tenant's staging and mart): compact their
        files (the small files and delete files each incremental ``MERGE`` leaves), merge manifests, expire
        snapshots older than ``retention_days``, remove orphan files. None where there is nothing to do
        (DuckDB: dbt rewrites its tables in the database file)."""
        return None

    def completed(self, task_family: str, tenant: str, date: dt.date) -> set[str]:
        """Task ids with a marker for one family, tenant and date."""
        return self.completed_many(task_family, [(tenant, date)])

    def completed_many(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[str]:
        """Task ids with a marker for any of the (tenant, date) pairs (see :meth:`completed_rows`)."""
        return {task_id for task_id, _, _ in self.completed_rows(task_family, pairs)}

    @abstractmethod
    def completed_rows(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[tuple[str, str, dt.date]]:
        """``(task_id, tenant, date)`` of every marker for the (tenant, date) pairs, in one query.

        Like :meth:`completed_many`, with the tenant and date of each id so a cache can be filled per pair.
        """

    @abstractmethod
    def delete_markers(self, tenant: str, date: dt.date, task_ids: Iterable[str]) -> None:
        """Forget these markers of one tenant and date (to force a rerun)."""

    @abstractmethod
    def markers(self, tenant: str | None, date: dt.date) -> list[Marker]:
        """All markers for a date (optionally one tenant), for run reports and ``mozart status``."""

    @abstractmethod
    def latest_marker_date(self, task_family: str, tenant: str) -> dt.date | None:
        """The newest date with a marker of ``task_family`` for ``tenant`` (None when there is none).

        ``DbtRun`` uses it so that rebuilding an older date never takes the marts back in time.
        """

    @abstractmethod
    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one read-only statement with bound values (status, reports, tests)."""

    @abstractmethod
    def drop_tenant(self, tenant: str) -> None:
        """Drop a tenant's tables and forget its markers (tenant removal, test clean-up)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
