"""Streaming Parquet parts on the lake: ``part-{run_id}-{n:05d}.parquet``, rotated every ``part_rows`` rows.

Parts are **Iceberg-ready**: after the source columns each one carries ``_mozart_date`` (the run date, the
table's identity partition) and ``_mozart_extracted_at`` (UTC, the same instant for every row of the run),
so the load registers the files as they are, without decoding a row. For each part the writer records its
size, the SHA-256 of its bytes (hashed as they are written) and, on S3, the ETag the store gives it.

Memory is bounded by one batch: each batch is written as it arrives. A part becomes visible on S3 only when it
is closed (multipart upload); a local part is written in place. Either way a part without a ``_SUCCESS``
manifest is garbage from a failed attempt, removed by the next attempt before it writes.

Test hook (crash safety): when ``MOZART_TEST_CRASH_AT`` names a point, the process SIGKILLs itself there —
``mid_stream`` (a part is complete and the next one half-written) or ``before_manifest`` (every part written,
no manifest yet; see ``ExtractTable``). Unset in production, it costs one dictionary lookup per point.
"""

from __future__ import annotations

__all__ = ["CRASH_ENV", "PIPELINE_FIELDS", "PartWriter", "crash_point", "part_name", "pause_point", "pipeline_columns"]

import datetime as dt
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from types import TracebackType

import numpy as np
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
    pause_point(name)


PAUSE_ENV = "MOZART_TEST_PAUSE_AT"


def pause_point(name: str, *, limit: float = 300.0) -> None:
    """Race tests only: when ``MOZART_TEST_PAUSE_AT == name``, create ``{MOZART_TEST_PAUSE_DIR}/{name}.reached``
    and wait (at most ``limit`` seconds) until the test creates ``{name}.go``. A no-op when unset."""
    if os.environ.get(PAUSE_ENV) != name:
        return
    folder = os.environ.get("MOZART_TEST_PAUSE_DIR", ".")
    with open(os.path.join(folder, f"{name}.reached"), "w", encoding="utf-8") as flag:
        flag.write(str(os.getpid()))
    deadline = time.monotonic() + limit
    while not os.path.exists(os.path.join(folder, f"{name}.go")) and time.monotonic() < deadline:
        time.sleep(0.05)


def part_name(run_id: str, n: int) -> str:
    return f"part-{run_id}-{n:05d}.parquet"


PIPELINE_FIELDS = (
    pa.field("_mozart_date", pa.date32()),
    pa.field("_mozart_extracted_at", pa.timestamp("us", tz="UTC")),
)


def pipeline_columns(rows: int, date: dt.date, extracted_at: dt.datetime) -> list[pa.Array]:
    """The two constant pipeline columns for ``rows`` rows (built from numpy, no per-row Python)."""
    days = (date - dt.date(1970, 1, 1)).days
    instant = extracted_at if extracted_at.tzinfo else extracted_at.replace(tzinfo=dt.UTC)
    micros = (instant - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return [
        pa.array(np.full(rows, days, dtype=np.int32)).view(PIPELINE_FIELDS[0].type),
        pa.array(np.full(rows, micros, dtype=np.int64)).view(PIPELINE_FIELDS[1].type),
    ]


class _HashingSink:
    """A write-only file object: forwards to ``stream`` and hashes every byte (SHA-256) on the way."""

    def __init__(self, stream: pa.NativeFile) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        self.sha256.update(data)
        self._stream.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class PartWriter:
    """Write batches with one schema into rotating parts; :meth:`close` returns the parts written.

    ``schema`` is the source schema; each part's schema is it plus :data:`PIPELINE_FIELDS`, filled with
    ``date`` and ``extracted_at``. Zero batches still give one typed zero-row part, so an empty table is a
    valid, complete extract. ``on_part(n, part)`` is called as each part is finished (and on the lake): the
    extract's prestage of the part into the Iceberg table starts there, while the next part is read.

    Parts are numbered 0, 1, 2, ... by this writer; parallel streams of one extract pass a shared
    ``next_part`` (a thread-safe counter) instead, so the parts of all their writers are numbered 0..n-1
    together. ``n`` (in the part's name and in ``on_part``) is the number the part was opened with.
    """

    def __init__(
        self,
        lake: Lake,
        dir_url: str,
        run_id: str,
        schema: pa.Schema,
        *,
        date: dt.date,
        extracted_at: dt.datetime,
        compression: str = "zstd",
        part_rows: int = 1_000_000,
        on_part: Callable[[int, PartFile], None] | None = None,
        next_part: Callable[[], int] | None = None,
    ) -> None:
        self._lake = lake
        self._next_part = next_part
        self._n = 0  # the number of the part being written
        self._on_part = on_part
        self._dir_url = dir_url
        self._run_id = run_id
        self._schema = schema
        self._file_schema = pa.schema([*schema, *PIPELINE_FIELDS], metadata=schema.metadata)
        self._date = date
        self._extracted_at = extracted_at
        self._compression = compression
        self._part_rows = part_rows
        self._files: list[PartFile] = []
        self._stream: pa.NativeFile | None = None
        self._sink: _HashingSink | None = None
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

    def rotate(self) -> None:
        """Close the current part now (the next batch starts a new one)."""
        if self._writer is not None:
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
        self._writer = self._stream = self._sink = None

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()

    # ---------------------------------------------------------------------------------------- parts
    def _url(self) -> str:
        return f"{self._dir_url}/{part_name(self._run_id, self._n)}"

    def _open(self) -> None:
        self._n = len(self._files) if self._next_part is None else self._next_part()
        url = self._url()
        try:
            self._stream = self._lake.open_output(url)
            self._sink = _HashingSink(self._stream)
            self._writer = pq.ParquetWriter(
                self._sink,
                self._file_schema,
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
        columns = [*batch.columns, *pipeline_columns(batch.num_rows, self._date, self._extracted_at)]
        try:
            self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._file_schema))
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot write {self._url()}: {exc}") from exc
        self._rows_in_part += batch.num_rows

    def _close_part(self) -> None:
        assert self._writer is not None and self._stream is not None and self._sink is not None  # noqa: S101
        url = self._url()
        try:
            self._writer.close()
            self._stream.close()
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot finish {url}: {exc}") from exc
        size, digest = self._sink.size, self._sink.sha256.hexdigest()
        etag = self._lake.etag(url, size) if self._lake.scheme == "s3" else None
        part = PartFile(name=url.rsplit("/", 1)[1], rows=self._rows_in_part, bytes=size, sha256=digest, etag=etag)
        self._files.append(part)
        self._writer = self._stream = self._sink = None
        self._rows_in_part = 0
        if self._on_part is not None:
            self._on_part(self._n, part)
