"""The connector: one base class, each dialect overrides only what differs.

A :class:`Connector` turns a tenant's :class:`~mozart_luigi.config.SourceConfig` into a SQLAlchemy engine
(the only place a password is revealed), opens one consistent read snapshot per extract, reflects the table
from the source catalog and maps every column to Arrow (:class:`~mozart_luigi.types.ColumnPlan`). The rows
themselves are read by a :class:`~mozart_luigi.connectors.snapshot.BatchReader` — the SQLAlchemy row path by
default; a dialect names its native Arrow reader in :attr:`Connector.native_reader` (a key of
:data:`~mozart_luigi.connectors.native.READERS`), used unless the tenant's source says ``native: false``.
Either way an extract holds one source connection at a time (see ``connectors/snapshot.py``).

Failure semantics: driver exceptions are translated here, at one boundary, with ``raise ... from`` (a
native reader translates its own driver's, in its module): unreachable database ->
:class:`SourceUnavailableError` (retried with backoff inside :meth:`connect`, and inside a native reader's
open through :meth:`retry`, then raised); wrong password, missing database/table/column ->
:class:`SourceError` at once. Messages name the tenant, the host (``SourceConfig.describe()``) and the
table, and pass through :func:`redact`.
"""

from __future__ import annotations

__all__ = ["Connector", "SourceColumn", "Window"]

import contextlib
import dataclasses
import logging
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from mozart_luigi.config import TableConfig, TenantConfig
from mozart_luigi.connectors.native import READERS, NativeBatchReader
from mozart_luigi.connectors.snapshot import BatchReader, RowBatchReader, Snapshot, SourceColumn, Window
from mozart_luigi.errors import SourceError, SourceUnavailableError, TypeMappingError
from mozart_luigi.overrides import TypeOverride, setting
from mozart_luigi.retry import retrying
from mozart_luigi.secrets import Secret, redact
from mozart_luigi.types import ColumnPlan, Converter, UnsupportedType, decimal_override, decimal_text, plain

log = logging.getLogger(__name__)
T = TypeVar("T")


class Connector(ABC):
    """Reach one tenant database; subclasses supply the dialect deltas (URL, session, mapping, errors)."""

    kind: ClassVar[str]
    driver: ClassVar[str]
    #: SQL run first on the snapshot connection, in order (isolation, read only, session time zone).
    snapshot_statements: ClassVar[tuple[str, ...]] = ()
    #: the session settings among them (time zone, ...): a native reader runs these once on its connection
    session_statements: ClassVar[tuple[str, ...]] = ()
    #: this dialect's native Arrow reader, a key of ``native.READERS`` (used unless ``native: false``)
    native_reader: ClassVar[str | None] = None

    def __init__(
        self,
        tenant: TenantConfig,
        *,
        attempts: int = 4,
        base_delay: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tenant = tenant
        self.source = tenant.source
        self._attempts = attempts
        self._base_delay = base_delay
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.tenant.id!r}, {self.source.describe()!r})"

    # ------------------------------------------------------------------------------------- engine
    def url(self) -> URL:
        """The SQLAlchemy URL (holds the password: never log it; ``repr`` of a URL hides it)."""
        s = self.source
        if s.url is not None:
            url = make_url(s.url.reveal())
            return url if "+" in url.drivername else url.set(drivername=self.driver)
        return URL.create(
            self.driver,
            username=s.user,
            password=s.password.reveal() if s.password else None,
            host=s.host,
            port=s.port,
            database=s.database,
            query=dict(s.query),
        )

    def connect_args(self) -> dict[str, Any]:
        return {}

    def secrets(self) -> tuple[str | Secret, ...]:
        """What :func:`redact` removes from driver messages: the password, the URL and the URL's password."""
        found: list[str | Secret] = list(self.source.secrets())
        if self.source.url is not None:
            password = make_url(self.source.url.reveal()).password
            if password:
                found.append(str(password))
        return tuple(found)

    @cached_property
    def engine(self) -> sa.Engine:
        """One connection per extract, not pooled: ``resources`` caps how many run per tenant database."""
        return sa.create_engine(self.url(), poolclass=NullPool, connect_args=self.connect_args())

    def prepare_dbapi_connection(self, dbapi_connection: Any) -> None:  # noqa: B027 - optional hook
        """Dialect hook run on the snapshot's DBAPI connection first (e.g. Oracle's output type handler)."""

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    def native_url(self) -> URL:
        """The URL a native reader connects with (a dialect adds driver settings such as timeouts)."""
        return self.url()

    def retry(self, operation: Callable[[], T], what: str) -> T:
        """Run ``operation``, retrying it while it raises :class:`SourceUnavailableError` (bounded backoff);
        any other error, terminal ones such as a refused password among them, propagates at once."""
        return retrying(operation, what=what, attempts=self._attempts, base_delay=self._base_delay, sleep=self._sleep)

    def connect(self, table: TableConfig | None = None) -> sa.Connection:
        """A connection, retrying while the database is unreachable (bounded backoff).

        Raises :class:`SourceUnavailableError` after the last attempt, :class:`SourceError` at once when
        the server refuses (password, unknown database); ``table`` is only named in the message.
        """
        what = f"tenant '{self.tenant.id}': connect to {self.source.describe()}"
        return self.retry(lambda: self._connect_once(table), what)

    def _connect_once(self, table: TableConfig | None) -> sa.Connection:
        with self.errors("cannot connect to", table):
            return self.engine.connect()

    # ----------------------------------------------------------------------------------- snapshot
    @contextlib.contextmanager
    def snapshot(self, table: TableConfig, window: Window | None = None) -> Iterator[Snapshot]:
        """Open one consistent read snapshot of ``table`` (restricted to ``window`` when given).

        The table is reflected on a SQLAlchemy connection inside the snapshot transaction; the snapshot owns
        that connection and closes it on exit (or earlier, when its reader reads in a connection of its own).
        """
        conn = self.open_read(table)
        try:
            with self.errors("cannot open a read snapshot on", table):
                columns = self.reflect(conn, table)
            snap = Snapshot(self, conn, table, window, columns)
        except BaseException:
            self.close_read(conn)
            raise
        try:
            yield snap
        finally:
            snap.close()

    def open_read(self, table: TableConfig) -> sa.Connection:
        """A connection (retried while unreachable) inside a new snapshot transaction."""
        conn = self.connect(table)
        try:
            with self.errors("cannot open a read snapshot on", table):
                self.begin_snapshot(conn)
        except BaseException:
            self.close_read(conn)
            raise
        return conn

    def make_reader(self, snapshot: Snapshot | None) -> BatchReader:
        """The reader streaming the snapshot's rows: this dialect's native reader unless ``native: false``,
        else the SQLAlchemy row path. A native reader falls back to the row path itself (before reading a
        row) for what it cannot read exactly; every batch must have ``snapshot.schema``."""
        if self.native_reader is not None and self.source.native:
            return NativeBatchReader(READERS[self.native_reader])
        return RowBatchReader()

    def begin_snapshot(self, conn: sa.Connection) -> None:
        self.prepare_dbapi_connection(conn.connection.dbapi_connection)
        for statement in self.snapshot_statements:
            conn.exec_driver_sql(statement)

    def close_read(self, conn: sa.Connection) -> None:
        """End the read-only transaction and close the connection (a failure to close is only logged)."""
        try:
            conn.rollback()  # read only: nothing to commit
            conn.close()
        except sa.exc.DBAPIError as exc:
            log.warning(
                "tenant '%s': closing the source connection failed: %s",
                self.tenant.id,
                redact(str(exc.orig), self.secrets()),
            )

    def schema_for(self, table: TableConfig) -> str | None:
        return table.source_schema or self.source.schema

    def table_clause(self, table: TableConfig, columns: Sequence[SourceColumn]) -> sa.TableClause:
        """The table as a lightweight clause: names quoted by the dialect, no per-type result processing."""
        return sa.table(table.source_name, *(sa.column(c.name) for c in columns), schema=self.schema_for(table))

    def qualified_name(self, table: TableConfig) -> str:
        preparer = self.engine.dialect.identifier_preparer
        schema = self.schema_for(table)
        name = preparer.quote(table.source_name)
        return f"{preparer.quote_schema(schema)}.{name}" if schema else name

    # --------------------------------------------------------------------------------- reflection
    def reflect(self, conn: sa.Connection, table: TableConfig) -> list[SourceColumn]:
        """Columns from the source catalog, in table order. Missing table -> :class:`SourceError`."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sa.exc.SAWarning)
            try:
                raw = sa.inspect(conn).get_columns(table.source_name, schema=self.schema_for(table))
            except sa.exc.NoSuchTableError:
                raise self._missing_table(table) from None
        for warning in caught:
            log.info("tenant '%s' table '%s': reflection: %s", self.tenant.id, table.name, warning.message)
        if not raw:
            raise self._missing_table(table)
        return [SourceColumn(c["name"], c["type"], bool(c.get("nullable", True))) for c in raw]

    def _missing_table(self, table: TableConfig) -> SourceError:
        return SourceError(
            f"table {self.qualified_name(table)} not found on {self.source.describe()} "
            "(check source_name/source_schema in tables.yaml and the user's grants)",
            tenant=self.tenant.id,
            table=table.name,
        )

    # ------------------------------------------------------------------------------------ mapping
    def plan(self, column: SourceColumn, table: TableConfig) -> ColumnPlan:
        """The Arrow plan of one column (with its tables.yaml type override, if any), else
        :class:`TypeMappingError` naming tenant, table, column, type (and the override's setting)."""
        override = table.override(column.name)
        try:
            if override is None:
                return self.map_column(column)
            return self.override_column(column, override)
        except UnsupportedType as exc:
            if override is not None:
                message = (
                    f"{setting(table.name, column.name)}: type override {str(override)!r} cannot apply "
                    f"to column {column.name!r} of type {self.type_name(column)}: {exc} "
                    "(see docs/types.md, 'Per-column type overrides')"
                )
            else:
                message = (
                    f"column {column.name!r} of type {self.type_name(column)} cannot be stored exactly: "
                    f"{exc} (exclude the column in tables.yaml or cast it in a source view; see "
                    "docs/types.md)"
                )
            raise TypeMappingError(message, tenant=self.tenant.id, table=table.name) from None

    def override_column(self, column: SourceColumn, override: TypeOverride) -> ColumnPlan:
        """The plan of ``column`` under a tables.yaml type override; :class:`UnsupportedType` when the
        override does not apply to the column's type or would lose values (docs/types.md lists them)."""
        if override.kind == "decimal":
            return decimal_override(self.map_column(column), override, self.decimal_converter)
        if override.kind == "string":
            return dataclasses.replace(self.text_plan(column), override=str(override))
        if override.kind == "duration_us":
            return dataclasses.replace(self.duration_plan(column), override=str(override))
        raise UnsupportedType(f"unknown override {override}")  # pragma: no cover - config refuses it

    def decimal_converter(self, arrow_type: pa.DataType) -> Converter:
        """How this dialect's driver values of a decimal column become ``arrow_type`` (a checked decimal)."""
        return plain(arrow_type)

    def text_plan(self, column: SourceColumn) -> ColumnPlan:
        """The ``string`` override: the value's exact text. Here (dialects without a server cast): a decimal
        column's exact decimal text (every digit of the driver's ``Decimal``, as for decimals over 38 digits)."""
        base = self.map_column(column)
        if base.source_decimal is None:
            raise UnsupportedType(f"'string' applies to decimal columns on {self.kind}")
        return dataclasses.replace(
            base,
            arrow_type=pa.string(),
            convert=self.decimal_text_converter(),
            note="type override string: the exact decimal text",
        )

    def decimal_text_converter(self) -> Converter:
        return decimal_text

    def duration_plan(self, column: SourceColumn) -> ColumnPlan:
        """The ``duration_us`` override: only MySQL/MariaDB ``TIME`` is a duration."""
        raise UnsupportedType("'duration_us' applies to MySQL/MariaDB TIME columns only")

    def type_name(self, column: SourceColumn) -> str:
        if column.detail:
            return column.detail
        try:
            return column.type.compile(dialect=self.engine.dialect)
        except sa.exc.CompileError:
            return type(column.type).__name__

    @abstractmethod
    def map_column(self, column: SourceColumn) -> ColumnPlan:
        """Dialect type mapping; raises :class:`UnsupportedType` for types without an exact mapping."""

    def window_filter(
        self, column: sa.ColumnClause[Any], cursor: ColumnPlan, window: Window
    ) -> list[sa.ColumnElement[bool]]:
        """``cursor >= start AND cursor < end`` with bound values typed like the cursor column."""
        start: sa.BindParameter[Any]
        end: sa.BindParameter[Any]
        if pa.types.is_date(cursor.arrow_type):
            start = sa.bindparam("window_start", window.start.date(), type_=sa.Date())
            end = sa.bindparam("window_end", window.end.date(), type_=sa.Date())
        elif pa.types.is_timestamp(cursor.arrow_type):
            start = sa.bindparam("window_start", window.start, type_=sa.DateTime())
            end = sa.bindparam("window_end", window.end, type_=sa.DateTime())
        else:
            raise ValueError(f"cursor column {cursor.name!r} is {cursor.source_type}: a date or timestamp is needed")
        return [column >= start, column < end]

    # ------------------------------------------------------------------------------------- errors
    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        """Whether a driver error means "not reachable right now" (retry) rather than "refused" (fail)."""
        return bool(exc.connection_invalidated)

    @contextlib.contextmanager
    def errors(self, action: str, table: TableConfig | None = None) -> Iterator[None]:
        """Translate driver exceptions into :class:`SourceError` / :class:`SourceUnavailableError`."""
        try:
            yield
        except sa.exc.DBAPIError as exc:
            raise self.translate(exc, action, table) from exc
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise SourceError(
                f"{action} {self.source.describe()}: invalid connection settings: {exc}",
                tenant=self.tenant.id,
                table=table.name if table else None,
            ) from exc

    def translate(self, exc: sa.exc.DBAPIError, action: str, table: TableConfig | None) -> SourceError:
        orig = exc.orig if exc.orig is not None else exc
        message = redact(" ".join(str(orig).split()), self.secrets())
        code = self.error_code(orig)
        where = f"{action} {self.source.describe()}"
        if table is not None and table.source_name != table.name:
            where += f" (source table {table.source_name!r})"
        cls = SourceUnavailableError if self.is_transient(exc) else SourceError
        text = f"{where}: {message}" + (f" [{code}]" if code else "")
        return cls(text, tenant=self.tenant.id, table=table.name if table else None)

    def error_code(self, orig: BaseException) -> str | None:
        return None
