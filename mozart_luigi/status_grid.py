"""The completeness matrix of ``mozart status --from D1 --to D2``: tenant x table x date, one state per cell.

Built from the truth, like the run report (:mod:`mozart_luigi.report`), at a cost per date, never per cell:
one marker query for every tenant (``Warehouse.markers(None, date)``), one batched look on the lake for the
manifests of the table cells that are not done, and the run report written for the date (a failure is known
only to the run that saw it). What is *running* now, or *disabled* by the scheduler's retry policy, only luigid
knows: :func:`scheduler_states` asks it (``/api/task_list``) when the caller has a task lister.

A cell's state is the first rule that applies:

1. ``done``: its marker exists (``LoadIceberg`` for a table, ``DbtRun`` for ``(dbt build)``), unless the last
   run report, written after that marker, called the row failed (the loaded rows disagree with the manifest);
2. ``running`` / ``disabled``: luigid holds a task of the cell (``ExtractTable`` or ``LoadIceberg`` of the
   table, ``DbtRun`` of the tenant) in that state;
3. ``failed``: the last run report of the date says so; its error is kept;
4. ``missing``.

A done table cell is ``stale`` instead when ``mozart audit`` found that the source now has another row count
in the day's window than that very load (``{MOZART_DATA_DIR}/audit/findings.json``; :mod:`mozart_luigi.audit`):
late rows, deletes. A later load of the day (a ``lookback_days`` refresh, a rerun) makes it done again.
``status`` itself never queries a source.
"""

from __future__ import annotations

__all__ = [
    "DISABLED",
    "RUNNING",
    "STALE",
    "STATES",
    "Cell",
    "CellKey",
    "Matrix",
    "TaskLister",
    "build_matrix",
    "date_range",
    "luigid_task_list",
    "scheduler_states",
]

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from mozart_luigi.audit import Finding, read_findings
from mozart_luigi.config import Config
from mozart_luigi.errors import StorageError
from mozart_luigi.lake import Lake
from mozart_luigi.luigid_api import LuigidClient
from mozart_luigi.report import (
    DBT_FAMILY,
    DBT_TABLE,
    DONE,
    FAILED,
    LOAD_FAMILY,
    MISSING,
    failures_in,
    read_report,
)
from mozart_luigi.warehouse import Marker, open_warehouse

DISABLED, RUNNING, STALE = "disabled", "running", "stale"
STATES = (DONE, MISSING, FAILED, DISABLED, RUNNING, STALE)
CellKey = tuple[str, str, dt.date]  # (tenant, table or DBT_TABLE, date)
TaskLister = Callable[[str], Mapping[str, Any]]  # luigid status ("RUNNING") -> {task_id: task as task_list shows it}
_TABLE_FAMILIES = ("ExtractTable", LOAD_FAMILY)


@dataclass(frozen=True)
class Cell:
    """One tenant x table (or ``(dbt build)``) x date. ``rows``: rows loaded (models built for dbt) when done;
    ``finished_at``: the marker's time when done, the failing run's report time when failed; ``extracted``:
    whether the extract's manifest is on the lake, looked at for table cells that are not done (else None)."""

    tenant: str
    table: str
    date: dt.date
    state: str
    rows: int | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    extracted: bool | None = None

    @property
    def rerun(self) -> str | None:
        """The command that runs this cell again (None when it is done; a stale day is extracted again)."""
        if self.state == DONE:
            return None
        table = "" if self.table == DBT_TABLE else f" --table {self.table}"
        again = " --from-extract" if self.state == STALE else ""
        return f"mozart rerun --tenant {self.tenant}{table} --date {self.date.isoformat()}{again}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "table": self.table,
            "date": self.date.isoformat(),
            "state": self.state,
            "rows": self.rows,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "error": self.error,
            "extracted": self.extracted,
        }


@dataclass(frozen=True)
class Matrix:
    """The cells of a date range, row by row (a tenant's tables, then its dbt build) and date by date.
    ``filtered`` when only the cells that are not done were kept (:meth:`not_done`)."""

    start: dt.date
    end: dt.date
    profile: str
    cells: tuple[Cell, ...]
    filtered: bool = False
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def ok(self) -> bool:
        return all(c.state == DONE for c in self.cells)

    @cached_property
    def _index(self) -> dict[CellKey, Cell]:
        return {(c.tenant, c.table, c.date): c for c in self.cells}

    def cell(self, tenant: str, table: str, date: dt.date) -> Cell | None:
        return self._index.get((tenant, table, date))

    def dates(self) -> list[dt.date]:
        return sorted({c.date for c in self.cells})

    def rows(self) -> list[tuple[str, str]]:
        """``(tenant, table)`` in the order of the cells (first seen)."""
        return list(dict.fromkeys((c.tenant, c.table) for c in self.cells))

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for c in self.cells:
            out[c.state] += 1
        return out

    def not_done(self) -> Matrix:
        """The same matrix with only the cells that are not done (``--missing``)."""
        return replace(self, cells=tuple(c for c in self.cells if c.state != DONE), filtered=True)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "cells": [c.to_dict() for c in self.cells]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every date from ``start`` to ``end``, both included, oldest first. ``ValueError`` when start > end."""
    if start > end:
        raise ValueError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


# --------------------------------------------------------------------------------------------- building


def build_matrix(
    config: Config,
    start: dt.date,
    end: dt.date,
    *,
    tenants: Sequence[str] | None = None,
    live: Mapping[CellKey, str] | None = None,
) -> Matrix:
    """Read the truth for every date of ``[start, end]`` (see the module docstring). ``live`` holds the
    luigid states of :func:`scheduler_states` (empty: running and disabled are not known)."""
    settings = config.settings
    chosen = list(tenants) if tenants else list(config.tenants)
    rows = [(t, name) for t in chosen for name in (*(x.name for x in config.tables_for(t)), DBT_TABLE)]
    lake = Lake.from_settings(settings)
    findings = read_findings(settings)
    cells: list[Cell] = []
    with open_warehouse(settings) as warehouse:
        for date in date_range(start, end):
            cells += _cells_of_date(
                date,
                rows,
                markers=warehouse.markers(None, date),
                report=read_report(settings, date),
                lake=lake,
                live=live or {},
                findings=findings,
            )
    return Matrix(start=start, end=end, profile=settings.profile, cells=tuple(cells))


def _cells_of_date(
    date: dt.date,
    rows: Sequence[tuple[str, str]],
    *,
    markers: Iterable[Marker],
    report: Mapping[str, Any] | None,
    lake: Lake,
    live: Mapping[CellKey, str],
    findings: Mapping[CellKey, Finding] | None = None,
) -> list[Cell]:
    done = _markers_by_cell(markers)
    failures = {(t, x or DBT_TABLE): error for (t, x), error in failures_in(report or {}).items()}
    judged_at = _generated_at(report)
    cells = [
        _cell(
            tenant,
            table,
            date,
            marker=done.get((tenant, table)),
            failure=failures.get((tenant, table)),
            judged_at=judged_at,
            live=live.get((tenant, table, date)),
            finding=(findings or {}).get((tenant, table, date)),
        )
        for tenant, table in rows
    ]
    looked_at = [(c.tenant, c.table) for c in cells if c.state != DONE and c.table != DBT_TABLE]
    extracted = _manifests_present(lake, looked_at, date)
    wanted = set(looked_at)
    return [
        replace(c, extracted=(c.tenant, c.table) in extracted) if (c.tenant, c.table) in wanted else c for c in cells
    ]


def _cell(
    tenant: str,
    table: str,
    date: dt.date,
    *,
    marker: Marker | None,
    failure: str | None,
    judged_at: dt.datetime | None,
    live: str | None,
    finding: Finding | None = None,
) -> Cell:
    if marker is not None:
        if failure and judged_at and _utc(marker.finished_at) <= judged_at:  # the report saw this very marker
            return Cell(tenant, table, date, FAILED, marker.rows, judged_at, failure)
        if finding is not None and finding.loaded_at >= _utc(marker.finished_at):  # the audit judged this load
            sums = "".join(f", sum({c}) {now} now, {then} loaded" for c, then, now in finding.sums)
            why = (
                f"the source has {finding.source_rows:,} row(s) in the day's window now, {finding.loaded_rows:,} "
                f"loaded{sums} (mozart audit at {finding.audited_at:%Y-%m-%d %H:%M:%S} UTC)"
            )
            return Cell(tenant, table, date, STALE, marker.rows, _utc(marker.finished_at), why)
        return Cell(tenant, table, date, DONE, marker.rows, _utc(marker.finished_at))
    if live in (RUNNING, DISABLED):
        return Cell(tenant, table, date, live, error=failure)
    if failure:
        return Cell(tenant, table, date, FAILED, finished_at=judged_at, error=failure)
    return Cell(tenant, table, date, MISSING)


def _markers_by_cell(markers: Iterable[Marker]) -> dict[tuple[str, str], Marker]:
    """The newest marker of each cell (a day reloaded by a later run's ``lookback_days`` has several)."""
    out: dict[tuple[str, str], Marker] = {}
    for m in markers:
        if m.task_family == LOAD_FAMILY and m.table:
            key = (m.tenant, m.table)
        elif m.task_family == DBT_FAMILY:
            key = (m.tenant, DBT_TABLE)
        else:
            continue
        if key not in out or _utc(m.finished_at) > _utc(out[key].finished_at):
            out[key] = m
    return out


def _manifests_present(lake: Lake, cells: Sequence[tuple[str, str]], date: dt.date) -> set[tuple[str, str]]:
    """Which of the (tenant, table) cells of ``date`` have a ``_SUCCESS`` manifest: one batched file-info call."""
    if not cells:
        return set()
    paths = [lake.fs_path(lake.manifest_url(tenant, table, date)) for tenant, table in cells]
    try:
        infos = lake.filesystem.get_file_info(paths)
    except OSError as exc:
        raise StorageError(f"cannot look for the manifests of {date.isoformat()} under {lake.url}: {exc}") from exc
    return {cell for cell, info in zip(cells, infos, strict=True) if info.is_file}


def _generated_at(report: Mapping[str, Any] | None) -> dt.datetime | None:
    try:
        return _utc(dt.datetime.fromisoformat(str((report or {})["generated_at"])))
    except (KeyError, ValueError):
        return None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# -------------------------------------------------------------------------------------------- luigid


def scheduler_states(task_list: TaskLister, tenants: Iterable[str], start: dt.date, end: dt.date) -> dict[CellKey, str]:
    """``{cell: "running" | "disabled"}`` from the scheduler's ``task_list`` (two calls). A cell is running when
    any of its tasks is (running wins over disabled). Errors of ``task_list`` propagate."""
    wanted = set(tenants)
    out: dict[CellKey, str] = {}
    for status, state in (("DISABLED", DISABLED), ("RUNNING", RUNNING)):
        for task in task_list(status).values():
            key = _cell_key(task)
            if key is not None and key[0] in wanted and start <= key[2] <= end:
                out[key] = state
    return out


def _cell_key(task: Any) -> CellKey | None:
    """The cell of a task as ``task_list`` shows it (``name`` = family, ``params`` as strings), or None."""
    if not isinstance(task, Mapping) or not isinstance(task.get("params"), Mapping):
        return None
    params, family = task["params"], task.get("name")
    table = params.get("table") if family in _TABLE_FAMILIES else DBT_TABLE if family == DBT_FAMILY else None
    tenant = params.get("tenant")
    if not isinstance(table, str) or not isinstance(tenant, str):
        return None
    try:
        return tenant, table, dt.date.fromisoformat(str(params.get("date")))
    except ValueError:
        return None


def luigid_task_list(host: str, port: int, *, timeout: float = 5.0) -> TaskLister:
    """luigid's ``/api/task_list`` for one status, asked once (no RPC retries: a status command must not hang
    for minutes when luigid is down). Raises ``OSError`` when luigid does not answer (or is not luigid)."""
    return LuigidClient(host, port, timeout=timeout).task_list
