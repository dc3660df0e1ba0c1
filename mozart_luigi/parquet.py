"""Streaming Parquet parts on the lake: ``part-{run_id}-{n:05d}.parquet``, rotated every ``part_rows`` rows.

Memory is bounded by one batch: each batch is written as it arrives. A part becomes visible on S3 only when it
is closed (multipart upload); a local part is written in place. Either way a part without a ``_SUCCESS``
manifest is garbage from a failed attempt, removed by the next attempt before it writes.

Test hook (crash safety): when ``MOZART_TEST_CRASH_AT`` names a point, the process SIGKILLs itself there —
``mid_stream`` (a part is complete and the next one half-written) or ``before_manifest`` (every part written,
no manifest yet; see ``ExtractTable``). Unset in production, it costs one dictionary lookup per point.
"""

from __future__ import annotations

__all__ = ["CRASH_ENV", "PartWriter", "crash_point", "part_name"]

import logging
import os
import signal
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from mozart_luigi.errors import StorageError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import PartFile

log = logging.getLogger(__name__)
CRASH_ENV = "MOZART_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process when ``MOZART_TEST_CRASH_AT == name`` (crash-safety tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("%s=%s: killing the process", CRASH_ENV, name)
        os.kill(os.getpid(), signal.SIGKILL)


def part_name(run_id: str, n: int) -> str:
    return f"part-{run_id}-{n:05d}.parquet"


class PartWriter:
    """Write batches with one schema into rotating parts; :meth:`close` returns the parts written.

    Zero batches still give one typed zero-row part, so an empty table is a valid, complete extract.
    """

    def __init__(
        self,
        lake: Lake,
        dir_url: str,
        run_id: str,
        schema: pa.Schema,
        *,
        compression: str = "zstd",
        part_rows: int = 1_000_000,
    ) -> None:
        self._lake = lake
        self._dir_url = dir_url
        self._run_id = run_id
        self._schema = schema
        self._compression = compression
        self._part_rows = part_rows
        self._files: list[PartFile] = []
        self._stream: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self._files) + self._rows_in_part

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self._files)

    def write(self, batch: pa.RecordBatch) -> None:
        """Append a batch, splitting it where a part reaches ``part_rows`` rows."""
        if self._files and self._rows_in_part:
            crash_point("mid_stream")
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None:
                self._open()
            take = min(batch.num_rows - offset, self._part_rows - self._rows_in_part)
            self._write(batch.slice(offset, take))
            offset += take
            if self._rows_in_part >= self._part_rows:
                self._close_part()

    def close(self) -> tuple[PartFile, ...]:
        if self._writer is None and not self._files:
            self._open()  # empty table: one typed zero-row part
        if self._writer is not None:
            self._close_part()
        return tuple(self._files)

    def abort(self) -> None:
        """Release the open part after a failure (it stays garbage until the next attempt clears it)."""
        for closable in (self._writer, self._stream):
            if closable is not None:
                try:
                    closable.close()
                except (OSError, pa.ArrowException) as exc:
                    log.debug("closing an aborted part failed: %s", exc)
        self._writer = self._stream = None

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()

    # ---------------------------------------------------------------------------------------- parts
    def _url(self) -> str:
        return f"{self._dir_url}/{part_name(self._run_id, len(self._files))}"

    def _open(self) -> None:
        url = self._url()
        try:
            self._stream = self._lake.open_output(url)
            self._writer = pq.ParquetWriter(
                self._stream,
                self._schema,
                compression=self._compression,
                use_dictionary=True,
                # a column whose dictionary passes 64 KiB (ids, timestamps, free text) falls back to plain
                # encoding at once instead of hashing every value of the row group: ~2x faster writes and
                # smaller files on typical tables; low-cardinality columns stay dictionary-encoded
                dictionary_pagesize_limit=64 * 1024,
                write_statistics=True,
            )
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot create {url}: {exc}") from exc
        self._rows_in_part = 0

    def _write(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None  # noqa: S101
        try:
            self._writer.write_batch(batch)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot write {self._url()}: {exc}") from exc
        self._rows_in_part += batch.num_rows

    def _close_part(self) -> None:
        assert self._writer is not None and self._stream is not None  # noqa: S101
        url = self._url()
        try:
            self._writer.close()
            size = self._stream.tell()
            self._stream.close()
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot finish {url}: {exc}") from exc
        self._files.append(PartFile(name=url.rsplit("/", 1)[1], rows=self._rows_in_part, bytes=size))
        self._writer = self._stream = None
        self._rows_in_part = 0
