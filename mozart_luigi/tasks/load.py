"""``LoadIceberg(tenant, table, date)``: replace one date of ``{tenant}.{table}`` from the extract's Parquet.

Template: read the manifest -> ``ensure_table`` (create, or add/widen columns; refused drift fails here,
before any change) -> ``replace_partition`` (delete the date, insert exactly the manifest's files) ->
``write_verified_marker`` (the partition count must equal the manifest's ``row_count``, else no marker and
the task fails). A crash anywhere before the marker leaves the task incomplete and the rerun converges (the
replace is idempotent). Once a week per table (:func:`maintenance_due`) the load then expires the table's
snapshots older than ``MOZART_SNAPSHOT_RETENTION_DAYS`` (best effort).

Crash test hook: ``MOZART_TEST_CRASH_AT=after_delete`` kills the process between the delete and the insert
(see :func:`mozart_luigi.warehouse.common.crash_point`).
"""

from __future__ import annotations

__all__ = ["LoadIceberg", "maintenance_due"]

import datetime as dt
import logging
import time
import zlib
from typing import Any

import luigi

from mozart_luigi.config import normalise_name, validate_tenant_id
from mozart_luigi.errors import ConfigError, ConfigProblem, MozartError, VerificationError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.targets import MarkerTarget
from mozart_luigi.tasks.base import MarkerBulkComplete, Progress, TenantDateTask
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.warehouse import Marker, open_warehouse
from mozart_luigi.warehouse.base import Warehouse

log = logging.getLogger(__name__)


def maintenance_due(table: str, date: dt.date) -> bool:
    """Once a week per table: the day is spread over the week by the table name (stable across runs)."""
    return (date.toordinal() + zlib.crc32(table.encode("utf-8"))) % 7 == 0


class LoadIceberg(MarkerBulkComplete, TenantDateTask):
    """Load one extracted table and date into ``iceberg.{tenant}.{table}`` (DuckDB in profile ``local``)."""

    table: str = luigi.Parameter(description="table name as in tables.yaml (normalised)")

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        """One writer per target table; different tables load in parallel.

        In profile ``local`` also ``duckdb_writer`` (as ``DbtRun``): DuckDB lets one process write the file,
        and a dbt build holds it for seconds, so with several workers a load would otherwise time out.
        """
        resources = {f"iceberg_{self.tenant}_{self.table}": 1}
        if self.config.settings.profile == "local":
            resources["duckdb_writer"] = 1
        return resources

    def requires(self) -> luigi.Task:
        return ExtractTable(tenant=self.tenant, table=self.table, date=self.date)

    def output(self) -> MarkerTarget:
        return MarkerTarget(self.task_family, self.task_id, self.tenant, self.date, table=self.table)

    def run(self) -> None:
        self._check_params()
        started = time.monotonic()
        manifest: Manifest = self.input().read()
        self._check_manifest(manifest)
        settings = self.config.settings
        progress = Progress(self, total=4, every_seconds=0)
        with open_warehouse(settings, tenant=self.tenant) as warehouse:
            progress.update(0, f"{self.tenant}.{self.table} {self.date}: checking the table schema")
            changes = warehouse.ensure_table(self.tenant, self.table, manifest.schema, date=self.date)
            progress.update(1, f"{self.tenant}.{self.table} {self.date}: replacing the partition with "
                               f"{manifest.row_count} row(s) from {len(manifest.files)} file(s)")  # fmt: skip
            warehouse.replace_partition(self.tenant, self.table, manifest, Lake.from_settings(settings))
            progress.update(2, f"{self.tenant}.{self.table} {self.date}: verifying the row count")
            marker = self._marker(manifest, manifest.row_count, changes, seconds=time.monotonic() - started)
            rows = warehouse.write_verified_marker(marker, manifest.row_count)
            self._verify(rows, manifest)
            if maintenance_due(self.table, self.date):
                self._expire_snapshots(warehouse, settings.snapshot_retention_days)
        seconds = time.monotonic() - started
        progress.update(4, f"{self.tenant}.{self.table} {self.date}: loaded {rows} row(s) in {seconds:.1f}s")
        log.info("loaded tenant=%s table=%s date=%s rows=%d files=%d bytes=%d seconds=%.2f changes=%s",
                 self.tenant, self.table, self.date, rows, len(manifest.files),
                 sum(f.bytes for f in manifest.files), seconds, changes or "none")  # fmt: skip

    # ------------------------------------------------------------------------------------------ steps
    def _expire_snapshots(self, warehouse: Warehouse, retention_days: int) -> None:
        """Best effort, after the marker: a failure is logged and retried next week, the load stands."""
        try:
            left = warehouse.expire_snapshots(self.tenant, self.table, retention_days)
        except MozartError as exc:
            log.warning("tenant %s table %s: snapshot expiry skipped: %s", self.tenant, self.table, exc)
            return
        if left is not None:
            log.info("tenant %s table %s: snapshots older than %d day(s) expired, %d kept", self.tenant,
                     self.table, retention_days, left)  # fmt: skip

    def _check_params(self) -> None:
        validate_tenant_id(self.tenant)
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

    def _check_manifest(self, manifest: Manifest) -> None:
        found = (manifest.tenant, manifest.table, manifest.date)
        if found != (self.tenant, self.table, self.date):
            raise VerificationError(f"manifest is for {found}, not for date {self.date}",
                                    tenant=self.tenant, table=self.table)  # fmt: skip

    def _verify(self, rows: int, manifest: Manifest) -> None:
        """``rows``: the partition's count, which the warehouse compared before writing (or not) the marker."""
        if rows != manifest.row_count:
            raise VerificationError(f"partition {self.date} holds {rows} row(s) after the load, the manifest "
                                    f"(run {manifest.run_id}) says {manifest.row_count}; no marker written",
                                    tenant=self.tenant, table=self.table)  # fmt: skip

    def _marker(self, manifest: Manifest, rows: int, changes: list[str], *, seconds: float = 0.0) -> Marker:
        details: dict[str, Any] = {"run_id": manifest.run_id, "files": [f.name for f in manifest.files],
                                   "changes": changes, "seconds": round(seconds, 3),
                                   "extracted_at": manifest.extracted_at.isoformat()}  # fmt: skip
        return Marker(task_family=self.task_family, task_id=self.task_id, tenant=self.tenant, date=self.date,
                      table=self.table, rows=rows, details=details)  # fmt: skip
