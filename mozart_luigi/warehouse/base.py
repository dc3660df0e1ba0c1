"""The ``Warehouse`` interface: what ``LoadIceberg`` and ``DbtRun`` need of Trino+Iceberg or DuckDB.

Every implementation passes ``tests/contract/test_warehouse_contract.py``. Failure semantics:
- :meth:`ensure_table` either applies every allowed change or raises ``SchemaDriftError`` before changing
  anything;
- :meth:`replace_partition` may leave the partition half-replaced when it crashes (Trino has no
  multi-statement transactions); it is idempotent, so a rerun converges. No marker is written by it;
- a marker is written only after the partition count was verified (:meth:`write_verified_marker`).
"""

from __future__ import annotations

__all__ = ["EXTRACTED_AT_COLUMN", "META_SCHEMA", "PARTITION_COLUMN", "Marker", "Warehouse"]

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest

PARTITION_COLUMN = "_mozart_date"
EXTRACTED_AT_COLUMN = "_mozart_extracted_at"
META_SCHEMA = "mozart_meta"


@dataclass(frozen=True)
class Marker:
    """One completed task, stored in ``{warehouse}.mozart_meta.task_markers``."""

    task_family: str
    task_id: str
    tenant: str
    date: dt.date
    table: str | None = None
    rows: int | None = None
    finished_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    details: dict[str, Any] = field(default_factory=dict)


class Warehouse(ABC):
    """Schema per tenant; table ``{tenant}.{table}`` partitioned by ``_mozart_date``."""

    @abstractmethod
    def ensure_table(self, tenant: str, table: str, schema: pa.Schema, *, date: dt.date | None = None) -> list[str]:
        """Create schema and table when missing, or apply allowed drift (add column, widen).

        Returns a description of each change applied. Raises ``SchemaDriftError`` naming the column and
        both types, before any change, for narrowing, type changes and dropped columns. ``date``: the
        partition the caller replaces next; a warehouse may count it in the same round trip.
        """

    @abstractmethod
    def replace_partition(self, tenant: str, table: str, manifest: Manifest, lake: Lake) -> int:
        """Delete the ``_mozart_date = manifest.date`` partition, insert exactly the manifest's files.

        Returns the number of rows inserted.
        """

    @abstractmethod
    def count_partition(self, tenant: str, table: str, date: dt.date) -> int:
        """Rows in the ``_mozart_date = date`` partition (0 when the table does not exist)."""

    @abstractmethod
    def write_marker(self, marker: Marker) -> None:
        """Record a completed task (replacing an older marker of the same task id)."""

    def write_verified_marker(self, marker: Marker, expected_rows: int) -> int:
        """Count ``marker.table``'s ``marker.date`` partition; write ``marker`` (with that count) only when it
        equals ``expected_rows``. Returns the count: the caller fails the task when it differs.

        Trino does all of it in one statement (the marker INSERT selects from the count); this default is
        the two steps.
        """
        if marker.table is None:
            raise ValueError(f"marker {marker.task_id} names no table to count")
        rows = self.count_partition(marker.tenant, marker.table, marker.date)
        if rows == expected_rows:
            self.write_marker(replace(marker, rows=rows))
        return rows

    def expire_snapshots(self, tenant: str, table: str, retention_days: int) -> int | None:  # noqa: ARG002
        """Housekeeping: forget the table's snapshots older than ``retention_days`` (the newest is kept).

        Returns how many snapshots remain, or None where there are none to expire (DuckDB).
        """
        return None

    @abstractmethod
    def completed(self, task_family: str, tenant: str, date: dt.date) -> set[str]:
        """Task ids with a marker for this family, tenant and date: one query, for bulk completeness."""

    @abstractmethod
    def completed_many(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[str]:
        """Task ids with a marker for any of the (tenant, date) pairs: one query for a whole backfill."""

    @abstractmethod
    def completed_rows(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[tuple[str, str, dt.date]]:
        """``(task_id, tenant, date)`` of every marker for the (tenant, date) pairs, in one query.

        Like :meth:`completed_many`, with the tenant and date of each id so a cache can be filled per pair.
        """

    @abstractmethod
    def delete_markers(self, task_ids: Iterable[str]) -> None:
        """Forget markers (to force a rerun)."""

    @abstractmethod
    def markers(self, tenant: str | None, date: dt.date) -> list[Marker]:
        """All markers for a date (optionally one tenant), for run reports and ``mozart status``."""

    @abstractmethod
    def latest_marker_date(self, task_family: str, tenant: str) -> dt.date | None:
        """The newest date with a marker of ``task_family`` for ``tenant`` (None when there is none).

        ``DbtRun`` uses it so that rebuilding an older date never takes the marts back in time.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
