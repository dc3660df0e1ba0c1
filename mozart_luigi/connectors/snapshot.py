"""One consistent read of one table: its Arrow schema, its row count and its rows as Arrow batches.

``ExtractTable`` only sees this interface::

    with connector.snapshot(table_config, window) as snap:
        snap.schema            # pyarrow.Schema, from the source catalog (never inferred)
        snap.count()           # rows in the window, counted in the same snapshot as the rows are read
        for batch in snap.batches(batch_rows):   # pyarrow.RecordBatch with exactly snap.schema
            ...

The rows are produced by a :class:`BatchReader`, the one the dialect chose (``Connector.make_reader``):
:class:`RowBatchReader` is the portable SQLAlchemy path — a server-side cursor on :attr:`Snapshot.connection`,
inside the snapshot transaction, ``fetchmany(batch_rows)``, then one column-wise conversion per column
(:attr:`ColumnPlan.convert`); a native reader (``connectors/native.py``) reads in a connection and
transaction of its own. Every batch must have exactly :attr:`Snapshot.schema` — checked here, so a reader
cannot silently change a type.

**One connection per extract.** The snapshot's SQLAlchemy connection reflects the table. A reader that reads
in its own connection calls :meth:`Snapshot.release_connection` before opening it, so an extract never holds
two; if that reader then raises :class:`NativeUnsupportedError` (before any row was read), the row path
reopens a snapshot connection and counts and reads there.

Test hook: ``MOZART_TEST_PAUSE_AT=source_mid_read`` pauses :meth:`Snapshot.batches` after the first batch
(:func:`mozart_luigi.parquet.pause_point`), with the source connection open mid-stream.
"""

from __future__ import annotations

__all__ = [
    "PAUSE_MID_READ",
    "BatchReader",
    "RowBatchReader",
    "Snapshot",
    "SnapshotConnector",
    "SourceColumn",
    "Window",
]

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import pyarrow as pa
import sqlalchemy as sa

from mozart_luigi import checksums
from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors._native_common import NativeUnsupportedError
from mozart_luigi.errors import ConfigError, ConfigProblem, SourceError, TypeMappingError
from mozart_luigi.overrides import setting
from mozart_luigi.parquet import pause_point
from mozart_luigi.types import ColumnPlan, ColumnStats, inexact_hint

log = logging.getLogger(__name__)
T = TypeVar("T")
PAUSE_MID_READ = "source_mid_read"
_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    ValueError,
    TypeError,
    OverflowError,
    ArithmeticError,
)


@dataclass(frozen=True)
class Window:
    """The half-open ``[start, end)`` of an incremental extract, as naive UTC wall-clock datetimes.

    Computed from the run date (:meth:`for_date`), never taken from configuration: anything but a naive
    ``datetime.datetime`` (a string, an aware or a subclassed datetime) is refused with ``TypeError``.
    """

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if type(value) is not dt.datetime or value.tzinfo is not None:
                raise TypeError(f"Window.{name} must be a naive UTC datetime.datetime, not {value!r}")

    @classmethod
    def for_date(cls, date: dt.date) -> Window:
        start = dt.datetime.combine(date, dt.time())
        return cls(start, start + dt.timedelta(days=1))


@dataclass(frozen=True)
class SourceColumn:
    """A column as the source catalog describes it (``name`` is its true name, never an escaped form)."""

    name: str
    type: sa.types.TypeEngine[Any]
    nullable: bool = True
    detail: str | None = None  # dialect refinement SQLAlchemy reflection drops (e.g. Oracle TIMESTAMP(9))


class SnapshotConnector(Protocol):
    """What a snapshot and its readers use of their :class:`~mozart_luigi.connectors.base.Connector`."""

    tenant: TenantConfig
    source: SourceConfig
    #: session settings (time zone, ...) a reader with its own connection runs once, first
    session_statements: ClassVar[tuple[str, ...]]

    def plan(self, column: SourceColumn, table: TableConfig) -> ColumnPlan: ...

    def table_clause(self, table: TableConfig, columns: Sequence[SourceColumn]) -> sa.TableClause: ...

    def window_filter(
        self, column: sa.ColumnClause[Any], cursor: ColumnPlan, window: Window
    ) -> list[sa.ColumnElement[bool]]: ...

    def qualified_name(self, table: TableConfig) -> str: ...

    def make_reader(self, snapshot: Snapshot) -> BatchReader: ...

    def errors(self, action: str, table: TableConfig | None = None) -> AbstractContextManager[None]: ...

    def open_read(self, table: TableConfig) -> sa.Connection: ...

    def close_read(self, conn: sa.Connection) -> None: ...

    def native_url(self) -> sa.URL: ...

    def retry(self, operation: Callable[[], T], what: str) -> T: ...


class BatchReader(Protocol):
    """Counts and streams a snapshot's rows as Arrow batches of at most ``batch_rows`` rows.

    ``count`` is called once, before ``read``; a reader with its own connection releases the snapshot's
    (:meth:`Snapshot.release_connection`), opens its own snapshot in ``count`` and reads the same snapshot in
    ``read``; it raises :class:`NativeUnsupportedError` from ``count`` (before any row is read) for what it
    cannot read exactly. ``close`` is always called (also after errors). A reader that turns values into
    NULL by policy (MySQL zero dates) adds them to ``snapshot.stats[column].zero_dates``.
    """

    name: str

    def count(self, snapshot: Snapshot) -> int: ...

    def read(self, snapshot: Snapshot, batch_rows: int) -> Iterator[pa.RecordBatch]: ...

    def close(self) -> None: ...


class RowBatchReader:
    """The SQLAlchemy path: server-side cursor (``yield_per``), ``fetchmany``, column-wise conversion."""

    name = "sqlalchemy"

    def count(self, snapshot: Snapshot) -> int:
        count = int(snapshot.connection.execute(snapshot.count_query).scalar_one())
        if snapshot.sums_query is not None:  # the table's checksums, in the same transaction as the count
            snapshot.record_sums(snapshot.connection.execute(snapshot.sums_query).one())
        return count

    def read(self, snapshot: Snapshot, batch_rows: int) -> Iterator[pa.RecordBatch]:
        return snapshot.rows_of(snapshot.connection, snapshot.query, batch_rows)

    def close(self) -> None:
        return None


def _fetch_raw(result: sa.CursorResult[Any], size: int) -> Sequence[Sequence[Any]]:
    """Up to ``size`` driver tuples, skipping SQLAlchemy's per-row ``Row`` objects (~15% of client CPU).

    The select's columns are untyped (and its casts to text/numeric have no result processor), so a Row
    would only wrap the tuple. The result's cursor strategy keeps SQLAlchemy's buffering and error
    translation; if a future SQLAlchemy changes it, the public ``fetchmany`` gives the same values.
    """
    strategy = getattr(result, "cursor_strategy", None)
    if strategy is None or not hasattr(strategy, "fetchmany"):  # pragma: no cover - other SQLAlchemy versions
        return result.fetchmany(size)
    rows: Sequence[Sequence[Any]] = strategy.fetchmany(result, result.cursor, size)  # soft-closes when exhausted
    return rows


class Snapshot:
    """A table (or its window) inside one read transaction; built by :meth:`Connector.snapshot`.

    It owns ``connection`` (the snapshot transaction it was reflected in, or None) and closes it in
    :meth:`close`.
    """

    def __init__(
        self,
        connector: SnapshotConnector,
        connection: sa.Connection | None,
        table: TableConfig,
        window: Window | None,
        columns: Sequence[SourceColumn],
    ) -> None:
        self.connector = connector
        self._connection = connection
        self.table = table
        self.window = window
        self.source_columns = tuple(columns)
        self.plans = tuple(connector.plan(c, table) for c in self._selected(columns))
        self.schema = pa.schema([p.field for p in self.plans])
        self.stats = {p.name: ColumnStats() for p in self.plans}
        clause = connector.table_clause(table, columns)
        self.clause = clause  # the queries' table: a filter added to them names its columns (parallel streams)
        where = self._where(clause, columns)
        self.query = (
            sa.select(*(p.select_expression(clause.c[p.name]) for p in self.plans)).select_from(clause).where(*where)
        )
        self.count_query = sa.select(sa.func.count()).select_from(clause).where(*where)
        #: ``CAST(sum(col) AS text)`` per ``checksum`` column; the reader runs them in the count's snapshot
        self.sum_columns = checksums.source_sums([clause.c[name] for name in self._checksum_columns()])
        self.sums_query = sa.select(*self.sum_columns).select_from(clause).where(*where) if self.sum_columns else None
        self.sums: dict[str, str | None] = {}
        self.reader: BatchReader = connector.make_reader(self)
        self.rows_read = 0

    @property
    def source_table(self) -> str:
        return self.connector.qualified_name(self.table)

    # ---------------------------------------------------------------------------------- connection
    @property
    def connection(self) -> sa.Connection:
        """The SQLAlchemy connection inside the snapshot transaction; reopened (a new snapshot) if released."""
        if self._connection is None:
            self._connection = self.connector.open_read(self.table)
        return self._connection

    def release_connection(self) -> None:
        """Close the SQLAlchemy connection now: a reader about to read in a connection of its own calls this,
        so the extract holds one connection at a time."""
        conn, self._connection = self._connection, None
        if conn is not None:
            self.connector.close_read(conn)

    # ------------------------------------------------------------------------------------ reading
    def record_sums(self, values: Sequence[Any]) -> None:
        """Keep the ``checksum`` columns' sums, as a reader read them in the count's snapshot."""
        names = self.table.checksum
        if len(values) != len(names):
            raise self._error(f"{len(values)} checksum value(s) read for {len(names)} column(s) {list(names)}")
        try:
            self.sums = {name: checksums.source_text(value) for name, value in zip(names, values, strict=True)}
        except (TypeError, ValueError) as exc:
            raise self._error(f"{checksums.setting(self.table.name)}: {exc}") from None

    def count(self) -> int:
        """Rows in the window, in the snapshot the rows are then read from."""
        with self.connector.errors("cannot count rows on", self.table):
            try:
                return self.reader.count(self)
            except NativeUnsupportedError as exc:
                log.info(
                    "tenant '%s' table '%s': reader %r unsupported (%s); using the SQLAlchemy path",
                    self._tenant,
                    self.table.name,
                    self.reader.name,
                    exc,
                )
                self.reader.close()
                self.reader = RowBatchReader()
                return self.reader.count(self)

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Every row of the window, as batches with exactly :attr:`schema`."""
        with self.connector.errors("cannot read rows from", self.table):
            for batch in self.reader.read(self, batch_rows):
                if not batch.schema.equals(self.schema):
                    raise TypeMappingError(
                        f"reader {self.reader.name!r} produced {batch.schema}, expected {self.schema}",
                        tenant=self._tenant,
                        table=self.table.name,
                    )
                first = self.rows_read == 0
                self.rows_read += batch.num_rows
                yield batch
                if first:
                    pause_point(PAUSE_MID_READ)  # tests only: the source connection is open mid-stream

    def rows_of(
        self,
        conn: sa.Connection,
        query: sa.Select[Any],
        batch_rows: int,
        stats: dict[str, ColumnStats] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """The SQLAlchemy row path: ``query`` on ``conn`` through a server-side cursor, as batches (``stats``:
        where the conversions count, default :attr:`stats`; a parallel stream passes its own)."""
        result = conn.execution_options(yield_per=batch_rows).execute(query)
        try:
            while rows := _fetch_raw(result, batch_rows):
                yield self.to_batch(rows, stats)
        finally:
            result.close()

    def to_batch(self, rows: Sequence[Sequence[Any]], stats: dict[str, ColumnStats] | None = None) -> pa.RecordBatch:
        """Driver rows -> one RecordBatch: transpose once, then convert column by column."""
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.plans]
        counted = self.stats if stats is None else stats
        arrays = [self._convert(plan, values, counted) for plan, values in zip(self.plans, columns, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _convert(self, plan: ColumnPlan, values: Sequence[Any], stats: dict[str, ColumnStats]) -> pa.Array:
        try:
            return plan.convert(values, stats[plan.name])
        except _CONVERSION_ERRORS as exc:
            advice = inexact_hint(
                self.table.name, plan.name, plan.arrow_type, values, durations=self.connector.source.kind == "mysql"
            )
            raise TypeMappingError(
                f"column {plan.name!r} ({plan.source_type} -> {plan.arrow_type}): a value cannot be stored "
                f"exactly: {exc}{'; ' + advice if advice else ''} (see docs/types.md)",
                tenant=self._tenant,
                table=self.table.name,
            ) from exc

    def close(self) -> None:
        """Close the reader and the snapshot connection, whichever are open."""
        try:
            self.reader.close()
        finally:
            self.release_connection()

    # ------------------------------------------------------------------------------------ reporting
    @property
    def zero_dates_nulled(self) -> int:
        """Values stored as NULL by the zero-date policy (MySQL ``0000-00-00``)."""
        return sum(s.zero_dates for s in self.stats.values())

    def details(self) -> dict[str, Any]:
        """What the manifest's ``details`` records: reader, per-column policies, zero dates per column."""
        out: dict[str, Any] = {"reader": self.reader.name}
        policies = {p.name: f"{p.source_type}: {p.note}" for p in self.plans if p.note}
        if policies:
            out["policies"] = policies
        overrides = {p.name: p.override for p in self.plans if p.override}
        if overrides:
            out["overrides"] = overrides  # the tables.yaml type overrides applied, by column
        zero = {name: s.zero_dates for name, s in self.stats.items() if s.zero_dates}
        if zero:
            out["zero_dates_nulled_by_column"] = zero
        return out

    # ------------------------------------------------------------------------------------ building
    @property
    def _tenant(self) -> str:
        return self.connector.tenant.id

    def _error(self, message: str) -> SourceError:
        return SourceError(
            f"{message} on {self.connector.source.describe()}", tenant=self._tenant, table=self.table.name
        )

    def _selected(self, columns: Sequence[SourceColumn]) -> list[SourceColumn]:
        names = [c.name for c in columns]
        wanted = self.table.include or self.table.exclude
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise self._error(
                f"include/exclude name unknown column(s) {unknown} of {self.source_table} (columns: {names})"
            )
        if self.table.include:
            by_name = {c.name: c for c in columns}
            selected = [by_name[n] for n in self.table.include]
        else:
            selected = [c for c in columns if c.name not in self.table.exclude]
        if not selected:
            raise self._error("no column left to extract after include/exclude")
        chosen = {c.name for c in selected}
        for name, _override in self.table.columns:
            if name not in chosen:
                where = "is not extracted (include/exclude)" if name in names else "does not exist"
                raise self._error(
                    f"{setting(self.table.name, name)}: column {name!r} {where} in "
                    f"{self.source_table} (columns: {names})"
                )
        return selected

    def _checksum_columns(self) -> tuple[str, ...]:
        """The ``checksum`` columns, each extracted and of a type whose sum is exact (else ``ConfigError``)."""
        plans = {p.name: p for p in self.plans}
        types = {c.name: c.type for c in self.source_columns}
        for name in self.table.checksum:
            plan = plans.get(name)
            reason = (
                ("is not extracted (include/exclude)" if name in types else "does not exist")
                if plan is None
                else checksums.refusal(plan.arrow_type, types[name], sqlite=self.connector.source.kind == "sqlite")
            )
            if reason:
                what = f"column {name!r}" if plan is None else f"column {name!r} ({plan.source_type})"
                raise ConfigError(
                    [
                        ConfigProblem(
                            "tables.yaml",
                            checksums.setting(self.table.name),
                            f"tenant '{self._tenant}', table '{self.table.name}': {what} {reason} "
                            f"in {self.source_table}; only integer and exact decimal columns can be checksummed",
                        )
                    ]
                )
        return self.table.checksum

    def _where(self, clause: sa.TableClause, columns: Sequence[SourceColumn]) -> list[sa.ColumnElement[bool]]:
        if self.window is None or self.table.mode != "incremental":
            return []
        by_name = {c.name: c for c in columns}
        cursor = self.table.cursor or ""
        if cursor not in by_name:
            raise self._error(f"cursor column {cursor!r} not found in {self.source_table} (columns: {list(by_name)})")
        plan = self.connector.plan(by_name[cursor], self.table)
        try:
            return self.connector.window_filter(clause.c[cursor], plan, self.window)
        except ValueError as exc:
            raise self._error(str(exc)) from None
