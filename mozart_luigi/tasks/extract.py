"""``ExtractTable(tenant, table, date)``: a source table (or a day of it) -> Parquet parts -> ``_SUCCESS``.

The template of :meth:`ExtractTable.run`:

1. open one consistent read snapshot (:meth:`Connector.snapshot`), count the rows of the window in it;
2. stream the rows in batches of ``MOZART_BATCH_ROWS`` into Iceberg-ready parts rotated at
   ``MOZART_PART_ROWS``, named by this attempt's ``run_id`` (another live attempt's parts are never touched);
3. publish the manifest only when the rows written equal the count (else :class:`VerificationError`), and
   only if no manifest exists yet (a publish-once write: S3 ``If-None-Match``, a hard link locally). An
   attempt that finds the day already published (another worker, or a resumed straggler) keeps that one
   and deletes its own parts;
4. after publishing, delete the parts of failed attempts (any part the manifest does not list).

A crash at any point before step 3 leaves no manifest, so the task is incomplete and the rerun converges.

``ExtractTable(..., refresh=R)`` extracts the same day again for the run of date ``R`` (a table's
``lookback_days``): the same steps, a manifest that records ``refresh: R`` and replaces the day's (a newer
attempt wins), complete once the day's manifest comes from a refresh of ``R`` or of a later run
(:class:`RefreshTarget`). See docs/late-rows.md.
"""

from __future__ import annotations

__all__ = ["ExtractTable", "RefreshTarget"]

import datetime as dt
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import luigi

from mozart_luigi.config import TableConfig, TenantConfig
from mozart_luigi.connectors import Snapshot, Window, connector_for
from mozart_luigi.connectors.parallel import ParallelRead, open_streams, stream_count
from mozart_luigi.errors import ConfigError, ConfigProblem, MozartError, VerificationError
from mozart_luigi.lake import Lake, ManifestTarget
from mozart_luigi.manifest import Manifest, PartFile, new_run_id, run_started
from mozart_luigi.parquet import PartWriter, crash_point, pause_point
from mozart_luigi.tasks.base import Progress, RefreshableDay
from mozart_luigi.tasks.streams import write_streams
from mozart_luigi.warehouse import prestage_for

if TYPE_CHECKING:
    from mozart_luigi.warehouse.iceberg import Prestage

log = logging.getLogger(__name__)
STALE_AFTER = dt.timedelta(hours=1)


@dataclass(frozen=True)
class _Job:
    tenant: TenantConfig
    table: TableConfig
    window: Window | None
    lake: Lake
    dir_url: str
    run_id: str
    extracted_at: dt.datetime


@dataclass(frozen=True)
class _Extracted:
    count: int
    files: tuple[PartFile, ...]
    snapshot: Snapshot
    details: dict[str, Any] = field(default_factory=dict)  # parallel streams: reader, streams, split_by


class RefreshTarget(ManifestTarget):
    """The output of ``ExtractTable(..., refresh=R)``: the day's manifest, extracted by the refresh of run
    ``R`` or of a later run. Not the day's own extract, nor an older refresh: those predate the late rows
    this run must pick up, so the day is extracted again. An unreadable manifest does not count."""

    def __init__(self, lake: Lake, url: str, *, tenant: str, table: str, date: dt.date, refresh: dt.date) -> None:
        super().__init__(lake, url, tenant=tenant, table=table, date=date)
        self.refresh = refresh

    def exists(self) -> bool:
        if not super().exists():
            return False
        try:
            done = self.read().refresh
        except MozartError as exc:
            log.warning("%s: unreadable (%s); the day is extracted again", self.url, exc)
            return False
        return done is not None and done >= self.refresh


class ExtractTable(RefreshableDay):
    """Extract one configured table of one tenant for one date into the raw lake."""

    table: str = luigi.Parameter(description="table name from config/tables.yaml (normalised)")

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]  # a property over luigi's class attribute
        """One of ``max_connections`` slots of the tenant's database: ``{"db_<tenant>_<slot>": 1}``.

        Luigi's scheduler gives a resource it has no ``[resources]`` entry for a capacity of 1, so a single
        ``db_<tenant>`` resource would serialise every tenant's extracts. Instead each table takes one unit
        of slot ``crc32(table) % max_connections``: at most ``max_connections`` extracts (one connection
        each) run against a tenant database at once, without any luigi.cfg entry. Two tables that hash to the
        same slot wait for each other even if another slot is free.

        A table read in N parallel streams (``parallel: N``, capped at ``max_connections - 1``) holds N + 1
        connections at its start (the streams and their coordinator): it takes that many consecutive slots.
        """
        tenant = self.config.tenant(self.tenant)
        slots = tenant.max_connections
        first = zlib.crc32(self.table.encode("utf-8")) % slots
        table = self.config.tables.get(self.table)
        streams = 1 if table is None else stream_count(tenant, table)
        held = 1 if streams == 1 else streams + 1  # parallel: the streams and, while they start, a coordinator
        return {f"db_{self.tenant}_{(first + i) % slots}": 1 for i in range(held)}

    def output(self) -> ManifestTarget:
        lake = self._lake
        if self.refresh is not None:
            return RefreshTarget(
                lake,
                lake.manifest_url(self.tenant, self.table, self.date),
                tenant=self.tenant,
                table=self.table,
                date=self.date,
                refresh=self.refresh,
            )
        return lake.manifest_target(self.tenant, self.table, self.date)

    @property
    def _lake(self) -> Lake:
        return Lake.from_settings(self.config.settings)

    # ------------------------------------------------------------------------------------------ run
    def run(self) -> None:
        job = self._job()
        started = time.monotonic()
        prestage = prestage_for(
            self.config.settings, job.lake, tenant=self.tenant, table=self.table, date=self.date, run_id=job.run_id
        )
        try:
            extracted = self._extract(job, prestage)
            manifest = self._manifest(job, extracted, seconds=time.monotonic() - started)
            if prestage is not None:
                prestage.finish()  # the last part's copy; the others were made while the next parts were read
        except BaseException:
            if prestage is not None:
                prestage.discard()
            raise
        crash_point("before_manifest")
        pause_point("before_manifest")
        published, replaced = job.lake.publish_manifest(manifest)
        if published:
            self._remove_stale_parts(job, manifest, replaced)
        else:
            log.warning(
                "tenant %s table %s date %s: a newer attempt published this day; keeping its "
                "manifest and removing this attempt's %d part(s)",
                self.tenant,
                self.table,
                self.date,
                len(manifest.files),
            )
            for part in manifest.files:
                job.lake.delete_file(f"{job.dir_url}/{part.name}")
            if prestage is not None:
                prestage.discard()
        self._summary(manifest, time.monotonic() - started)

    def _remove_stale_parts(self, job: _Job, manifest: Manifest, replaced: Manifest | None) -> None:
        """Delete the parts of attempts that started before this one and were never published (a crashed or
        losing attempt: it can no longer publish over this newer manifest). Kept: this manifest's parts, those
        of the manifest it replaced (a load may be reading them right now; they go once older than
        :data:`STALE_AFTER`), and any part of an attempt that started after this one (it is live)."""
        keep = {part.name for part in manifest.files} | ({p.name for p in replaced.files} if replaced else set())
        ours = run_started(manifest.run_id)
        cutoff = dt.datetime.now(dt.UTC) - STALE_AFTER
        removed = 0
        for name in job.lake.list_files(job.dir_url):
            if not name.startswith("part-") or name in keep:
                continue
            url = f"{job.dir_url}/{name}"
            started = run_started(name[len("part-") : -len("-00000.parquet")])
            older = started is not None and ours is not None and started < ours
            if older or (job.lake.modified(url) or cutoff) < cutoff:
                job.lake.delete_file(url)
                removed += 1
        if removed:
            log.info("removed %d stale part(s) of earlier attempts under %s", removed, job.dir_url)

    def _job(self) -> _Job:
        table = self.config.table(self.tenant, self.table)
        if self.refresh is not None and table.mode != "incremental":
            raise ConfigError(
                [
                    ConfigProblem(
                        "tables.yaml",
                        f"tables.{self.table}",
                        "only an incremental table's "
                        "day can be extracted again (refresh); a full table is a snapshot "
                        "of the moment it is read",
                    )
                ]
            )
        lake = self._lake
        return _Job(
            tenant=self.config.tenant(self.tenant),
            table=table,
            window=Window.for_date(self.date) if table.mode == "incremental" else None,
            lake=lake,
            dir_url=lake.date_url(self.tenant, self.table, self.date),
            run_id=new_run_id(),
            extracted_at=dt.datetime.now(dt.UTC),
        )

    def _extract(self, job: _Job, prestage: Prestage | None = None) -> _Extracted:
        """Count, then stream every row of the window into parts, in one snapshot; each finished part is
        handed to ``prestage`` (its copy into the Iceberg table runs while the next part is read). A table
        with ``parallel: N`` is read in N key-range streams of that one snapshot (``connectors/parallel.py``)."""
        settings = self.config.settings
        connector = connector_for(job.tenant)
        on_part = None if prestage is None else prestage.submit
        try:
            with connector.snapshot(job.table, job.window) as snap:
                wanted = stream_count(job.tenant, job.table)
                with open_streams(snap, wanted, settings.batch_rows) as streams:
                    if streams is not None:
                        return self._read_streams(job, snap, streams, on_part)
                    count = snap.count()
                    progress = Progress(self, count)
                    progress.update(0, f"{self.table}: 0/{count:,} rows", force=True)
                    writer = self._writer(job, snap, on_part)
                    with writer:
                        for batch in snap.batches(settings.batch_rows):
                            writer.write(batch)
                            progress.update(writer.rows, f"{self.table}: {writer.rows:,}/{count:,} rows")
                        files = writer.close()
                    # not forced: the manifest's closing message follows at once (fewer luigid requests)
                    progress.update(writer.rows, f"{self.table}: {writer.rows:,}/{count:,} rows")
        finally:
            connector.dispose()
        return _Extracted(count, files, snap)

    def _read_streams(
        self, job: _Job, snap: Snapshot, streams: ParallelRead, on_part: Callable[[int, PartFile], None] | None
    ) -> _Extracted:
        """The streams of one snapshot, each in a thread, into parts numbered together; the union is checked
        against the count the coordinator took in that snapshot (in :meth:`_manifest`)."""
        count = streams.count
        progress = Progress(self, count)

        def report(rows: int, *, force: bool = False) -> None:
            message = f"{self.table}: {rows:,}/{count:,} rows in {len(streams.streams)} streams"
            progress.update(rows, message, force=force)

        report(0, force=True)
        files = write_streams(
            streams,
            lambda next_part, locked: self._writer(job, snap, locked, next_part=next_part),
            on_part=on_part,
            progress=report,
        )
        report(sum(f.rows for f in files))  # not forced: the manifest's closing message follows at once
        streams.add_stats(snap)
        details = {"reader": streams.reader, "streams": len(streams.streams), "split_by": streams.split_by}
        return _Extracted(count, files, snap, details)

    def _writer(
        self,
        job: _Job,
        snap: Snapshot,
        on_part: Callable[[int, PartFile], None] | None,
        *,
        next_part: Callable[[], int] | None = None,
    ) -> PartWriter:
        settings = self.config.settings
        return PartWriter(
            job.lake,
            job.dir_url,
            job.run_id,
            snap.schema,
            date=self.date,
            extracted_at=job.extracted_at,
            compression=settings.compression,
            part_rows=settings.part_rows,
            on_part=on_part,
            next_part=next_part,
        )

    def _manifest(self, job: _Job, extracted: _Extracted, *, seconds: float = 0.0) -> Manifest:
        """The manifest, only when the rows written equal the rows counted in the snapshot."""
        rows = sum(f.rows for f in extracted.files)
        if rows != extracted.count:
            raise VerificationError(
                f"wrote {rows} rows but counted {extracted.count} in the same snapshot; no manifest written",
                tenant=self.tenant,
                table=self.table,
            )
        snap = extracted.snapshot
        if snap.zero_dates_nulled:
            by_column = snap.details().get("zero_dates_nulled_by_column")
            log.warning(
                "tenant '%s' table '%s': %d zero/invalid date(s) stored as NULL: %s",
                self.tenant,
                self.table,
                snap.zero_dates_nulled,
                by_column,
            )
        window = job.window
        return Manifest(
            tenant=self.tenant,
            table=self.table,
            date=self.date,
            mode=job.table.mode,
            row_count=rows,
            source_count=extracted.count,
            files=extracted.files,
            schema=snap.schema,
            extracted_at=job.extracted_at,
            run_id=job.run_id,
            window_start=window.start.replace(tzinfo=dt.UTC) if window else None,
            window_end=window.end.replace(tzinfo=dt.UTC) if window else None,
            source=job.tenant.source.describe(),
            source_table=snap.source_table,
            zero_dates_nulled=snap.zero_dates_nulled,
            details={**snap.details(), **extracted.details, "seconds": round(seconds, 3)},  # for the run report
            refresh=self.refresh,
            checksums=dict(snap.sums),  # the table's ``checksum`` sums, from the count's snapshot
        )

    def _summary(self, manifest: Manifest, seconds: float) -> None:
        size = sum(f.bytes for f in manifest.files)
        rate = manifest.row_count / seconds if seconds > 0 else 0.0
        log.info(
            "extract done tenant=%s table=%s date=%s rows=%d bytes=%d files=%d seconds=%.2f rows_per_s=%.0f",
            self.tenant,
            self.table,
            self.date,
            manifest.row_count,
            size,
            len(manifest.files),
            seconds,
            rate,
        )
        message = f"{self.table}: {manifest.row_count:,} rows, {size:,} bytes in {seconds:.1f}s"
        Progress(self, manifest.row_count).update(manifest.row_count, message, force=True)
