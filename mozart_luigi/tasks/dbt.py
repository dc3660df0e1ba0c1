"""``DbtRun(tenant, date)``: ``dbt build`` of one tenant's staging, intermediate and mart schemas.

Template: every ``LoadIceberg(tenant, table, date)`` of the tenant is done -> ``dbt build`` in a subprocess
(:func:`mozart_luigi.dbt_runner.run_dbt`; target ``trino`` in profile ``stack``, ``local`` (DuckDB) in
profile ``local``) -> ``run_results.json`` kept under ``{report_dir}/dbt/{tenant}/{date}/`` -> only when every
model and test passed, a marker (family ``DbtRun``, rows = models built, details = node counts).

Data tests: every model is built each run; which data tests run is a selector of ``dbt/selectors.yml``:
``nightly`` (the tests not tagged ``weekly``) on most dates, ``full`` (every test) on the dates whose weekday
is the setting ``MOZART_DBT_WEEKLY_TESTS`` (else ``dbt_weekly_tests`` in luigi.cfg's ``[mozart]`` section,
else ``sunday``; ``daily`` runs the full set every date). The marker records the selection (``details.
selection``). Which tests are weekly, and why: dbt/README.md.

dbt's ``run_date`` var is this date: staging reads partitions up to it (all loaded, since they are
required), so the marts are the state as of that date. When a later date's DbtRun already completed (a
retry or backfill of an older date), dbt runs as of that later date instead: marts never go back in time,
and reloaded older partitions are still picked up.

A failing model or test raises :class:`~mozart_luigi.dbt_runner.DbtFailure` naming the tenant and each
failed node; no marker is written, other tenants' tasks are unaffected (Luigi fails this task only).

Concurrency (Luigi resources):
- ``dbt_{tenant}`` (capacity 1, see luigi.cfg): two dates of one tenant never build the same schemas (and
  the same per-tenant dbt target folder) at once; different tenants run in parallel.
- ``duckdb_writer`` (profile ``local`` only, capacity 1): DuckDB lets one process write the file at a time
  and dbt-duckdb holds it for the whole build, so local dbt runs are serialised (other DuckDB writers
  should take the same resource; a short lock conflict is also retried by the runner). On Trino, separate
  dbt processes for different tenants are safe in parallel.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_WEEKLY_TESTS",
    "SELECTIONS",
    "WEEKLY_TESTS_ENV",
    "WEEKLY_TESTS_OPTION",
    "DbtRun",
    "dbt_selection",
    "upkeep_due",
    "weekly_tests_setting",
]

import datetime as dt
import logging
import os
import shutil
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import luigi.configuration

from mozart_luigi.dbt_runner import (
    DbtFailure,
    DbtProgress,
    DbtRunResult,
    project_dir,
    project_selectors,
    run_dbt,
    target_for_profile,
)
from mozart_luigi.errors import ConfigError, ConfigProblem, LoadError, MozartError
from mozart_luigi.parquet import pause_point
from mozart_luigi.targets import MarkerTarget, completed_task_ids
from mozart_luigi.tasks.base import MarkerBulkComplete, Progress, TenantDateTask
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse import Marker, open_warehouse

log = logging.getLogger(__name__)

DUCKDB_WRITER_RESOURCE = "duckdb_writer"
#: the selectors of dbt/selectors.yml a DbtRun picks from: most dates, and the weekly day
SELECTIONS = ("nightly", "full")
WEEKLY_TESTS_ENV = "MOZART_DBT_WEEKLY_TESTS"
#: (section, option) in luigi.cfg, read when the env var is not set
WEEKLY_TESTS_OPTION = ("mozart", "dbt_weekly_tests")
DEFAULT_WEEKLY_TESTS = "sunday"
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def weekly_tests_setting(env: Mapping[str, str] | None = None, cfg: Any = None) -> str:
    """The day the full test set runs: a weekday name, or ``daily``; from ``MOZART_DBT_WEEKLY_TESTS``, else
    luigi.cfg ``[mozart] dbt_weekly_tests``, else ``sunday``. Raises :class:`ConfigError` naming the source
    of a value that is neither."""
    env = os.environ if env is None else env
    cfg = luigi.configuration.get_config() if cfg is None else cfg
    section, option = WEEKLY_TESTS_OPTION
    if env.get(WEEKLY_TESTS_ENV, "").strip():
        value, origin, key = env[WEEKLY_TESTS_ENV], "environment", WEEKLY_TESTS_ENV
    else:
        value, origin, key = cfg.get(section, option, DEFAULT_WEEKLY_TESTS), "luigi.cfg", f"[{section}] {option}"
    day = str(value).strip().lower()
    if day not in (*_WEEKDAYS, "daily"):
        raise ConfigError([ConfigProblem(origin, key, f"{value!r} is not a weekday name (monday .. sunday) or daily")])
    return day


# The schemas of the tenant whose tables dbt builds (macros/generate_schema_name.sql); intermediate is views.
UPKEEP_SCHEMAS = ("staging", "mart")


def upkeep_due(tenant: str, date: dt.date) -> bool:
    """Once a week per tenant, the weekday spread by the tenant id (stable across runs): the day its
    ``DbtRun`` also compacts the tenant's dbt tables and expires their snapshots."""
    return (date.toordinal() + zlib.crc32(tenant.encode("utf-8"))) % 7 == 0


def dbt_selection(date: dt.date, weekly: str) -> str:
    """``full`` (every data test) when ``date`` falls on the ``weekly`` day (every date for ``daily``), else
    ``nightly``."""
    return "full" if weekly == "daily" or _WEEKDAYS[date.weekday()] == weekly else "nightly"


class DbtRun(MarkerBulkComplete, TenantDateTask):
    """Transform one tenant's loaded tables for one date with dbt."""

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]  # a property over luigi's class attribute
        resources = {f"dbt_{self.tenant}": 1}
        if self.config.settings.profile == "local":
            resources[DUCKDB_WRITER_RESOURCE] = 1
        return resources

    def requires(self) -> list[LoadIceberg]:
        """Each table's load of the date (a ``deletes: keys`` table's keys stream is one more table), and for
        a table with ``lookback_days: N`` the reloads of the N days before, re-extracted for this run."""
        tables = self.config.tables_for(self.tenant)
        loads = [LoadIceberg(tenant=self.tenant, table=table.name, date=self.date) for table in tables]
        loads += [
            LoadIceberg(
                tenant=self.tenant, table=table.name, date=self.date - dt.timedelta(days=back), refresh=self.date
            )
            for table in tables
            for back in range(1, table.lookback_days + 1)
        ]
        return loads

    def output(self) -> MarkerTarget:
        return MarkerTarget(self.task_family, self.task_id, self.tenant, self.date)

    def run(self) -> None:
        settings = self.config.settings
        target = target_for_profile(settings.profile)
        selection, selector = self._selection()
        as_of = self._as_of()
        self._status(f"dbt {self.tenant}: starting (target {target}, as of {as_of}, {selection} tests)")
        try:
            result = run_dbt(
                self.tenant,
                as_of,
                settings=settings,
                target=target,
                tables=self.config.tables_for(self.tenant),
                selector=selector,
                on_progress=self._progress_callback(),
            )
        except DbtFailure as failure:
            if failure.result is not None:
                self._keep_run_results(failure.result)
            failed = [n.name for n in failure.result.failed] if failure.result else ["(before any node)"]
            self._status(f"dbt {self.tenant}: FAILED: {', '.join(failed)}")
            raise
        report = self._keep_run_results(result)
        with open_warehouse(settings, tenant=self.tenant) as warehouse:
            warehouse.write_marker(self._marker(result, report, selection))
            if upkeep_due(self.tenant, self.date):
                self._upkeep(warehouse)
        self._status(
            f"dbt {self.tenant}: {result.models_built} models built, "
            f"{len(result.nodes)} nodes ok in {result.elapsed_seconds:.1f}s",
            done=True,
        )

    def _upkeep(self, warehouse: Any) -> None:
        """Weekly (:func:`upkeep_due`), after the marker, best effort: compact the tenant's dbt tables (each
        incremental ``MERGE`` leaves small files and delete files), merge manifests, expire snapshots older
        than ``MOZART_SNAPSHOT_RETENTION_DAYS``, remove orphans. A failure is logged; the build stands."""
        self._status(f"dbt {self.tenant}: compacting and expiring the dbt tables")
        started = time.monotonic()
        schemas = [f"{self.tenant}_{layer}" for layer in UPKEEP_SCHEMAS]
        try:
            done = warehouse.upkeep_models(self.tenant, schemas, self.config.settings.snapshot_retention_days)
        except MozartError as exc:
            log.warning("dbt upkeep tenant=%s skipped: %s", self.tenant, exc)
            return
        if done is None:
            return
        log.info(
            "dbt upkeep tenant=%s tables=%d data files %d -> %d, delete files %d -> %d, failed=%d (maintenance %.2f s)",
            self.tenant,
            done.tables,
            done.files_before,
            done.files_after,
            done.delete_files_before,
            done.delete_files_after,
            len(done.failed),
            time.monotonic() - started,
        )

    def _status(self, message: str, *, done: bool = False) -> None:
        """Progress for the visualizer; a no-op outside a Luigi worker (``run()`` called directly)."""
        Progress(self, 1 if done else None, every_seconds=0).update(1 if done else 0, message, force=True)

    # ------------------------------------------------------------------------------------------- steps
    def _selection(self) -> tuple[str, str | None]:
        """(selection recorded in the marker, ``--selector`` given to dbt). A project without that selector
        (``MOZART_DBT_PROJECT_DIR`` naming one without ``selectors.yml``) runs every test: ``full``, no
        selector."""
        selection = dbt_selection(self.date, weekly_tests_setting())
        if selection in project_selectors(project_dir()):
            return selection, selection
        log.info("dbt tenant=%s: the dbt project has no selector %r: every data test runs", self.tenant, selection)
        return "full", None

    def _as_of(self) -> dt.date:
        """The run date given to dbt: this date, or a later one whose DbtRun already completed.

        Marts hold the current state; rebuilding an older date (a retry, a backfill) must not take them
        back in time. Every partition up to a completed DbtRun's date was loaded, so rebuilding as of that
        date is consistent and picks up reloaded older partitions.
        """
        with open_warehouse(self.config.settings, tenant=self.tenant) as warehouse:
            newest = warehouse.latest_marker_date(self.task_family, self.tenant)
        if newest is not None and newest > self.date:
            log.info(
                "dbt tenant=%s date=%s: DbtRun of %s is complete; building as of %s",
                self.tenant,
                self.date,
                newest,
                newest,
            )
            self._check_keys_loaded(newest)
            return newest
        return self.date

    def _check_keys_loaded(self, as_of: dt.date) -> None:
        """Staging judges deletes by the keys snapshot of the date it builds as of: a later date built before
        ``deletes: keys`` was turned on has none, and an absent snapshot would read as "every key deleted"."""
        streams = [t.name for t in self.config.tables_for(self.tenant) if t.keys_of is not None]
        if not streams:
            return
        done = completed_task_ids("LoadIceberg", self.tenant, as_of, fresh=True)
        missing = [
            name for name in streams if LoadIceberg(tenant=self.tenant, table=name, date=as_of).task_id not in done
        ]
        if missing:
            raise LoadError(
                f"dbt would build as of {as_of} (its DbtRun is complete), but the keys of "
                f"{', '.join(missing)} were not loaded for that date (deletes: keys came later); "
                f"run: mozart rerun --tenant {self.tenant} --date {as_of.isoformat()}",
                tenant=self.tenant,
            )

    def _progress_callback(self) -> Any:
        holder: dict[str, Progress] = {}

        def update(state: DbtProgress) -> None:
            if "progress" not in holder:
                holder["progress"] = Progress(self, state.nodes_total)
            last = state.nodes_done == state.nodes_total
            holder["progress"].update(state.nodes_done, state.message(self.tenant), force=last)
            if state.nodes_done:
                pause_point("dbt_mid_build")  # server-fault tests: hold the worker while dbt is mid-build

        return update

    def _keep_run_results(self, result: DbtRunResult) -> Path:
        """Copy ``run_results.json`` to ``{report_dir}/dbt/{tenant}/{date}/`` (atomically) for run reports."""
        folder = self.config.settings.report_dir / "dbt" / self.tenant / self.date.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / "run_results.json"
        partial = folder / f".run_results.json.{os.getpid()}.tmp"
        shutil.copyfile(result.run_results_path, partial)
        partial.replace(final)
        return final

    def _marker(self, result: DbtRunResult, report: Path, selection: str) -> Marker:
        details: dict[str, Any] = {
            "target": result.target,
            "selection": selection,
            "counts": result.counts(),
            "seconds": round(result.elapsed_seconds, 2),
            "invocation_id": result.invocation_id,
            "run_results": str(report),
            "as_of": result.run_date.isoformat(),
        }
        return Marker(
            task_family=self.task_family,
            task_id=self.task_id,
            tenant=self.tenant,
            date=self.date,
            table=None,
            rows=result.models_built,
            details=details,
        )
