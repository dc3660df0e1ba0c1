"""One consistent read of one table: its Arrow schema, its row count and its rows as Arrow batches.

``ExtractTable`` only sees this interface::

    with connector.snapshot(table_config, window) as snap:
        snap.schema            # pyarrow.Schema, from the source catalog (never inferred)
        snap.count()           # rows in the window, counted in the same snapshot
        for batch in snap.batches(batch_rows):   # pyarrow.RecordBatch with exactly snap.schema
            ...

The rows are produced by a :class:`BatchReader`. :class:`RowBatchReader` is the portable SQLAlchemy path:
a server-side cursor, ``fetchmany(batch_rows)``, then one column-wise conversion per column
(:attr:`ColumnPlan.convert`). A native reader (PostgreSQL COPY binary, ADBC, connectorx) plugs in through
:meth:`Connector.make_reader`; it can run :attr:`Snapshot.query` (compiled for :attr:`Snapshot.dialect`) on
:attr:`Snapshot.connection`, which is inside the snapshot transaction, and must yield batches whose schema
equals :attr:`Snapshot.schema` — checked here, so a reader cannot silently change a type.
"""

from __future__ import annotations

__all__ = ["BatchReader", "ReaderUnsupported", "RowBatchReader", "Snapshot"]

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import sqlalchemy as sa

from mozart_luigi.config import TableConfig
from mozart_luigi.errors import SourceError, TypeMappingError
from mozart_luigi.types import ColumnPlan, ColumnStats

if TYPE_CHECKING:
    from mozart_luigi.connectors.base import Connector, SourceColumn, Window

log = logging.getLogger(__name__)
_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    ValueError,
    TypeError,
    OverflowError,
    ArithmeticError,
)


class ReaderUnsupported(Exception):  # noqa: N818 - a signal, not a failure
    """Raised by a reader's :meth:`BatchReader.count` when it cannot produce this snapshot exactly.

    :class:`Snapshot` then falls back to :class:`RowBatchReader` (before any row was read).
    """


class BatchReader(Protocol):
    """Counts and streams a snapshot's rows as Arrow batches of at most ``batch_rows`` rows.

    ``count`` is called once, before ``read``; a reader with its own connection opens its own snapshot in
    ``count`` and must read the same snapshot in ``read``. ``close`` is always called (also after errors).
    A reader that turns values into NULL by policy (MySQL zero dates) adds them to
    ``snapshot.stats[column].zero_dates``.
    """

    name: str

    def count(self, snapshot: Snapshot) -> int: ...

    def read(self, snapshot: Snapshot, batch_rows: int) -> Iterator[pa.RecordBatch]: ...

    def close(self) -> None: ...


class RowBatchReader:
    """The SQLAlchemy path: server-side cursor (``yield_per``), ``fetchmany``, column-wise conversion."""

    name = "sqlalchemy"

    def count(self, snapshot: Snapshot) -> int:
        return int(snapshot.connection.execute(snapshot.count_query).scalar_one())

    def read(self, snapshot: Snapshot, batch_rows: int) -> Iterator[pa.RecordBatch]:
        conn = snapshot.connection.execution_options(yield_per=batch_rows)
        result = conn.execute(snapshot.query)
        try:
            while rows := _fetch_raw(result, batch_rows):
                yield snapshot.to_batch(rows)
        finally:
            result.close()

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
    return strategy.fetchmany(result, result.cursor, size)  # soft-closes the result when exhausted


class Snapshot:
    """A table (or its window) inside one read transaction; built by :meth:`Connector.snapshot`."""

    def __init__(
        self,
        connector: Connector,
        connection: sa.Connection,
        table: TableConfig,
        window: Window | None,
        columns: Sequence[SourceColumn],
    ) -> None:
        self.connector = connector
        self.connection = connection
        self.table = table
        self.window = window
        self.source_columns = tuple(columns)
        self.plans = tuple(connector.plan(c, table) for c in self._selected(columns))
        self.schema = pa.schema([p.field for p in self.plans])
        self.stats = {p.name: ColumnStats() for p in self.plans}
        clause = connector.table_clause(table, columns)
        where = self._where(clause, columns)
        self.query = (
            sa.select(*(p.select_expression(clause.c[p.name]) for p in self.plans))
            .select_from(clause)
            .where(*where)
        )
        self.count_query = sa.select(sa.func.count()).select_from(clause).where(*where)
        self.reader: BatchReader = connector.make_reader(self)
        self.rows_read = 0

    @property
    def dialect(self) -> sa.Dialect:
        return self.connection.dialect

    @property
    def source_table(self) -> str:
        return self.connector.qualified_name(self.table)

    # ------------------------------------------------------------------------------------ reading
    def count(self) -> int:
        """Rows in the window, in this snapshot."""
        with self.connector.errors("cannot count rows on", self.table):
            try:
                return self.reader.count(self)
            except ReaderUnsupported as exc:
                log.info("tenant '%s' table '%s': reader %r unsupported (%s); using the SQLAlchemy path",
                         self._tenant, self.table.name, self.reader.name, exc)  # fmt: skip
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
                self.rows_read += batch.num_rows
                yield batch

    def to_batch(self, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
        """Driver rows -> one RecordBatch: transpose once, then convert column by column."""
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.plans]
        arrays = [self._convert(plan, values) for plan, values in zip(self.plans, columns, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _convert(self, plan: ColumnPlan, values: Sequence[Any]) -> pa.Array:
        try:
            return plan.convert(values, self.stats[plan.name])
        except _CONVERSION_ERRORS as exc:
            raise TypeMappingError(
                f"column {plan.name!r} ({plan.source_type} -> {plan.arrow_type}): a value cannot be stored "
                f"exactly: {exc} (see docs/types.md)",
                tenant=self._tenant,
                table=self.table.name,
            ) from exc

    def close(self) -> None:
        self.reader.close()

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
        return selected

    def _where(self, clause: sa.TableClause, columns: Sequence[SourceColumn]) -> list[sa.ColumnElement[bool]]:
        if self.window is None or self.table.mode != "incremental":
            return []
        by_name = {c.name: c for c in columns}
        cursor = self.table.cursor or ""
        if cursor not in by_name:
            raise self._error(
                f"cursor column {cursor!r} not found in {self.source_table} (columns: {list(by_name)})"
            )
        plan = self.connector.plan(by_name[cursor], self.table)
        try:
            return self.connector.window_filter(clause.c[cursor], plan, self.window)
        except ValueError as exc:
            raise self._error(str(exc)) from None
