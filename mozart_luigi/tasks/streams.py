"""Write the parallel streams of one extract (``connectors/parallel.py``) into parts, one thread per stream.

Threads, not processes: each stream's time is spent in the database driver (ADBC's COPY decoding,
connectorx's Rust reader, libpq/PyMySQL socket reads; they release the GIL at least while they wait on the
server) and in Arrow's Parquet writer and compute kernels (which release it); a stream's connection and its
snapshot (an imported PostgreSQL snapshot, a MariaDB
read view opened under the global read lock) live in this process and could not be handed to another one.
The SQLAlchemy row path converts values in Python (GIL-bound): its streams overlap their I/O but share one
core for the conversion.

Each stream writes its own parts through its own :class:`~mozart_luigi.parquet.PartWriter`; the part numbers
come from one counter shared by the writers, so the parts of all streams are numbered ``0..n-1`` under the
one manifest (a number is taken when a part is opened). ``on_part`` is called under a lock, with the part's
number. Memory: one batch per stream in flight (``MOZART_BATCH_ROWS`` x streams, plus each driver's batch).
A failing stream stops the others at their next batch; the first error is raised once all have stopped.
"""

from __future__ import annotations

__all__ = ["write_streams"]

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from mozart_luigi.connectors.parallel import ParallelRead, Stream
from mozart_luigi.manifest import PartFile
from mozart_luigi.parquet import PartWriter

#: builds one stream's writer from the shared part counter and the (locked) ``on_part`` callback
WriterFactory = Callable[[Callable[[], int], Callable[[int, PartFile], None] | None], PartWriter]


class _Stopped(Exception):
    """Internal: another stream failed; this one stops at its next batch."""


def write_streams(
    read: ParallelRead,
    make_writer: WriterFactory,
    *,
    on_part: Callable[[int, PartFile], None] | None = None,
    progress: Callable[[int], None] | None = None,
    every_seconds: float = 1.0,
) -> tuple[PartFile, ...]:
    """Every stream's batches into parts; the parts of all streams, in part-number order."""
    counter, lock = itertools.count(), threading.Lock()

    def next_part() -> int:
        with lock:
            return next(counter)

    locked = None if on_part is None else _locked(on_part, threading.Lock())
    writers = [make_writer(next_part, locked) for _ in read.streams]
    stop = threading.Event()
    with ThreadPoolExecutor(len(writers), thread_name_prefix="mozart-stream") as pool:
        futures = [pool.submit(_write, s, w, stop) for s, w in zip(read.streams, writers, strict=True)]
        pending: set[Future[list[tuple[int, PartFile]]]] = set(futures)
        try:
            while pending:
                _done, pending = wait(pending, timeout=every_seconds, return_when=FIRST_EXCEPTION)
                if any(f.done() and f.exception() is not None for f in futures):
                    stop.set()
                if progress is not None:
                    progress(sum(w.rows for w in writers))
        except BaseException:
            stop.set()  # this thread failed (or was interrupted): the streams stop at their next batch
            raise
    errors = [e for f in futures if (e := f.exception()) is not None and not isinstance(e, _Stopped)]
    if errors:
        raise errors[0]
    parts = sorted(itertools.chain.from_iterable(f.result() for f in futures), key=lambda item: item[0])
    return tuple(part for _n, part in parts)


def _write(stream: Stream, writer: PartWriter, stop: threading.Event) -> list[tuple[int, PartFile]]:
    """One stream into its writer; ``(number, part)`` for each part it wrote."""
    with writer:
        for batch in stream.batches:
            if stop.is_set():
                raise _Stopped
            writer.write(batch)
        files = writer.close()
    return [(_number(part), part) for part in files]


def _number(part: PartFile) -> int:
    """The part number in ``part-{run_id}-{n:05d}.parquet``."""
    return int(part.name.rsplit("-", 1)[1].split(".", 1)[0])


def _locked(on_part: Callable[[int, PartFile], None], lock: threading.Lock) -> Callable[[int, PartFile], None]:
    def call(n: int, part: PartFile) -> None:
        with lock:
            on_part(n, part)

    return call
