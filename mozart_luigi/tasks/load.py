"""``LoadIceberg(tenant, table, date)``: make the extract's Parquet parts the date of ``{tenant}.{table}``.

Template: read the manifest (checked: :meth:`Lake.read_manifest`) -> :meth:`Warehouse.load_day`, which
verifies every part (name, size, checksum, footer rows) and the schema drift before anything changes, then
replaces the date in **one commit** and records the task's marker -> once a week per table
(:func:`maintenance_due`) expire the table's snapshots older than ``MOZART_SNAPSHOT_RETENTION_DAYS``.

Failure semantics: a crash before the commit leaves the old day intact and the task incomplete; a crash
after it leaves the new day, and the rerun recognises its own commit (no second one) and writes the marker.
When the extract itself is bad (:class:`~mozart_luigi.errors.ExtractBrokenError`: a part missing, truncated,
replaced or misnamed, an unreadable manifest) or its frozen schema is refused (``SchemaDriftError``), the
load moves ``_SUCCESS`` aside (``_SUCCESS.invalid-<time>``, kept for inspection): the extract is incomplete
again and the next run extracts the day anew. Nothing was committed.

``LoadIceberg(..., refresh=R)`` loads the day again after ``ExtractTable(..., refresh=R)`` re-extracted it
for the run of date ``R`` (``lookback_days``): the same replace of the date in one commit, its own marker
(filed under the day it loaded, like every load marker). When the newest load of the day already committed
this very extract (its ``run_id``), only the marker is written.
"""

from __future__ import annotations

__all__ = ["LoadIceberg", "maintenance_due"]

import datetime as dt
import logging
import time
import zlib
from typing import Any

import luigi

from mozart_luigi.errors import ConfigError, ConfigProblem, ExtractBrokenError, MozartError, SchemaDriftError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.names import normalise_name
from mozart_luigi.targets import MarkerTarget
from mozart_luigi.tasks.base import MarkerBulkComplete, Progress, RefreshableDay
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.warehouse import Marker, open_warehouse
from mozart_luigi.warehouse.base import DayLoad, Warehouse

log = logging.getLogger(__name__)


def maintenance_due(table: str, date: dt.date) -> bool:
    """Once a week per table: the day is spread over the week by the table name (stable across runs)."""
    return (date.toordinal() + zlib.crc32(table.encode("utf-8"))) % 7 == 0


class LoadIceberg(MarkerBulkComplete, RefreshableDay):
    """Load one extracted table and date into ``iceberg.{tenant}.{table}`` (DuckDB in profile ``local``)."""

    table: str = luigi.Parameter(description="table name as in tables.yaml (normalised)")

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]  # a property over luigi's class attribute
        """One writer per target table; different tables load in parallel.

        In profile ``local`` also ``duckdb_writer`` (as ``DbtRun``): DuckDB lets one process write the file,
        and a dbt build holds it for seconds, so with several workers a load would otherwise time out.
        """
        resources = {f"iceberg_{self.tenant}_{self.table}": 1}
        if self.config.settings.profile == "local":
            resources["duckdb_writer"] = 1
        return resources

    def requires(self) -> luigi.Task:
        return ExtractTable(tenant=self.tenant, table=self.table, date=self.date, refresh=self.refresh)

    def output(self) -> MarkerTarget:
        return MarkerTarget(self.task_family, self.task_id, self.tenant, self.date, table=self.table)

    def run(self) -> None:
        self._check_params()
        started = time.monotonic()
        settings = self.config.settings
        lake = Lake.from_settings(settings)
        progress = Progress(self, total=3)  # a load of a second or less: its first and last message only
        where = f"{self.tenant}.{self.table} {self.date}"
        manifest: Manifest | None = None
        try:
            progress.update(0, f"{where}: reading the manifest")
            manifest = lake.read_manifest(self.tenant, self.table, self.date)
            progress.update(
                1, f"{where}: verifying {len(manifest.files)} part(s) and committing {manifest.row_count:,} row(s)"
            )
            with open_warehouse(settings, tenant=self.tenant) as warehouse:
                if self.refresh is not None and self._loaded_already(warehouse, manifest):
                    progress.update(3, f"{where}: extract {manifest.run_id} already loaded, marker written", force=True)
                    return
                result = warehouse.load_day(DayLoad(manifest, lake, self._marker(manifest)))
                if self.refresh is None and maintenance_due(self.table, self.date):  # once a week, not per refresh
                    self._expire_snapshots(warehouse, settings.snapshot_retention_days)
        except (ExtractBrokenError, SchemaDriftError) as exc:
            self._invalidate_extract(lake, exc, None if manifest is None else manifest.run_id)
            raise
        seconds = time.monotonic() - started
        how = "already committed, marker written" if result.recovered else f"loaded in {seconds:.1f}s"
        progress.update(3, f"{where}: {result.rows:,} row(s) {how}", force=True)
        if manifest.checksums:
            log.info(
                "checksums pass tenant=%s table=%s date=%s %s",
                self.tenant,
                self.table,
                self.date,
                " ".join(f"sum({column})={value}" for column, value in manifest.checksums.items()),
            )
        log.info(
            "loaded tenant=%s table=%s date=%s rows=%d files=%d bytes=%d seconds=%.2f snapshot=%s "
            "recovered=%s changes=%s",
            self.tenant,
            self.table,
            self.date,
            result.rows,
            result.files,
            sum(f.bytes for f in manifest.files),
            seconds,
            result.snapshot_id,
            result.recovered,
            "; ".join(result.changes) or "none",
        )

    # ------------------------------------------------------------------------------------------ steps
    def _loaded_already(self, warehouse: Warehouse, manifest: Manifest) -> bool:
        """A refresh whose extract the newest load of the day already committed (another run's refresh of the
        same extract): record this task's marker, load nothing. Markers are written only after their commit."""
        loads = [
            m
            for m in warehouse.markers(self.tenant, self.date)
            if m.task_family == self.task_family and m.table == self.table
        ]
        newest = max(loads, key=lambda m: m.finished_at, default=None)
        if newest is None or newest.details.get("run_id") != manifest.run_id:
            return False
        warehouse.write_marker(self._marker(manifest))
        log.info(
            "tenant %s table %s date %s: extract %s is the loaded one (%s); marker written, nothing loaded",
            self.tenant,
            self.table,
            self.date,
            manifest.run_id,
            newest.task_id,
        )
        return True

    def _expire_snapshots(self, warehouse: Warehouse, retention_days: int) -> None:
        """Best effort, after the marker: a failure is logged and retried next week, the load stands."""
        started = time.monotonic()
        try:
            left = warehouse.expire_snapshots(self.tenant, self.table, retention_days)
        except MozartError as exc:
            log.warning("tenant %s table %s: snapshot expiry skipped: %s", self.tenant, self.table, exc)
            return
        if left is not None:
            log.info(
                "tenant %s table %s: snapshots older than %d day(s) expired, %d kept (maintenance %.2f s)",
                self.tenant,
                self.table,
                retention_days,
                left,
                time.monotonic() - started,
            )

    def _check_params(self) -> None:
        if normalise_name(self.table) != self.table:
            raise ConfigError(
                [
                    ConfigProblem(
                        "tables.yaml",
                        f"tables.{self.table}",
                        f"LoadIceberg needs the normalised name {normalise_name(self.table)!r}",
                    )
                ]
            )

    def _invalidate_extract(self, lake: Lake, exc: MozartError, run_id: str | None) -> None:
        """Move the extract's manifest aside so the next run extracts the day again (say so in the error);
        not when a newer extract (another ``run_id``) was published meanwhile: that one is not known bad."""
        url = lake.manifest_url(self.tenant, self.table, self.date)
        if run_id is not None and (current := self._current_run_id(lake)) not in (None, run_id):
            log.warning(
                "tenant %s table %s date %s: extract %s was replaced by %s meanwhile; not invalidated",
                self.tenant,
                self.table,
                self.date,
                run_id,
                current,
            )
            return
        try:
            moved = lake.move_aside(url, f"invalid-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
        except MozartError as move_error:
            log.error("could not invalidate %s: %s", url, move_error)
            return
        note = f"; the extract was invalidated ({moved}) and the next run extracts the day again"
        exc.args = (f"{exc.args[0] if exc.args else exc}{note}", *exc.args[1:])
        log.warning("tenant %s table %s date %s: extract invalidated: %s", self.tenant, self.table, self.date, exc)

    def _current_run_id(self, lake: Lake) -> str | None:
        try:
            return lake.read_manifest(self.tenant, self.table, self.date).run_id
        except MozartError:
            return None

    def _marker(self, manifest: Manifest) -> Marker:
        details: dict[str, Any] = {
            "run_id": manifest.run_id,
            "files": [f.name for f in manifest.files],
            "extracted_at": manifest.extracted_at.isoformat(),
        }
        if self.refresh is not None:
            details["refresh"] = self.refresh.isoformat()
        if manifest.checksums:  # the marker is written only once the loaded day's sums equal these
            details["checksums"] = manifest.checksums
        return Marker(
            task_family=self.task_family,
            task_id=self.task_id,
            tenant=self.tenant,
            date=self.date,
            table=self.table,
            rows=manifest.row_count,
            details=details,
        )
