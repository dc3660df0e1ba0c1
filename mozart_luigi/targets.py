"""Luigi targets backed by the warehouse: a task is done when its marker row exists.

``MarkerTarget`` is pure at construction (no I/O, no config read). ``exists()`` asks the warehouse, in one
query, for every completed task of the same family and date for all configured tenants, and keeps the answer
in a per-process cache (:data:`mozart_luigi.markers.MARKER_CACHE`), so checking 2,000 tasks of a
day costs one query; :func:`prefetch_markers` answers a whole backfill (many dates) in one query.

No stale "missing": a cached answer that says a task is *not* done is used only while Luigi builds the
graph. When a worker checks a task's dependencies right before running it (Luigi's run-time check, inside
``luigi.worker.TaskProcess.run``) — by then the scheduler has told it they are done, possibly by another
worker — a cached "missing" is asked again, so a task finished elsewhere is never reported unfulfilled.
A marker written or deleted by any process of this process tree (Luigi's forked task processes included)
makes every cached answer stale at once (:class:`~mozart_luigi.markers.MarkerCache`'s shared generation).
"""

from __future__ import annotations

__all__ = ["MarkerTarget", "clear_marker_cache", "completed_task_ids", "prefetch_markers"]

import datetime as dt
import sys
from collections.abc import Iterable
from types import FrameType

import luigi
import luigi.worker

from mozart_luigi.errors import ConfigError
from mozart_luigi.markers import MARKER_CACHE, warehouse_key
from mozart_luigi.settings import Settings

_TASK_PROCESS_RUN = luigi.worker.TaskProcess.run.__code__


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from mozart_luigi.config import get_config

    return get_config().settings


def prefetch_markers(
    task_family: str, pairs: Iterable[tuple[str, dt.date]], *, settings: Settings | None = None
) -> set[str]:
    """Completed task ids of ``task_family`` for all (tenant, date) pairs, in one query; fills the cache."""
    return set().union(*_fetch(task_family, pairs, _settings(settings)).values())


def _fetch(
    task_family: str, pairs: Iterable[tuple[str, dt.date]], settings: Settings
) -> dict[tuple[str, dt.date], frozenset[str]]:
    """One query for every pair; each pair's answer cached under the generation read before the query
    (a marker written while it runs makes the answer stale at once, never lost)."""
    from mozart_luigi.warehouse import open_warehouse

    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    tenants = {t for t, _ in wanted}
    generation = MARKER_CACHE.generation()
    with open_warehouse(settings, tenant=next(iter(tenants)) if len(tenants) == 1 else None) as warehouse:
        done = warehouse.completed_rows(task_family, wanted)
    by_pair: dict[tuple[str, dt.date], set[str]] = {pair: set() for pair in wanted}
    for task_id, tenant, date in done:
        by_pair.setdefault((tenant, date), set()).add(task_id)
    key = warehouse_key(settings)
    for (tenant, date), ids in by_pair.items():
        MARKER_CACHE.put(key, task_family, tenant, date, ids, generation=generation)
    return {pair: frozenset(ids) for pair, ids in by_pair.items()}


def completed_task_ids(
    task_family: str, tenant: str, date: dt.date, *, settings: Settings | None = None, fresh: bool = False
) -> frozenset[str]:
    """Completed task ids for one family, tenant and date: from the cache (unless ``fresh``), else one query.

    A miss asks for every configured tenant of that date at once (same query, same cost), so checking
    all the tasks of a run costs one query per family and date, not one per tenant.
    """
    resolved = _settings(settings)
    cached = None if fresh else MARKER_CACHE.get(warehouse_key(resolved), task_family, tenant, date)
    if cached is not None:
        return cached
    tenants = {tenant} | _configured_tenants()
    return _fetch(task_family, [(t, date) for t in tenants], resolved)[(tenant, date)]


def _configured_tenants() -> set[str]:
    """Tenants of the active configuration, or none when there is no valid configuration (ad-hoc use)."""
    from mozart_luigi.config import get_config

    try:
        return set(get_config().tenants)
    except ConfigError:
        return set()


def _in_run_time_check() -> bool:
    """True inside Luigi's check of a task's dependencies right before it runs (``TaskProcess.run``).

    Luigi offers no hook there; the worker's public ``TaskProcess.run`` is recognised on the call stack.
    (Should Luigi rename it, a cached "missing" would be re-asked only after the cache's TTL: the
    two-worker luigid test catches that.) See docs/operations.md, "Luigi internals we rely on".
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _TASK_PROCESS_RUN:
            return True
        frame = frame.f_back
    return False


def clear_marker_cache() -> None:
    MARKER_CACHE.clear()


class MarkerTarget(luigi.Target):
    """Exists when ``{warehouse}.mozart_meta.task_markers`` holds a row for ``task_id``.

    ``settings`` defaults to the process configuration, read at ``exists()`` time (never at construction).
    """

    def __init__(
        self,
        task_family: str,
        task_id: str,
        tenant: str,
        date: dt.date,
        *,
        table: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.task_family = task_family
        self.task_id = task_id
        self.tenant = tenant
        self.date = date
        self.table = table
        self._settings = settings
        self.path = f"mozart_meta.task_markers/{task_family}/{tenant}/{date.isoformat()}/{task_id}"

    def exists(self) -> bool:
        ids = completed_task_ids(self.task_family, self.tenant, self.date, settings=self._settings)
        if self.task_id in ids:
            return True
        if not _in_run_time_check():
            return False
        fresh = completed_task_ids(self.task_family, self.tenant, self.date, settings=self._settings, fresh=True)
        return self.task_id in fresh

    def __repr__(self) -> str:
        return f"MarkerTarget({self.task_id!r})"
