"""Native Arrow readers: the fast, exact path from PostgreSQL and MySQL/MariaDB to typed RecordBatches.

SQLAlchemy stays in charge of reflection, dialects, the query (a ``Select`` with bound values) and the
target Arrow schema; these readers only move the rows, without creating a Python object per value:

* **PostgreSQL — ADBC** (``adbc-driver-postgresql``): the driver runs ``COPY (query) TO STDOUT (FORMAT
  binary)`` and decodes the binary tuples into Arrow in C. ``numeric`` arrives as its exact decimal text
  (cast to ``decimal128`` with Arrow's safe cast: a value that does not fit fails, it is never rounded),
  ``timestamptz`` as UTC microseconds, ``uuid``/``json`` as Arrow extension types.
* **MySQL/MariaDB — connectorx** (Rust, binary protocol, ``return_type="arrow_stream"``): ``DECIMAL``
  wider than ``(28, 10)`` and ``TIME`` re-selected as the server's exact text and parsed by Arrow
  (connectorx would round such decimals and panics on negative times), zero dates turned into NULL in the
  SQL and counted by the same statement, ``TIMESTAMP`` read in a ``+00:00`` session (the UTC instant).

Both count the rows in the snapshot they read (PostgreSQL: one ``REPEATABLE READ READ ONLY`` transaction;
MySQL: the count rides in the same single statement, and one InnoDB statement reads one read view) and
stream batches of at most ``batch_rows`` rows (memory flat in table size). Values: on PostgreSQL each one
stays bound, to ``set_config('mozart.pN', $1, true)``, and is read back by an InitPlan ``(SELECT
CAST(current_setting('mozart.pN') AS <type>))`` (``COPY`` takes no parameters). connectorx cannot bind at
all, so on MySQL the only values a query may carry are an incremental window's bounds — a ``date`` or a
naive ``datetime`` computed from the run date, their Python type checked exactly, then rendered by the
dialect's literal renderer; any other value is :class:`NativeUnsupportedError` (the row path binds it).

The readers are a registry (:data:`READERS`); each dialect names its own (``Connector.native_reader``). A
reader opens its connection only after the snapshot's SQLAlchemy connection is closed — one connection
per extract — and retries a transient connect failure with the connector's bounded backoff.

A column the reader cannot produce *exactly* in the target type raises :class:`NativeUnsupportedError`
when the stream opens, before any batch is yielded: the caller falls back to the SQLAlchemy path.
"""

from __future__ import annotations

__all__ = [
    "READERS",
    "NativeBatchReader",
    "NativeRead",
    "NativeUnsupportedError",
    "Opener",
    "driver_batch_rows",
    "mysql_batches",
    "native_batches",
    "postgres_batches",
    "typed_query",
]

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import replacement_traverse

from mozart_luigi.connectors import _native_mysql, _native_pg
from mozart_luigi.connectors._native_common import NativeUnsupportedError, Where, rebatch
from mozart_luigi.connectors.snapshot import Snapshot

_DRIVER_BATCH_BYTES = 16 << 20  # the readers' own batches (then re-sliced to the caller's batch_rows)
_DRIVER_BATCH_ROWS = (50_000, 250_000)


@dataclass
class NativeRead:
    """An open native read: the window's row ``count`` (same snapshot) and the ``batches`` to consume.

    ``stats`` maps a column name to its MySQL zero dates stored as NULL; complete once the batches are.
    """

    count: int
    batches: Iterator[pa.RecordBatch]
    reader: str
    stats: dict[str, int] = field(default_factory=dict)
    sums: tuple[Any, ...] = ()  # the ``sums`` expressions' values, read with the count

    @property
    def zero_dates_nulled(self) -> int:
        return sum(self.stats.values())


@contextmanager
def postgres_batches(
    url: sa.URL,
    query: sa.Select[Any],
    schema: pa.Schema,
    *,
    batch_rows: int = 50_000,
    session: Sequence[str] | None = None,
    tenant: str | None = None,
    table: str | None = None,
    sums: Sequence[sa.ColumnElement[Any]] = (),
) -> Iterator[NativeRead]:
    """Read ``query`` from PostgreSQL through ADBC as batches of ``schema``.

    ``session``: statements run right after ``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`` (time zone,
    ``intervalstyle``: they decide how the server renders casts to text); None: ``SET LOCAL TIME ZONE 'UTC'``.
    The connection, its transaction and the COPY stream are closed on exit, whether the batches were
    consumed or not.
    """
    where = Where(url, tenant, table)
    statements = _native_pg.DEFAULT_SESSION if session is None else session
    with _native_pg.open_read(url, query, schema, batch_rows, session=statements, where=where, sums=sums) as (
        n,
        summed,
        batches,
    ):
        yield NativeRead(count=n, batches=batches, reader="adbc-postgresql", sums=summed)


@contextmanager
def mysql_batches(
    url: sa.URL,
    query: sa.Select[Any],
    schema: pa.Schema,
    *,
    batch_rows: int = 50_000,
    session: Sequence[str] | None = None,
    tenant: str | None = None,
    table: str | None = None,
    sums: Sequence[sa.ColumnElement[Any]] = (),
) -> Iterator[NativeRead]:
    """Read ``query`` from MySQL/MariaDB through connectorx, as batches of ``schema``.

    Its bound values must be date/datetime window bounds (rendered as literals; anything else is
    :class:`NativeUnsupportedError`). ``session``: statements run once, first, on connectorx's connection;
    None: UTC time zone and a long ``net_write_timeout``.
    """
    stats: dict[str, int] = {}
    where = Where(url, tenant, table)
    statements = _native_mysql.DEFAULT_SESSION if session is None else session
    opened = _native_mysql.open_read(
        url, query, schema, batch_rows, stats=stats, session=statements, where=where, sums=sums
    )
    with opened as (n, summed, batches):
        yield NativeRead(count=n, batches=batches, reader="connectorx-mysql", stats=stats, sums=summed)


Opener = Callable[..., AbstractContextManager[NativeRead]]
#: The native readers by name. A dialect names its own in ``Connector.native_reader`` (as dlt names a
#: backend); ``native: false`` in a tenant's source, or no name, keeps the SQLAlchemy row path.
READERS: dict[str, Opener] = {"adbc-postgresql": postgres_batches, "connectorx-mysql": mysql_batches}
_BY_BACKEND = {"postgresql": "adbc-postgresql", "mysql": "connectorx-mysql", "mariadb": "connectorx-mysql"}


def native_batches(
    url: sa.URL,
    query: sa.Select[Any],
    schema: pa.Schema,
    *,
    batch_rows: int = 50_000,
    session: Sequence[str] | None = None,
    tenant: str | None = None,
    table: str | None = None,
    sums: Sequence[sa.ColumnElement[Any]] = (),
) -> AbstractContextManager[NativeRead]:
    """The native reader for ``url``'s backend; :class:`NativeUnsupportedError` for any other backend."""
    name = _BY_BACKEND.get(url.get_backend_name())
    if name is None:
        raise NativeUnsupportedError(f"no native reader for {url.get_backend_name()!r}", tenant=tenant, table=table)
    extra: dict[str, Any] = {"sums": sums} if sums else {}
    return READERS[name](
        url, query, schema, batch_rows=batch_rows, session=session, tenant=tenant, table=table, **extra
    )


class NativeBatchReader:
    """A native reader as the :class:`~mozart_luigi.connectors.snapshot.BatchReader` of a snapshot.

    ``Connector.make_reader`` builds it with the opener its dialect names. ``count`` releases the snapshot's
    SQLAlchemy connection (one connection per extract), then opens the native read — its own connection and
    snapshot, shared by the count and the rows — retrying a transient failure with the connector's bounded
    backoff (a terminal one, such as a refused password, fails at once). It raises
    :class:`NativeUnsupportedError` (nothing read yet) for what it cannot read exactly; the snapshot then
    uses the SQLAlchemy path.
    """

    def __init__(self, open_batches: Opener = native_batches) -> None:
        self.name = "native"
        self._open = open_batches
        self._stack = ExitStack()
        self._read: NativeRead | None = None

    def count(self, snapshot: Snapshot) -> int:
        connector, tenant, table = snapshot.connector, snapshot.connector.tenant.id, snapshot.table.name
        query, batch_rows = typed_query(snapshot), driver_batch_rows(snapshot.schema)
        snapshot.release_connection()

        # a table's checksums ride with the count (same snapshot); only then, so other openers need not know
        sums: dict[str, Any] = {"sums": snapshot.sum_columns} if snapshot.sum_columns else {}

        def open_once() -> NativeRead:
            opened = self._open(
                connector.native_url(),
                query,
                snapshot.schema,
                batch_rows=batch_rows,
                session=connector.session_statements,
                tenant=tenant,
                table=table,
                **sums,
            )
            return self._stack.enter_context(opened)

        what = f"tenant '{tenant}' table '{table}': native read from {connector.source.describe()}"
        self._read = connector.retry(open_once, what)
        self.name = self._read.reader
        if sums:
            snapshot.record_sums(self._read.sums)
        return self._read.count

    def read(self, snapshot: Snapshot, batch_rows: int) -> Iterator[pa.RecordBatch]:
        if self._read is None:
            raise RuntimeError("NativeBatchReader.read() before count()")
        yield from rebatch(self._read.batches, batch_rows)
        for column, zero in self._read.stats.items():  # complete now that every batch was read
            snapshot.stats[column].zero_dates += zero

    def close(self) -> None:
        self._stack.close()


def driver_batch_rows(schema: pa.Schema) -> int:
    """Rows per driver batch for about 16 MiB (fewer, larger batches cost less per row); 50k..250k rows."""
    row_bytes = sum(_value_bytes(f.type) for f in schema) or 1
    low, high = _DRIVER_BATCH_ROWS
    return max(low, min(high, _DRIVER_BATCH_BYTES // row_bytes))


def _value_bytes(arrow_type: pa.DataType) -> int:
    try:
        return max(1, cast(int, arrow_type.bit_width) // 8)  # pyarrow is untyped
    except ValueError:  # variable width: strings, bytes, lists
        return 64


def typed_query(snapshot: Snapshot, query: sa.Select[Any] | None = None) -> sa.Select[Any]:
    """``snapshot.query`` (or ``query``, a filtered form of it) with the reflected type on each table column
    (the readers choose casts by type)."""
    types = {c.name: c.type for c in snapshot.source_columns}

    def typed(element: object, **_kw: Any) -> sa.ColumnClause[Any] | None:
        if (
            isinstance(element, sa.ColumnClause)
            and element.table is not None
            and element.name in types
            and isinstance(element.type, NullType)
        ):
            return sa.column(element.name, types[element.name], _selectable=element.table)
        return None

    selected = snapshot.query if query is None else query
    return cast(sa.Select[Any], replacement_traverse(selected, {}, typed))  # typed as ExternallyTraversible
