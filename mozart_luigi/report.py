"""The run report: one row per tenant x table, built from the truth (lake manifests + warehouse markers).

Luigi's scheduler state is a cache; this report reads what is really there: the ``_SUCCESS`` manifest of each
extract (rows extracted) and the ``LoadIceberg`` / ``DbtRun`` markers (rows loaded, dbt done). A run adds
what only it knows: which tasks failed and why. ``mozart status`` rebuilds the same report later and keeps
the ``failed`` status of the last run for rows that are still not done.

Written as JSON to ``{settings.report_dir}/{date}/report.json``, *merged* into what is there (see
:func:`merge_reports`): a run of some tenants never erases what an earlier run said of the others.
"""

from __future__ import annotations

__all__ = [
    "DBT_TABLE",
    "DbtStatus",
    "RunReport",
    "TableStatus",
    "build_report",
    "failures_in",
    "merge_reports",
    "newest_load",
    "read_report",
    "report_path",
    "write_report",
]

import contextlib
import datetime as dt
import fcntl
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mozart_luigi.config import Config
from mozart_luigi.errors import MozartError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.settings import Settings
from mozart_luigi.warehouse import Marker, open_warehouse

log = logging.getLogger(__name__)

DONE, MISSING, FAILED = "done", "missing", "failed"
LOAD_FAMILY, DBT_FAMILY = "LoadIceberg", "DbtRun"
DBT_TABLE = "(dbt build)"  # the label of a tenant's dbt row, where a table name would be


@dataclass(frozen=True)
class TableStatus:
    """One tenant x table of one date."""

    tenant: str
    table: str
    rows_extracted: int | None
    rows_loaded: int | None
    seconds: float | None
    status: str
    error: str | None = None


@dataclass(frozen=True)
class DbtStatus:
    tenant: str
    status: str
    seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunReport:
    date: dt.date
    profile: str
    rows: tuple[TableStatus, ...]
    dbt: tuple[DbtStatus, ...]
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    run: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.status == DONE for r in self.rows) and all(d.status == DONE for d in self.dbt)

    def counts(self) -> dict[str, int]:
        out = {DONE: 0, MISSING: 0, FAILED: 0}
        for status in [r.status for r in self.rows] + [d.status for d in self.dbt]:
            out[status] = out.get(status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "profile": self.profile,
            "generated_at": self.generated_at.isoformat(),
            "ok": self.ok,
            "counts": self.counts(),
            "run": dict(self.run),
            "tables": [asdict(r) for r in self.rows],
            "dbt": [asdict(d) for d in self.dbt],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        """The console table."""
        header = ("tenant", "table", "extracted", "loaded", "seconds", "status")
        lines = [
            (
                r.tenant,
                r.table,
                _num(r.rows_extracted),
                _num(r.rows_loaded),
                _secs(r.seconds),
                r.status + (f"  ({r.error})" if r.error else ""),
            )
            for r in self.rows
        ]
        lines += [
            (
                d.tenant,
                DBT_TABLE,
                "",
                "",
                _secs(d.seconds),
                d.status + (f"  ({d.error})" if d.error else ""),
            )
            for d in self.dbt
        ]
        widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(5)]
        out = [f"Run report for {self.date.isoformat()} (profile {self.profile})"]
        for row in [header, *lines]:
            cells = [str(row[0]).ljust(widths[0]), str(row[1]).ljust(widths[1])]
            cells += [str(row[i]).rjust(widths[i]) for i in (2, 3, 4)]
            out.append("  ".join([*cells, str(row[5])]).rstrip())
        counts = self.counts()
        out.append(f"{counts[DONE]} done, {counts[MISSING]} missing, {counts[FAILED]} failed")
        return "\n".join(out)


# --------------------------------------------------------------------------------------------- building


def build_report(
    config: Config,
    date: dt.date,
    *,
    tenants: Iterable[str] | None = None,
    failures: Mapping[tuple[str, str | None], str] | None = None,
    run: Mapping[str, Any] | None = None,
) -> RunReport:
    """Read the truth for ``date``. ``failures`` maps ``(tenant, table)`` (table None for dbt) to an error.

    Without ``failures`` (``mozart status``), the failures of the last written report for the date are kept
    for rows that are still not done.
    """
    settings = config.settings
    chosen = list(tenants) if tenants else list(config.tenants)
    if failures is None:
        failures = _previous_failures(settings, date)
    lake = Lake.from_settings(settings)
    rows: list[TableStatus] = []
    dbt: list[DbtStatus] = []
    with open_warehouse(settings) as warehouse:
        for tenant in chosen:
            markers = warehouse.markers(tenant, date)
            rows += [
                _table_status(lake, tenant=tenant, table=t.name, date=date, markers=markers, failures=failures)
                for t in config.tables_for(tenant)
            ]
            dbt.append(_dbt_status(tenant, markers, failures))
    return RunReport(date=date, profile=settings.profile, rows=tuple(rows), dbt=tuple(dbt), run=dict(run or {}))


def _table_status(
    lake: Lake,
    *,
    tenant: str,
    table: str,
    date: dt.date,
    markers: list[Marker],
    failures: Mapping[tuple[str, str | None], str],
) -> TableStatus:
    manifest = _manifest(lake, tenant, table, date)
    marker = newest_load(markers, table)
    extracted = manifest.row_count if manifest else None
    loaded = marker.rows if marker else None
    seconds = _sum_seconds(manifest.details if manifest else None, marker.details if marker else None)
    error = failures.get((tenant, table))
    if marker is not None and manifest is not None and loaded is not None and loaded != extracted:
        status, error = FAILED, f"loaded {loaded} rows but the manifest has {extracted}"
    elif marker is not None:
        status, error = DONE, None
    else:
        status = FAILED if error else MISSING
    return TableStatus(tenant, table, extracted, loaded, seconds, status, error)


def newest_load(markers: Iterable[Marker], table: str) -> Marker | None:
    """The newest ``LoadIceberg`` marker of ``table``: a day reloaded for a later run's ``lookback_days``
    (``refresh``) has one marker per load; the newest says what the day holds now."""
    loads = [m for m in markers if m.task_family == LOAD_FAMILY and m.table == table]
    return max(loads, key=lambda m: _aware(m.finished_at), default=None)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _dbt_status(tenant: str, markers: list[Marker], failures: Mapping[tuple[str, str | None], str]) -> DbtStatus:
    marker = next((m for m in markers if m.task_family == DBT_FAMILY), None)
    if marker is not None:
        return DbtStatus(tenant, DONE, _sum_seconds(marker.details))
    error = failures.get((tenant, None))
    return DbtStatus(tenant, FAILED if error else MISSING, None, error)


def _manifest(lake: Lake, tenant: str, table: str, date: dt.date) -> Manifest | None:
    if not lake.manifest_target(tenant, table, date).exists():
        return None
    try:
        return lake.read_manifest(tenant, table, date)
    except (MozartError, ValueError, KeyError) as exc:
        log.warning("tenant '%s', table '%s': unreadable manifest for %s: %s", tenant, table, date, exc)
        return None


def _sum_seconds(*details: Mapping[str, Any] | None) -> float | None:
    values = [float(d["seconds"]) for d in details if d and isinstance(d.get("seconds"), int | float)]
    return round(sum(values), 3) if values else None


# ------------------------------------------------------------------------------------------ persistence


def report_path(settings: Settings, date: dt.date) -> Path:
    return settings.report_dir / date.isoformat() / "report.json"


def write_report(report: RunReport, settings: Settings) -> Path:
    """Merge ``report`` into the date's ``report.json`` (:func:`merge_reports`) and write it atomically (temp file
    + rename), under a lock so that two runs finishing together do not lose each other's cells. Returns its path.
    """
    path = report_path(settings, report.date)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent / ".report.lock"):
        previous = read_report(settings, report.date)
        merged = merge_reports(previous, report) if previous else report
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(merged.to_json() + "\n", encoding="utf-8")
        tmp.replace(path)
    return path


def merge_reports(previous: Mapping[str, Any], report: RunReport) -> RunReport:
    """``report`` over the ``previous`` report of the same date (as read), keeping the newest outcome per cell
    (tenant x table, or a tenant's dbt build):

    - a tenant ``report`` does not cover keeps its cells as they were (a ``--tenants demo_north`` run leaves
      ``demo_west``'s ``failed (reason)`` alone);
    - a cell ``report`` calls ``done`` or ``failed`` takes that (it was judged now, from the truth or by the run);
    - a cell ``report`` calls ``missing`` (the run did not get to it) keeps an earlier ``failed`` and its error:
      ``missing`` is no outcome.

    ``run`` and ``generated_at`` are ``report``'s.
    """
    old_rows = [_row(TableStatus, r) for r in previous.get("tables", [])]
    old_dbt = [_row(DbtStatus, d) for d in previous.get("dbt", [])]
    covered = {r.tenant for r in report.rows} | {d.tenant for d in report.dbt}
    failed_before = {(r.tenant, r.table): r for r in old_rows if r and r.status == FAILED}
    failed_dbt = {d.tenant: d for d in old_dbt if d and d.status == FAILED}
    rows = [_keep_failure(r, failed_before.get((r.tenant, r.table))) for r in report.rows]
    dbt = [_keep_failure(d, failed_dbt.get(d.tenant)) for d in report.dbt]
    rows += [r for r in old_rows if r and r.tenant not in covered]
    dbt += [d for d in old_dbt if d and d.tenant not in covered]
    order = list(dict.fromkeys([*(r.tenant for r in old_rows if r), *(r.tenant for r in report.rows)]))
    rank = {tenant: i for i, tenant in enumerate(order)}
    rows.sort(key=lambda r: rank.get(r.tenant, len(rank)))
    dbt.sort(key=lambda d: rank.get(d.tenant, len(rank)))
    return replace(report, rows=tuple(rows), dbt=tuple(dbt))


def _keep_failure(new: Any, old: Any) -> Any:
    if new.status == MISSING and old is not None:
        return replace(new, status=FAILED, error=old.error)
    return new


def _row(kind: Any, raw: Any) -> Any:
    """A ``TableStatus`` / ``DbtStatus`` from a row of a written report, None when it is not one."""
    if not isinstance(raw, Mapping):
        return None
    names = {f.name for f in fields(kind)}
    try:
        return kind(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_report(settings: Settings, date: dt.date) -> dict[str, Any] | None:
    path = report_path(settings, date)
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return report
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable report %s: %s", path, exc)
        return None


def _previous_failures(settings: Settings, date: dt.date) -> dict[tuple[str, str | None], str]:
    return failures_in(read_report(settings, date) or {})


def failures_in(previous: Mapping[str, Any]) -> dict[tuple[str, str | None], str]:
    """``{(tenant, table or None for dbt): error}`` of the ``failed`` rows of a written report (as read)."""
    out: dict[tuple[str, str | None], str] = {}
    for row in previous.get("tables", []):
        if row.get("status") == FAILED and isinstance(row.get("tenant"), str) and isinstance(row.get("table"), str):
            out[(row["tenant"], row["table"])] = str(row.get("error") or "failed in the last run")
    for row in previous.get("dbt", []):
        if row.get("status") == FAILED and isinstance(row.get("tenant"), str):
            out[(row["tenant"], None)] = str(row.get("error") or "failed in the last run")
    return out


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
