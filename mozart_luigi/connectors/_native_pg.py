"""PostgreSQL native reader: ADBC (libpq; ``COPY ... TO STDOUT (FORMAT binary)`` decoded into Arrow in C).

Values stay bound although ``COPY`` takes no parameters: each one is bound to ``set_config('mozart.pN',
$1, true)`` (transaction-local) and the query reads it back through an InitPlan, ``(SELECT
CAST(current_setting('mozart.pN') AS <type>))``, evaluated once per query, so index scans still apply.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_SESSION",
    "TERMINAL_HINTS",
    "compile_query",
    "converter_for",
    "is_transient",
    "numeric_text_columns",
    "open_read",
]

import datetime as dt
import decimal
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import replacement_traverse

from mozart_luigi.connectors._native_common import (
    Converter,
    NativeUnsupportedError,
    Where,
    check_width,
    convert_batch,
    read_ahead,
    rebatch,
    safe_converter,
)
from mozart_luigi.errors import SourceError

_DIALECT = postgresql.dialect(paramstyle="qmark")  # no %-escaping: the SQL text carries no placeholders
_SETTING = "mozart.p{}"
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# PostgreSQL's ±infinity timestamps/dates arrive from ADBC as wrapped-around int64/int32 values far below
# any real value (PostgreSQL's minimum is 4713 BC); such a value is refused, never written.
_MIN_REAL = {pa.int64(): -(10**18), pa.int32(): -(10**8)}
DEFAULT_SESSION = ("SET LOCAL TIME ZONE 'UTC'",)
# SQLSTATEs that mean "not reachable right now": connection exceptions, starting up, too many connections
_TRANSIENT_STATES = ("08", "57P03", "53300")
#: libpq messages (no SQLSTATE) that are the server's refusal, not an outage: retrying will not help
TERMINAL_HINTS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "role ",
    "invalid dsn",
)


# --------------------------------------------------------------------------------------------- compiling
def compile_query(
    query: sa.Select[Any], sums: Sequence[sa.ColumnElement[Any]] = (), *, as_text: Collection[int] = ()
) -> tuple[str, str, list[tuple[str, str]]]:
    """``(select_sql, count_sql, settings)``: SQL without placeholders and the ``(name, text)`` to bind.

    With ``sums`` (a table's checksums, over the query's table), ``count_sql`` selects them after the count:
    ``SELECT count(*), <sums> FROM <table> WHERE <the query's filter>``, one statement. ``as_text``: the
    positions of selected columns that ``select_sql`` selects ``CAST(... AS TEXT)`` (see
    :func:`numeric_text_columns`)."""
    settings: list[tuple[str, str]] = []

    def replace(element: Any, **_kw: Any) -> Any:
        if not isinstance(element, BindParameter):
            return None
        name = _SETTING.format(len(settings))
        settings.append((name, _as_text(element)))
        setting = sa.func.current_setting(sa.literal_column(f"'{name}'"))  # our own constant name
        return sa.select(sa.cast(setting, _bind_type(element))).scalar_subquery()

    rewritten = cast(sa.Select[Any], replacement_traverse(query, {}, replace))  # typed as ExternallyTraversible
    counted = sa.select(sa.func.count()).select_from(rewritten.subquery("mozart_q"))
    if sums:
        counted = rewritten.with_only_columns(sa.func.count(), *sums)
    rows = rewritten
    if as_text:
        columns = [
            sa.cast(c, postgresql.TEXT).label(c.name) if i in as_text else c
            for i, c in enumerate(rewritten.selected_columns)
        ]
        rows = rewritten.with_only_columns(*columns)
    return _render(rows), _render(counted), settings


def numeric_text_columns(query: sa.Select[Any], schema: pa.Schema) -> frozenset[int]:
    """Positions of ``numeric`` columns stored as a decimal, which the reader selects as the server's text.

    The server's ``numeric`` output is the value's exact decimal text, parsed by the same safe cast the
    driver's own text goes through (a value that does not fit, NaN or infinity fails, never rounded); ADBC's
    decoding of binary ``numeric`` into that text costs about as much client CPU as all other columns of a
    typical table together (measured), the server's output and a copy much less. ``numeric`` arrays and
    columns stored as text keep the driver's decoding."""
    return frozenset(
        i
        for i, (column, field) in enumerate(zip(query.selected_columns, schema, strict=True))
        if pa.types.is_decimal(field.type)
        and isinstance(column.type, sa.Numeric)
        and not isinstance(column.type, sa.Float)
    )


def _bind_type(bind: BindParameter[Any]) -> sa.types.TypeEngine[Any]:
    if isinstance(bind.type, NullType):
        return sa.literal(bind.effective_value).type
    return bind.type


def _as_text(bind: BindParameter[Any]) -> str:
    """PostgreSQL's input text for a bound value; exact for every type accepted here."""
    value = bind.effective_value
    if bind.expanding or value is None:
        raise NativeUnsupportedError(f"bound value {bind.key!r} is a list or NULL")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | decimal.Decimal | str):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that round-trips
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()  # aware datetimes keep their offset
    raise NativeUnsupportedError(f"bound value {bind.key!r} of type {type(value).__name__}")


def _render(statement: sa.Select[Any]) -> str:
    compiled = statement.compile(dialect=_DIALECT)
    if compiled.binds:
        raise NativeUnsupportedError(f"cannot move bound values {sorted(compiled.binds)} out of the query")
    return str(compiled)


# -------------------------------------------------------------------------------------------- converting
def converter_for(src: pa.DataType, dst: pa.DataType) -> Converter | None:
    """How an ADBC column of type ``src`` becomes ``dst`` exactly, or None."""
    if isinstance(src, pa.BaseExtensionType):
        return _extension_converter(src, dst)
    if pa.types.is_list(src) and pa.types.is_list(dst):
        inner = converter_for(src.value_type, dst.value_type)
        return _each_item(inner, dst) if inner is not None else None
    convert = safe_converter(src, dst)
    if convert is not None and (pa.types.is_timestamp(src) or pa.types.is_date32(src)):
        return _finite(convert, pa.int64() if pa.types.is_timestamp(src) else pa.int32())
    return convert


def _extension_converter(src: pa.BaseExtensionType, dst: pa.DataType) -> Converter | None:
    textual = pa.types.is_string(dst) or pa.types.is_large_string(dst)
    if isinstance(src, pa.OpaqueType) and src.type_name == "numeric":
        # exact decimal text; Arrow's safe cast refuses NaN, infinity and values that do not fit
        return _storage_then(dst) if pa.types.is_decimal(dst) or textual else None
    if isinstance(src, pa.JsonType):
        return _storage_then(dst) if textual else None
    if isinstance(src, pa.UuidType):
        if pa.types.is_string(dst):
            return _uuid_text
        return _storage_then(dst) if dst == pa.binary(16) else None
    return None  # enums, inet, ... arrive as opaque binary: select them as text in SQL to read natively


def _each_item(inner: Converter, dst: pa.ListType) -> Converter:
    """Arrays (``numeric[]``, ``timestamptz[]``, ...): convert the items, keep offsets and NULL lists."""

    def convert(array: pa.Array) -> pa.Array:
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(array.offsets, inner(array.values), type=dst, mask=mask)

    return convert


def _storage_then(dst: pa.DataType) -> Converter:
    def convert(array: pa.Array) -> pa.Array:
        return pc.cast(array.storage, dst, safe=True)

    return convert


def _decimal_text(src: pa.DataType, dst: pa.DataType) -> Converter | None:
    """Exact decimal text -> ``dst`` by Arrow's safe cast (what :func:`_storage_then` does to ADBC's text)."""
    if not (pa.types.is_string(src) and pa.types.is_decimal(dst)):
        return None

    def convert(array: pa.Array) -> pa.Array:
        return pc.cast(array, dst, safe=True)

    return convert


def _finite(convert: Converter, raw: pa.DataType) -> Converter:
    def check(array: pa.Array) -> pa.Array:
        if array.null_count < len(array) and pc.min(array.view(raw)).as_py() < _MIN_REAL[raw]:
            raise pa.ArrowInvalid("PostgreSQL 'infinity'/'-infinity' has no exact Parquet value")
        return convert(array)

    return check


def _uuid_text(array: pa.Array) -> pa.Array:
    """``arrow.uuid`` -> canonical lower-case text, vectorised (what ``str(uuid.UUID)`` gives)."""
    storage = array.storage
    n = len(storage)
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)[storage.offset * 16 : (storage.offset + n) * 16]
    raw = raw.reshape(n, 16)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2], digits[:, 1::2] = _HEX[raw >> 4], _HEX[raw & 15]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for out, src, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        text[:, out : out + width] = digits[:, src : src + width]
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(36), n, [None, pa.py_buffer(text.tobytes())])
    strings = pc.cast(pc.cast(fixed, pa.binary()), pa.string())
    if not storage.null_count:
        return strings
    return pc.if_else(pc.is_null(storage), pa.scalar(None, pa.string()), strings)


def plan(result: pa.Schema, target: pa.Schema, where: Where, as_text: Collection[int] = ()) -> list[Converter]:
    """Each result column's converter; ``as_text``: positions selected as the server's ``numeric`` text."""
    converters = []
    for i, (got, want) in enumerate(zip(result, target, strict=True)):
        convert = _decimal_text(got.type, want.type) if i in as_text else converter_for(got.type, want.type)
        if convert is None:
            raise where.unsupported(f"column {want.name!r}: ADBC gives {got.type}, no exact conversion to {want.type}")
        converters.append(convert)
    return converters


# ---------------------------------------------------------------------------------------------- reading
@contextmanager
def open_read(
    url: sa.URL,
    query: sa.Select[Any],
    schema: pa.Schema,
    batch_rows: int,
    *,
    session: Sequence[str],
    where: Where,
    sums: Sequence[sa.ColumnElement[Any]] = (),
    count: bool = True,
) -> Iterator[tuple[int, tuple[Any, ...], Iterator[pa.RecordBatch]]]:
    """``(count, sums, batches)`` read in one ``REPEATABLE READ READ ONLY`` transaction on one connection
    (``sums``: the values of the ``sums`` expressions, selected with the count). ``count=False``: no count
    statement (a parallel stream: its coordinator counted the table in the same snapshot); the count is -1.

    ``session`` statements (the connector's session settings, e.g. ``SET LOCAL intervalstyle``, which
    decides how the server renders casts to text) run once, right after ``BEGIN``.
    """
    import adbc_driver_manager

    check_width(query, schema, where)
    as_text = numeric_text_columns(query, schema)
    sql, count_sql, settings = compile_query(query, sums, as_text=as_text)
    conn = _connect(url, where)
    cursor = conn.cursor()
    try:
        try:
            counted, *summed = _begin_and_count(cursor, count_sql if count else None, settings, session)
            cursor.execute(sql)
            reader = cursor.fetch_record_batch()
        except adbc_driver_manager.Error as exc:
            raise _translate(exc, where) from exc
        converters = plan(reader.schema, schema, where, as_text)
        # ADBC releases the GIL while it waits and decodes: the next driver batch is read and converted in a
        # thread while the caller encodes this one (stopped and joined before the connection closes)
        with read_ahead(_converted(reader, converters, schema, where)) as converted:
            yield counted, tuple(summed), rebatch(converted, batch_rows)
    finally:
        _close(cursor, conn)  # closing ends the read-only transaction (and any unfinished COPY) at once


def _connect(url: sa.URL, where: Where) -> Any:
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as adbc_pg

    uri = sa.URL.create(
        "postgresql",
        username=url.username,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )
    try:
        return adbc_pg.connect(uri.render_as_string(hide_password=False), autocommit=True)
    except adbc_driver_manager.Error as exc:
        raise _translate(exc, where) from exc


def _begin_and_count(
    cursor: Any, count_sql: str | None, settings: list[tuple[str, str]], session: Sequence[str]
) -> tuple[Any, ...]:
    """``(count, *sums)``: the count statement's row, first in the snapshot (``(-1,)`` without one)."""
    cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    for statement in session:
        cursor.execute(statement)
    for name, value in settings:
        cursor.execute("SELECT set_config($1, $2, true)", (name, value))
        cursor.fetchall()
    if count_sql is None:
        return (-1,)
    cursor.execute(count_sql)
    row = cursor.fetchone()
    return (int(row[0]), *row[1:])


def _converted(
    reader: pa.RecordBatchReader, converters: list[Converter], schema: pa.Schema, where: Where
) -> Iterator[pa.RecordBatch]:
    """Whole driver batches (~16 MB) converted to ``schema`` (sliced to the caller's size afterwards)."""
    import adbc_driver_manager

    try:
        for batch in reader:
            yield convert_batch(batch, converters, schema, where)
    except adbc_driver_manager.Error as exc:
        raise _translate(exc, where) from exc


def _close(cursor: Any, conn: Any) -> None:
    try:
        cursor.close()
    finally:
        conn.close()


def is_transient(text: str, sqlstate: str | None, *, operational: bool) -> bool:
    """PostgreSQL's transient/terminal split, shared by psycopg2 (``PostgresConnector``) and ADBC.

    With a SQLSTATE: transient only for connection exceptions (``08``), a server starting up (``57P03``)
    and too many connections (``53300``); any other SQLSTATE is an answer. Without one (libpq could not
    connect, or lost the connection: ``operational``): transient unless the message is a refusal (password,
    pg_hba, missing database or role).
    """
    if sqlstate:
        return sqlstate.startswith(_TRANSIENT_STATES)
    return operational and not any(hint in text.lower() for hint in TERMINAL_HINTS)


def _translate(exc: Exception, where: Where) -> SourceError:
    import adbc_driver_manager

    state = str(getattr(exc, "sqlstate", "") or "") or None
    unreachable = is_transient(str(exc), state, operational=isinstance(exc, adbc_driver_manager.OperationalError))
    return where.driver_error("ADBC", exc, unreachable)
