"""Parallel streams of one table, all reading one consistent snapshot (tables.yaml ``parallel: N``).

The **coordinator** is the snapshot's own SQLAlchemy connection. In the snapshot the streams will read, it
counts the table, takes the split column's min and max (and the ``checksum`` sums), and cuts ``[min, max]``
into N key ranges of equal width (:func:`split_points`; the first range is open below and takes NULL keys,
the last is open above, so the ranges cover the table whatever its keys). Each **stream** opens its own
connection into that same snapshot and reads one range; once every stream has started, the coordinator's
connection is closed: N connections while the rows stream (N + 1 for that moment, which ``ExtractTable``'s
resources count). How the streams share the snapshot:

* **PostgreSQL** (as ``pg_dump --jobs``): the coordinator's REPEATABLE READ transaction exports its snapshot
  (``pg_export_snapshot()``); each stream begins REPEATABLE READ READ ONLY and imports it with ``SET
  TRANSACTION SNAPSHOT '<id>'`` before its first query (the statement takes no parameter: the id, produced by
  the server, is checked against :data:`SNAPSHOT_ID_RE` before it is written into the SQL). Native streams are
  ADBC connections (the import is their first statement); row-path streams psycopg2 ones.
* **MariaDB/MySQL** (as mydumper): ``FLUSH TABLES WITH READ LOCK`` on the coordinator — no transaction can
  commit while it is held — then the coordinator and every stream start their consistent snapshot (row path:
  ``START TRANSACTION WITH CONSISTENT SNAPSHOT``; connectorx: its one statement, without a count, has returned
  its first batch, so its read view exists), then ``UNLOCK TABLES``; only the split column's min and max run
  under the lock, the count and the sums after it (in the coordinator's snapshot, the same). The lock needs
  the RELOAD privilege and is waited for at most :data:`LOCK_WAIT_SECONDS` (``lock_wait_timeout``: it waits
  for running queries to release their tables, and blocks every writer meanwhile); without the privilege, or
  without the lock in time, the extract logs a warning and reads in one stream, as without ``parallel``.
  Whether to split is decided on the catalog's row estimate (``information_schema.TABLES.TABLE_ROWS``),
  before any lock is taken.
* Other sources (Oracle, SQLite): one stream.

Fewer rows than the table's ``parallel_min_rows``, or fewer distinct key values than streams: one stream
(:func:`open_streams` yields None and the extract reads as it always did). The streams' batches are consumed
in threads by the caller (``tasks/streams.py``): the drivers release the GIL while they wait on the server,
Arrow's Parquet writer while it encodes.
"""

from __future__ import annotations

__all__ = [
    "LOCK_WAIT_SECONDS",
    "SNAPSHOT_ID_RE",
    "ParallelRead",
    "Stream",
    "open_streams",
    "split_points",
    "stream_count",
    "stream_filters",
]

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from mozart_luigi.config import TableConfig, TenantConfig
from mozart_luigi.connectors import _native_mysql, _native_pg
from mozart_luigi.connectors._native_common import NativeUnsupportedError, Where
from mozart_luigi.connectors.native import NativeBatchReader, driver_batch_rows, typed_query
from mozart_luigi.connectors.snapshot import PAUSE_MID_READ, Snapshot
from mozart_luigi.errors import ConfigError, ConfigProblem, SourceError, TypeMappingError
from mozart_luigi.parquet import pause_point
from mozart_luigi.types import ColumnStats

log = logging.getLogger(__name__)
#: what ``pg_export_snapshot()`` returns (``00000003-0000001B-1``); anything else is refused, never inlined
SNAPSHOT_ID_RE = re.compile(r"[0-9A-F]{1,16}-[0-9A-F]{1,16}(?:-[0-9]{1,10})?")
LOCK_WAIT_SECONDS = 10
_LOCK_REFUSED = frozenset({1227, 1205, 1044, 1142})  # no RELOAD privilege; lock wait timeout; access denied

Bound = Callable[[str, int], sa.ColumnElement[Any]]


def stream_count(tenant: TenantConfig, table: TableConfig) -> int:
    """How many streams a table's extract may open: ``parallel``, capped so that the streams and their
    coordinator (N + 1 connections at the start) fit in the tenant's ``max_connections``; 1 without it."""
    if table.parallel < 2:
        return 1
    streams = min(table.parallel, tenant.max_connections - 1)
    return streams if streams >= 2 else 1


def split_points(low: int, high: int, streams: int) -> tuple[int, ...]:
    """The inner bounds cutting ``[low, high]`` into ``streams`` ranges of equal width: ascending, distinct,
    each above ``low`` (fewer when the range holds fewer values than ``streams``; none for one stream)."""
    if streams < 2 or high <= low:
        return ()
    span = high - low + 1
    return tuple(p for p in dict.fromkeys(low + span * i // streams for i in range(1, streams)) if p > low)


def stream_filters(
    column: sa.ColumnElement[Any], points: Sequence[int], *, nullable: bool, bound: Bound | None = None
) -> list[sa.ColumnElement[bool]]:
    """One filter per stream for the inner bounds ``points``: ``col < p0`` (or NULL), ``p0 <= col < p1``, ...,
    ``col >= p_last``. Disjoint, and together every row. Bounds are bound values (``bound``: how to render
    one, e.g. as a checked integer literal for a reader that cannot bind)."""
    make = bound or _bind
    filters: list[sa.ColumnElement[bool]] = []
    for i in range(len(points) + 1):
        parts: list[sa.ColumnElement[bool]] = []
        if i > 0:
            parts.append(column >= make("split_low", points[i - 1]))
        if i < len(points):
            parts.append(column < make("split_high", points[i]))
        where = sa.and_(*parts)
        filters.append(sa.or_(where, column.is_(None)) if i == 0 and nullable else where)
    return filters


def _bind(name: str, value: int) -> sa.ColumnElement[Any]:
    return sa.bindparam(name, value, type_=sa.BigInteger())


def _integer_literal(name: str, value: int) -> sa.ColumnElement[Any]:
    """For connectorx, which cannot bind: exactly an ``int`` (computed from the snapshot's min/max), as text."""
    if type(value) is not int:
        raise TypeError(f"{name}: a split bound must be an int, not {type(value).__name__}")
    return sa.literal_column(str(value), sa.BigInteger())


@dataclass
class Stream:
    """One key range: its batches (consumed in one thread) and what its conversions counted."""

    index: int
    batches: Iterator[pa.RecordBatch]
    stats: dict[str, ColumnStats] = field(default_factory=dict)  # row path: zero dates per column
    native_stats: dict[str, int] = field(default_factory=dict)  # connectorx: zero dates per column


@dataclass
class ParallelRead:
    """Open streams of one snapshot: ``count`` rows in it (the union the streams must write), ``reader``."""

    count: int
    streams: list[Stream]
    reader: str
    split_by: str

    def add_stats(self, snapshot: Snapshot) -> None:
        """Add every stream's counts (MySQL zero dates stored as NULL) to the snapshot's, once all are read."""
        for stream in self.streams:
            for name, stats in stream.stats.items():
                snapshot.stats[name].zero_dates += stats.zero_dates
            for name, zero in stream.native_stats.items():
                snapshot.stats[name].zero_dates += zero


@contextmanager
def open_streams(snapshot: Snapshot, wanted: int, batch_rows: int) -> Iterator[ParallelRead | None]:
    """Up to ``wanted`` streams of ``snapshot`` (a full table), or None: read it in one stream, as always.

    The streams' connections are closed on exit. A column type a native reader cannot read exactly makes
    every stream use the row path (nothing was read yet)."""
    table = snapshot.table
    kind = snapshot.connector.source.kind
    if wanted < 2 or table.mode != "full" or snapshot.window is not None or kind not in _COORDINATORS:
        yield None
        return
    column = _split_column(snapshot)
    with ExitStack() as stack:
        yield _COORDINATORS[kind](snapshot, column, wanted, batch_rows, stack)


# ------------------------------------------------------------------------------------------ coordinating
def _postgres(snapshot: Snapshot, column: str, wanted: int, batch_rows: int, stack: ExitStack) -> ParallelRead | None:
    connector, table = snapshot.connector, snapshot.table
    conn = snapshot.connection
    with connector.errors("cannot count rows on", table):
        count = int(conn.execute(snapshot.count_query).scalar_one())
        points = _split(snapshot, conn, column, wanted) if count >= table.parallel_min_rows else None
        if not points:
            return None  # one stream, in this snapshot (it counts again)
        sums = _sums(snapshot, conn)
        exported = str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
    if not SNAPSHOT_ID_RE.fullmatch(exported):
        raise SourceError(
            f"pg_export_snapshot() returned {exported!r:.40}, not a snapshot id", tenant=_tenant(snapshot)
        )
    imported = f"SET TRANSACTION SNAPSHOT '{exported}'"  # checked above: hex digits and dashes only
    streams, reader = _open_all(snapshot, column, points, batch_rows, stack, pg_import=imported)
    _record(snapshot, sums)
    snapshot.release_connection()  # every stream imported the snapshot: the exporting transaction may end
    return _opened(snapshot, count, streams, reader, column)


def _mysql(snapshot: Snapshot, column: str, wanted: int, batch_rows: int, stack: ExitStack) -> ParallelRead | None:
    """Only the split column's min and max (an index lookup on a key) and the streams' start run under the
    global read lock; the count and the sums run after it, in the coordinator's snapshot (the same)."""
    connector, table = snapshot.connector, snapshot.table
    conn = snapshot.connection
    with connector.errors("cannot count rows on", table):
        if table.parallel_min_rows and _estimate(snapshot, conn) < table.parallel_min_rows:
            return None
        if not _read_lock(snapshot, conn):
            snapshot.release_connection()  # its transaction ended with the attempt: the one stream reopens one
            return None
        try:
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            points = _split(snapshot, conn, column, wanted)
            if not points:
                return None  # one stream, in the coordinator's consistent snapshot
            streams, reader = _open_all(snapshot, column, points, batch_rows, stack)
        finally:
            _unlock(snapshot, conn)
        count = int(conn.execute(snapshot.count_query).scalar_one())
        _record(snapshot, _sums(snapshot, conn))
    snapshot.release_connection()
    return _opened(snapshot, count, streams, reader, column)


_COORDINATORS = {"postgresql": _postgres, "mysql": _mysql}


def _split(snapshot: Snapshot, conn: sa.Connection, column: str, wanted: int) -> tuple[int, ...]:
    """The streams' inner bounds from the split column's min and max in the coordinator's snapshot (none for an
    empty table or a single key value)."""
    key = snapshot.clause.c[column]
    low, high = conn.execute(sa.select(sa.func.min(key), sa.func.max(key)).select_from(snapshot.clause)).one()
    return () if low is None else split_points(int(low), int(high), wanted)


def _sums(snapshot: Snapshot, conn: sa.Connection) -> tuple[Any, ...] | None:
    return None if snapshot.sums_query is None else tuple(conn.execute(snapshot.sums_query).one())


def _record(snapshot: Snapshot, sums: tuple[Any, ...] | None) -> None:
    if sums is not None:
        snapshot.record_sums(sums)


def _opened(snapshot: Snapshot, count: int, streams: list[Stream], reader: str, column: str) -> ParallelRead:
    log.info(
        "tenant '%s' table '%s': %d rows in %d streams (%s) split on %r",
        _tenant(snapshot),
        snapshot.table.name,
        count,
        len(streams),
        reader,
        column,
    )
    return ParallelRead(count, streams, reader, column)


def _estimate(snapshot: Snapshot, conn: sa.Connection) -> int:
    """The catalog's row estimate (InnoDB samples it; only the decision to split rests on it)."""
    schema = snapshot.connector.source.schema if snapshot.table.source_schema is None else snapshot.table.source_schema
    rows: sa.ColumnClause[Any] = sa.column("TABLE_ROWS")
    in_schema: sa.ColumnClause[Any] = sa.column("TABLE_SCHEMA")
    named: sa.ColumnClause[Any] = sa.column("TABLE_NAME")
    sa.table("TABLES", rows, in_schema, named, schema="information_schema")
    query = sa.select(rows).where(
        in_schema == (sa.func.database() if schema is None else sa.bindparam("schema", schema)),
        named == sa.bindparam("name", snapshot.table.source_name),
    )
    found = conn.execute(query).scalar()
    return int(found or 0)


def _read_lock(snapshot: Snapshot, conn: sa.Connection) -> bool:
    """``FLUSH TABLES WITH READ LOCK``, waited for at most LOCK_WAIT_SECONDS; False when refused."""
    conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {int(LOCK_WAIT_SECONDS)}")
    try:
        conn.exec_driver_sql("FLUSH TABLES WITH READ LOCK")
    except sa.exc.DBAPIError as exc:
        code = getattr(exc.orig, "args", (None,))[0]
        if code not in _LOCK_REFUSED:
            raise
        log.warning(
            "tenant '%s' table '%s': parallel streams need FLUSH TABLES WITH READ LOCK (the RELOAD privilege, "
            "granted within %d s); refused (MySQL error %s): reading in one stream",
            _tenant(snapshot),
            snapshot.table.name,
            LOCK_WAIT_SECONDS,
            code,
        )
        return False
    return True


def _unlock(snapshot: Snapshot, conn: sa.Connection) -> None:
    """``UNLOCK TABLES``; if that fails, close the coordinator's connection, which releases the lock too (the
    extract then fails at its next statement and is rerun)."""
    try:
        conn.exec_driver_sql("UNLOCK TABLES")
    except sa.exc.DBAPIError as exc:
        log.warning("tenant '%s': UNLOCK TABLES failed (%s); closing the connection", _tenant(snapshot), exc.orig)
        snapshot.release_connection()


# ---------------------------------------------------------------------------------------------- streams
def _open_all(
    snapshot: Snapshot,
    column: str,
    points: tuple[int, ...],
    batch_rows: int,
    stack: ExitStack,
    *,
    pg_import: str | None = None,
) -> tuple[list[Stream], str]:
    """Every stream, opened into the coordinator's snapshot: native when the dialect's reader can read the
    table exactly, else (or with ``native: false``) the row path."""
    connector = snapshot.connector
    nullable = next(c.nullable for c in snapshot.source_columns if c.name == column)
    key = snapshot.clause.c[column]
    if isinstance(snapshot.reader, NativeBatchReader):  # the dialect's native reader, unless native: false
        native = stack.enter_context(ExitStack())
        inline = connector.source.kind == "mysql"  # connectorx cannot bind
        filters = stream_filters(key, points, nullable=nullable, bound=_integer_literal if inline else None)
        try:
            streams = [_native(snapshot, i, f, batch_rows, native, pg_import=pg_import) for i, f in enumerate(filters)]
            return streams, "adbc-postgresql" if pg_import else "connectorx-mysql"
        except NativeUnsupportedError as exc:
            native.close()
            log.info("table '%s': native streams unsupported (%s); row-path streams", snapshot.table.name, exc)
    filters = stream_filters(key, points, nullable=nullable)
    return [_rows(snapshot, i, f, batch_rows, stack, pg_import=pg_import) for i, f in enumerate(filters)], "sqlalchemy"


def _native(
    snapshot: Snapshot,
    index: int,
    where: sa.ColumnElement[bool],
    batch_rows: int,
    stack: ExitStack,
    *,
    pg_import: str | None,
) -> Stream:
    connector = snapshot.connector
    url = connector.native_url()
    query = typed_query(snapshot, snapshot.query.where(where))
    place = Where(url, _tenant(snapshot), snapshot.table.name)
    driver_rows = driver_batch_rows(snapshot.schema)
    stats: dict[str, int] = {}

    def open_once() -> Iterator[pa.RecordBatch]:
        if pg_import is not None:
            session = (pg_import, *connector.session_statements)
            opened = _native_pg.open_read(
                url, query, snapshot.schema, driver_rows, session=session, where=place, count=False
            )
        else:
            session = connector.session_statements
            opened = _native_mysql.open_read(
                url, query, snapshot.schema, driver_rows, stats=stats, session=session, where=place, count=False
            )
        _count, _sums, batches = stack.enter_context(opened)
        return batches

    what = f"tenant '{_tenant(snapshot)}' table '{snapshot.table.name}': stream {index}"
    batches = connector.retry(open_once, what)
    return Stream(index, _checked(snapshot, index, _rebatched(batches, batch_rows)), native_stats=stats)


def _rebatched(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for offset in range(0, batch.num_rows, batch_rows):
            yield batch.slice(offset, batch_rows)


def _rows(
    snapshot: Snapshot,
    index: int,
    where: sa.ColumnElement[bool],
    batch_rows: int,
    stack: ExitStack,
    *,
    pg_import: str | None,
) -> Stream:
    connector, table = snapshot.connector, snapshot.table
    conn = connector.open_read(table)  # retried while unreachable; its own snapshot transaction begun
    stack.callback(connector.close_read, conn)
    if pg_import is not None:
        with connector.errors("cannot open a read snapshot on", table):
            conn.exec_driver_sql(pg_import)  # before the transaction's first query
    stats = {p.name: ColumnStats() for p in snapshot.plans}
    batches = snapshot.rows_of(conn, snapshot.query.where(where), batch_rows, stats)
    return Stream(index, _checked(snapshot, index, _translated(snapshot, batches)), stats=stats)


def _translated(snapshot: Snapshot, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    with snapshot.connector.errors("cannot read rows from", snapshot.table):
        yield from batches


def _checked(snapshot: Snapshot, index: int, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Every batch has exactly the snapshot's schema; test hook: pause after the first (all streams open)."""
    first = True
    for batch in batches:
        if not batch.schema.equals(snapshot.schema):
            raise TypeMappingError(
                f"stream {index} produced {batch.schema}, expected {snapshot.schema}",
                tenant=_tenant(snapshot),
                table=snapshot.table.name,
            )
        yield batch
        if first:
            first = False
            pause_point(PAUSE_MID_READ)


# ----------------------------------------------------------------------------------------------- checks
def _split_column(snapshot: Snapshot) -> str:
    """The split column: in the source table and of an integer type (else :class:`ConfigError`)."""
    table = snapshot.table
    name = table.split_column or ""
    key = "split_by" if table.split_by else "primary_key"
    types = {c.name: c.type for c in snapshot.source_columns}
    reason = (
        "does not exist"
        if name not in types
        else None
        if isinstance(types[name], sa.Integer)
        else f"is {types[name]!r}, not an integer type"
    )
    if reason is None:
        return name
    raise ConfigError(
        [
            ConfigProblem(
                "tables.yaml",
                f"tables.{table.name}.{key}",
                f"tenant '{_tenant(snapshot)}', table '{table.name}': parallel streams split on column "
                f"{name!r}, which {reason} in {snapshot.source_table}",
            )
        ]
    )


def _tenant(snapshot: Snapshot) -> str:
    return snapshot.connector.tenant.id
