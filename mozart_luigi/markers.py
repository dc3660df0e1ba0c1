"""Completion markers, in one place: what a marker is, its two encodings (a row of the DuckDB ``task_markers``
table; a small JSON object on S3), the S3 store, and the per-process cache that :mod:`mozart_luigi.targets`
answers ``complete()`` from.

S3 layout: ``{root}/{YYYY-MM-DD}/{tenant}/{task_family}/{task_id}.json`` (``root`` defaults to
``{lake}/_mozart/markers``; a tenant id cannot start with ``_``, so it never meets a tenant's folder).

- Writing a marker is one PUT of its own key: any number of workers complete tasks in parallel, with no
  commit race (the old ``mozart_meta.task_markers`` Iceberg table took one commit per task, ~4/s).
- Completeness of a date for every tenant is one listing of ``{root}/{date}/`` (1,000 keys per page); of one
  tenant, one listing of ``{root}/{date}/{tenant}/``. A backfill lists one prefix per date.
- A marker is written only **after** the work it records was committed (the Iceberg snapshot carries its
  own proof; see :mod:`mozart_luigi.warehouse.iceberg`), so a marker never claims what is not there. A key
  that does not parse (wrong date, tenant or family) is ignored with a warning, never trusted.
"""

from __future__ import annotations

__all__ = [
    "MARKER_CACHE",
    "MARKER_COLUMNS",
    "Marker",
    "MarkerCache",
    "ObjectMarkerStore",
    "latest_markers",
    "marker_from_row",
    "marker_row",
    "warehouse_key",
]

import ctypes
import datetime as dt
import json
import logging
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mozart_luigi.names import TENANT_ID_RE
from mozart_luigi.objectstore import S3Objects
from mozart_luigi.settings import Settings

log = logging.getLogger(__name__)
_FAMILIES = frozenset({"LoadIceberg", "DbtRun"})


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

    An entry is trusted only by the process that fetched it (a Luigi task process forked after the fetch
    asks again), and only until a marker is written or deleted by any process of this process tree: every
    write and delete made through a :class:`~mozart_luigi.warehouse.base.Warehouse` sets a new random
    *generation* in memory shared with every process forked from this one (Luigi's worker processes), and
    an entry fetched under an older generation is asked again. So a scheduler that found a task missing,
    then ran it in a forked worker, never answers "missing" for it afterwards (a second ``luigi.build`` in
    one process, dynamic dependencies, the summary). Writes by unrelated processes (other worker hosts,
    ``mozart rerun``) are seen after ``ttl`` or at Luigi's run-time check (:mod:`mozart_luigi.targets`).
    """

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str, dt.date], tuple[int, float, int, frozenset[str]]] = {}
        # lock-free: one aligned 8-byte store; a random token (not a counter) so that two processes
        # changing it at once can never bring back a value an entry was fetched under
        self._generation = multiprocessing.RawValue(ctypes.c_int64, 0)

    def generation(self) -> int:
        """Read before fetching: an entry is stored with the generation its fetch started under."""
        return int(self._generation.value)

    def get(self, key: str, family: str, tenant: str, date: dt.date) -> frozenset[str] | None:
        with self._lock:
            entry = self._entries.get((key, family, tenant, date))
        if entry is None:
            return None
        pid, fetched_at, generation, ids = entry
        if pid != os.getpid() or time.monotonic() - fetched_at > self.ttl or generation != self.generation():
            return None
        return ids

    def put(
        self, key: str, family: str, tenant: str, date: dt.date, task_ids: Iterable[str], *, generation: int
    ) -> None:
        with self._lock:
            entry = (os.getpid(), time.monotonic(), generation, frozenset(task_ids))
            self._entries[(key, family, tenant, date)] = entry

    def changed(self) -> None:
        """A marker was written or deleted (by this process): every cached answer in the tree is asked again."""
        token = 0
        while token in (0, self._generation.value):
            token = secrets.randbits(63)
        self._generation.value = token

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self.changed()


MARKER_CACHE = MarkerCache()


class ObjectMarkerStore:
    """Markers under ``root_url`` (``s3://bucket/prefix``)."""

    def __init__(self, objects: S3Objects, root_url: str) -> None:
        self._objects = objects
        self.root = root_url.rstrip("/")

    def _key(self, marker: Marker) -> str:
        return f"{self.root}/{marker.date.isoformat()}/{marker.tenant}/{marker.task_family}/{marker.task_id}.json"

    def write(self, marker: Marker) -> None:
        _check_family(marker.task_family)
        self._objects.put(self._key(marker), _encode(marker))

    def completed_rows(self, task_family: str, pairs: Iterable[tuple[str, dt.date]]) -> set[tuple[str, str, dt.date]]:
        """``(task_id, tenant, date)`` for each marker of the family in the pairs: one listing per date (all
        tenants of it) or per (date, tenant) when a date has a single tenant."""
        wanted = set(pairs)
        found: set[tuple[str, str, dt.date]] = set()
        for date in sorted({d for _, d in wanted}):
            tenants = {t for t, d in wanted if d == date}
            prefix = f"{self.root}/{date.isoformat()}/" + (f"{next(iter(tenants))}/" if len(tenants) == 1 else "")
            for entry in self._entries(prefix):
                if entry[2] == task_family and entry[1] in tenants and entry[0] == date:
                    found.add((entry[3], entry[1], date))
        return found

    def markers(self, tenant: str | None, date: dt.date) -> list[Marker]:
        prefix = f"{self.root}/{date.isoformat()}/" + (f"{tenant}/" if tenant else "")
        out = []
        for _, _, _, _, url in self._entries(prefix):
            marker = self._read(url)
            if marker is not None:
                out.append(marker)
        return sorted(out, key=lambda m: m.task_id)

    def delete(self, tenant: str, date: dt.date, task_ids: Iterable[str]) -> None:
        gone = set(task_ids)
        for _, _, _, task_id, url in self._entries(f"{self.root}/{date.isoformat()}/{tenant}/"):
            if task_id in gone:
                self._objects.delete(url)

    def delete_tenant(self, tenant: str) -> None:
        for day in self._dates():
            for *_, url in self._entries(f"{self.root}/{day}/{tenant}/"):
                self._objects.delete(url)

    def latest_date(self, task_family: str, tenant: str) -> dt.date | None:
        """Newest date with a marker of the family for the tenant: date folders newest first, one listing
        each until one holds it (usually the first)."""
        for day in reversed(self._dates()):
            if any(True for _ in self._objects.list(f"{self.root}/{day}/{tenant}/{task_family}/")):
                return dt.date.fromisoformat(day)
        return None

    # ------------------------------------------------------------------------------------------ parsing
    def _dates(self) -> list[str]:
        days = []
        for name in self._objects.prefixes(f"{self.root}/"):
            try:
                days.append(dt.date.fromisoformat(name).isoformat())
            except ValueError:
                log.warning("markers: ignoring %s/%s (not a date folder)", self.root, name)
        return sorted(days)

    def _entries(self, prefix_url: str) -> list[tuple[dt.date, str, str, str, str]]:
        """``(date, tenant, family, task_id, url)`` of every well-formed marker key under the prefix."""
        bucket = self.root.split("/", 3)[2]
        out = []
        for info in self._objects.list(prefix_url):
            url = f"s3://{bucket}/{info.key}"
            parsed = _parse_key(url[len(self.root) + 1 :])
            if parsed is None:
                log.warning("markers: ignoring %s (not a marker key)", url)
                continue
            out.append((*parsed, url))
        return out

    def _read(self, url: str) -> Marker | None:
        body = self._objects.get(url)
        try:
            return _decode(body or b"")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("markers: ignoring unreadable %s: %s", url, exc)
            return None


def _check_family(family: str) -> None:
    if family not in _FAMILIES:
        raise ValueError(f"unknown task family {family!r}")


def _parse_key(relative: str) -> tuple[dt.date, str, str, str] | None:
    parts = relative.split("/")
    if len(parts) != 4 or not parts[3].endswith(".json"):
        return None
    day, tenant, family, name = parts
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        return None
    if not TENANT_ID_RE.match(tenant) or family not in _FAMILIES or not name[: -len(".json")]:
        return None
    return date, tenant, family, name[: -len(".json")]


def _encode(marker: Marker) -> bytes:
    finished = marker.finished_at if marker.finished_at.tzinfo else marker.finished_at.replace(tzinfo=dt.UTC)
    body: dict[str, Any] = {
        "task_family": marker.task_family,
        "task_id": marker.task_id,
        "tenant": marker.tenant,
        "table": marker.table,
        "date": marker.date.isoformat(),
        "rows": marker.rows,
        "finished_at": finished.astimezone(dt.UTC).isoformat(),
        "details": marker.details,
    }
    return json.dumps(body, sort_keys=True, default=str).encode("utf-8")


def _decode(data: bytes) -> Marker:
    body = json.loads(data)
    rows = body.get("rows")
    return Marker(
        task_family=str(body["task_family"]),
        task_id=str(body["task_id"]),
        tenant=str(body["tenant"]),
        date=dt.date.fromisoformat(body["date"]),
        table=body.get("table"),
        rows=None if rows is None else int(rows),
        finished_at=dt.datetime.fromisoformat(body["finished_at"]),
        details=body.get("details") if isinstance(body.get("details"), dict) else {},
    )
