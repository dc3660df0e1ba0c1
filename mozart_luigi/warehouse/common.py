"""What both warehouses share: identifier quoting (re-exported from :mod:`mozart_luigi.names`), the marker
row layout, the per-process marker cache and the crash hook used by the convergence test.

``MOZART_TEST_CRASH_AT=after_delete`` makes :func:`crash_point` (the extract's hook, re-exported) kill the
current process (SIGKILL, like an OOM kill or ``kill -9``) right after a partition was deleted and before
it is re-inserted. Tests use it to prove a rerun converges; it is a no-op when the variable is unset.
"""

from __future__ import annotations

__all__ = [
    "MARKER_CACHE",
    "MARKER_COLUMNS",
    "MarkerCache",
    "crash_point",
    "latest_markers",
    "marker_from_row",
    "marker_row",
    "placeholders",
    "qualified",
    "quote_ident",
    "warehouse_key",
]

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from mozart_luigi.names import qualified, quote_ident  # re-exported: the quoting rule lives in names.py
from mozart_luigi.parquet import crash_point
from mozart_luigi.settings import Settings
from mozart_luigi.warehouse.base import Marker

log = logging.getLogger(__name__)
MARKER_COLUMNS = (
    "task_family",
    "task_id",
    "tenant",
    "table_name",
    "run_date",
    "rows",
    "finished_at",
    "details",
)


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def warehouse_key(settings: Settings) -> str:
    """Identity of the warehouse a profile talks to (the marker cache is keyed by it)."""
    if settings.profile == "stack":
        return f"trino://{settings.trino_host}:{settings.trino_port}/{settings.trino_catalog}"
    return f"duckdb://{settings.duckdb_path}"


# ------------------------------------------------------------------------------------------- markers
def marker_row(marker: Marker) -> tuple[Any, ...]:
    finished = marker.finished_at if marker.finished_at.tzinfo else marker.finished_at.replace(tzinfo=dt.UTC)
    return (
        marker.task_family,
        marker.task_id,
        marker.tenant,
        marker.table,
        marker.date,
        marker.rows,
        finished.astimezone(dt.UTC),
        json.dumps(marker.details, sort_keys=True, default=str),
    )


def marker_from_row(row: Sequence[Any]) -> Marker:
    family, task_id, tenant, table, run_date, rows, finished_at, details = row
    if isinstance(finished_at, dt.datetime) and finished_at.tzinfo is None:
        finished_at = finished_at.replace(tzinfo=dt.UTC)
    return Marker(
        task_family=family,
        task_id=task_id,
        tenant=tenant,
        date=run_date,
        table=table,
        rows=None if rows is None else int(rows),
        finished_at=finished_at,
        details=json.loads(details) if details else {},
    )


def latest_markers(markers: Iterable[Marker]) -> list[Marker]:
    """One marker per task id (the latest), sorted by task id: markers may be appended more than once."""
    latest: dict[str, Marker] = {}
    for marker in markers:
        seen = latest.get(marker.task_id)
        if seen is None or marker.finished_at > seen.finished_at:
            latest[marker.task_id] = marker
    return [latest[k] for k in sorted(latest)]


class MarkerCache:
    """Completed task ids per (warehouse, family, tenant, date), trusted for ``ttl`` seconds in this process.

    Entries fetched by another process (a Luigi worker forked after the fetch) are ignored, so a task's
    run-time dependency check never sees a stale "missing". Writes and deletes made through a
    :class:`~mozart_luigi.warehouse.base.Warehouse` of this process update the cache at once.
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str, dt.date], tuple[int, float, set[str]]] = {}

    def get(self, key: str, family: str, tenant: str, date: dt.date) -> set[str] | None:
        with self._lock:
            entry = self._entries.get((key, family, tenant, date))
        if entry is None or entry[0] != os.getpid() or time.monotonic() - entry[1] > self.ttl:
            return None
        return entry[2]

    def put(self, key: str, family: str, tenant: str, date: dt.date, task_ids: Iterable[str]) -> None:
        with self._lock:
            self._entries[(key, family, tenant, date)] = (os.getpid(), time.monotonic(), set(task_ids))

    def add(self, key: str, marker: Marker) -> None:
        ids = self.get(key, marker.task_family, marker.tenant, marker.date)
        if ids is not None:
            with self._lock:
                ids.add(marker.task_id)

    def discard(self, key: str, task_ids: Iterable[str]) -> None:
        gone = set(task_ids)
        with self._lock:
            for entry_key, (_pid, _at, ids) in list(self._entries.items()):
                if entry_key[0] == key and ids & gone:
                    del self._entries[entry_key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


MARKER_CACHE = MarkerCache()
