"""Completion markers as small objects on S3: no table, no row and no commit that every load shares.

Layout: ``{root}/{YYYY-MM-DD}/{tenant}/{task_family}/{task_id}.json`` (``root`` defaults to
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

__all__ = ["ObjectMarkerStore"]

import datetime as dt
import json
import logging
from collections.abc import Iterable
from typing import Any

from mozart_luigi.names import TENANT_ID_RE
from mozart_luigi.objectstore import S3Objects
from mozart_luigi.warehouse.base import Marker

log = logging.getLogger(__name__)
_FAMILIES = frozenset({"LoadIceberg", "DbtRun"})


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
