"""MySQL/MariaDB native reader: connectorx (Rust, binary protocol) streamed as Arrow batches.

connectorx opens its own connection and runs one statement, and it cannot bind values. So:

* **snapshot + count**: the count rides in the same statement (``... JOIN (SELECT COUNT(*) ...) ON true``);
  one InnoDB statement reads one read view, so the rows and the count come from one snapshot.
* **values**: connectorx cannot bind. The only values a query may carry are an incremental window's
  bounds: every bound value must be exactly a ``datetime.date`` (``Date`` type) or a naive
  ``datetime.datetime`` (``DateTime`` type) — computed by the pipeline from the run date, never read from
  configuration — and is then rendered by the MySQL dialect's literal renderer (``literal_binds``), checked
  once more against the literal's fixed shape (:func:`inline_dates`). Any other value (a ``str``, a number,
  an aware datetime, a subclass, a list) is :class:`NativeUnsupportedError`: the row path binds it.
* **exact types**: connectorx parses ``DECIMAL`` into ``decimal128(38, 10)`` (exact up to ``(28, 10)``,
  silently rounded beyond: wider decimals are selected as ``CAST(... AS CHAR)``, the server's exact text,
  and parsed by Arrow), panics on zero dates and negative ``TIME`` (``TIME`` is read as text; a date with
  year, month or day 0 is turned into NULL in the SQL and flagged in an extra column, counted per column
  into ``stats``). ``TIMESTAMP`` is read in a ``+00:00`` session: the binary value is the UTC instant.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_SESSION",
    "FLOAT_AS_DOUBLE",
    "TRANSIENT_CODES",
    "converter_for",
    "inline_dates",
    "is_transient",
    "open_read",
    "rewrite",
]

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import replacement_traverse

from mozart_luigi.connectors._native_common import (
    Converter,
    Where,
    check_width,
    convert_batch,
    rebatch,
    safe_converter,
)
from mozart_luigi.errors import SourceError

_DIALECT = mysql.dialect(paramstyle="qmark")
_COUNT = "mozart_n"
_TIME_RE = r"^(?P<sign>-?)(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?$"
_DAY_US = 86_400_000_000
# TIMESTAMPs arrive in the session time zone: UTC, so they are instants; a slow consumer (S3 upload)
# must not cut the stream. Our SQL, no values. (A MySQLConnector passes its own, the same, once.)
DEFAULT_SESSION = ("SET SESSION time_zone = '+00:00'", "SET SESSION net_write_timeout = 3600")
#: FLOAT is selected as ``col + 0e0`` by the MySQL mapping (connectors.mysql); this reader recognises it
FLOAT_AS_DOUBLE = "0e0"
#: Client-side "cannot reach" codes (CR_*) and server-side "busy" codes; the rest (1045 access denied,
#: 1049 unknown database, 1146 no such table, ...) are terminal. Shared with ``MySQLConnector``.
TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 2002, 2003, 2005, 2006, 2013, 2026, 2055})
# connectorx messages without a MySQL error code that mean "not reachable right now"
_UNREACHABLE = (
    "could not connect",
    "can't connect",
    "connection refused",
    "connection reset",
    "timed out",
    "lost connection",
    "gone away",
    "broken pipe",
)
_ERROR_CODE = re.compile(r"\bERROR (\d{4})\b")
# the only literals inline_dates writes: 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS[.ffffff]'
_DATE_LITERAL = re.compile(r"'\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2}(?:\.\d{6})?)?'")

# how a column is selected and read back: ``kind`` names the converter family
_CHECKED, _DATES, _TIME, _PASS = "checked", "dates", "time", "pass"


# --------------------------------------------------------------------------------------------- rewriting
def inline_dates(query: sa.Select[Any], where: Where) -> sa.Select[Any]:
    """``query`` with every bound value rendered as a SQL literal, when each one is a date window bound.

    A value is rendered only if it is exactly a ``datetime.date`` bound as ``Date`` or a naive
    ``datetime.datetime`` bound as ``DateTime`` (the window the pipeline computes from the run date), by the
    dialect's literal renderer, and the text has the fixed shape of a date literal. Anything else raises
    :class:`NativeUnsupportedError` before any I/O: the query then keeps its bound values (row path).
    """

    def literal(element: Any, **_kw: Any) -> Any:
        if isinstance(element, BindParameter):
            return sa.literal_column(_date_literal(element, where), element.type)
        return None

    return cast(sa.Select[Any], replacement_traverse(query, {}, literal))  # typed as ExternallyTraversible


def _date_literal(bind: BindParameter[Any], where: Where) -> str:
    value = bind.effective_value
    if bind.expanding or not _is_date_bound(bind.type, value):
        raise where.unsupported(
            f"connectorx cannot bind values, and {bind.key!r} is not a date/datetime window "
            f"bound (a {type(value).__name__} bound as {bind.type!r})"
        )
    text = str(bind.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))
    if not _DATE_LITERAL.fullmatch(text):  # defence in depth: the checks above admit no other rendering
        raise where.unsupported(f"bound value {bind.key!r} rendered as {text!r}, not as a date literal")
    return text


def _is_date_bound(type_: sa.types.TypeEngine[Any], value: object) -> bool:
    """Exactly a naive ``datetime`` bound as ``DateTime``, or exactly a ``date`` bound as ``Date``."""
    if type(value) is dt.datetime:
        return isinstance(type_, sa.DateTime) and value.tzinfo is None
    if type(value) is dt.date:
        return isinstance(type_, sa.Date)
    return False


def rewrite(
    query: sa.Select[Any], where: Where, sums: Sequence[sa.ColumnElement[Any]] = (), *, with_count: bool = True
) -> tuple[str, list[str], dict[int, int]]:
    """The statement connectorx runs, each column's kind, and its zero-date flag columns.

    Its columns: the query's columns re-selected exactly; per date column a flag (``1`` where the statement
    turned an invalid date into NULL, else NULL) — ``flags`` maps a flag's result position to its column's;
    then the ``sums`` (a table's checksums, over the query's table and filter); last, the window's
    ``COUNT(*)``. All from one statement, so from one read view. ``with_count=False`` (a parallel stream, whose
    coordinator counts the table): the rows and their flags only, streamed from the first row scanned.
    """
    exprs, kinds, flags = [], [], {}
    flag_exprs: list[sa.Label[Any]] = []
    for i, column in enumerate(query.selected_columns):
        expr, kind, invalid = _select_expr(column)
        exprs.append(expr.label(f"mozart_c{i}"))
        kinds.append(kind)
        if invalid is not None:
            flags[len(query.selected_columns) + len(flag_exprs)] = i
            flag_exprs.append(sa.case((invalid(column), sa.literal_column("1"))).label(f"mozart_f{i}"))
    rows = query.with_only_columns(*exprs, *flag_exprs).subquery("mozart_q")
    if not with_count:
        compiled = sa.select(*rows.c).compile(dialect=_DIALECT)
        if compiled.binds:
            raise where.unsupported(f"connectorx cannot bind values; the query carries {sorted(compiled.binds)}")
        return str(compiled), kinds, flags
    counted = sa.select(sa.func.count().label(_COUNT)).select_from(query.subquery("mozart_q2"))
    if sums:
        counted = query.with_only_columns(sa.func.count().label(_COUNT), *sums)
    count = counted.subquery("mozart_c")
    summed = [c for c in count.c if c.name != _COUNT]
    # the 1-row count first (STRAIGHT_JOIN keeps that order): the rows then stream from the scan
    statement = sa.select(*rows.c, *summed, count.c[_COUNT]).select_from(count.join(rows, sa.true()))
    statement = statement.prefix_with("STRAIGHT_JOIN", dialect="mysql")
    compiled = statement.compile(dialect=_DIALECT)
    if compiled.binds:
        raise where.unsupported(f"connectorx cannot bind values; the query carries {sorted(compiled.binds)}")
    return str(compiled), kinds, flags


_Rewrite = tuple[Any, str, Callable[[Any], Any] | None]


def _select_expr(column: Any) -> _Rewrite:
    """``(expression, kind, invalid-date predicate or None)`` for one selected column."""
    stored = _stored_float(column)
    if stored is not column or isinstance(column.type, sa.Float):
        return stored, _PASS, None  # binary protocol: the stored IEEE value
    if isinstance(column.type, sa.Numeric) and _fits_connectorx(column.type):
        return column, _PASS, None  # decimal128(38, 10) holds it exactly; the cast to (p, s) is checked
    for sa_type, build in _REWRITES:
        if isinstance(column.type, sa_type):
            return build(column)
    return column, _PASS, None


def _stored_float(column: Any) -> Any:
    """The row path selects FLOAT as ``col + 0e0`` (connectors.mysql: the text protocol would print 6
    digits); the binary protocol sends the stored float32 itself, so select the bare column here."""
    element = getattr(column, "element", column)
    right = getattr(element, "right", None)
    if isinstance(right, sa.ColumnClause) and right.is_literal and right.name == FLOAT_AS_DOUBLE:
        return element.left
    return column


def _fits_connectorx(decimal: sa.Numeric[Any]) -> bool:
    """connectorx parses DECIMAL into a 28-digit decimal rescaled to scale 10: exact up to (28, 10)."""
    return decimal.precision is not None and decimal.precision <= 28 and (decimal.scale or 0) <= 10


def _invalid_date(column: Any) -> Any:
    """Dates the SQLAlchemy path cannot represent either (PyMySQL hands them back as text): year, month or
    day 0 - ``0000-00-00``, ``2024-00-10``, ``0000-01-01``. Both paths store them as NULL and count them."""
    zero: sa.ColumnClause[Any] = sa.literal_column("0")
    return sa.or_(sa.func.year(column) == zero, sa.func.month(column) == zero, sa.func.dayofmonth(column) == zero)


def _zero_nulled(column: Any) -> _Rewrite:
    return sa.case((_invalid_date(column), sa.null()), else_=column), _DATES, _invalid_date


def _zero_timestamp(column: Any) -> Any:
    return column == sa.literal_column("0")  # a TIMESTAMP is either valid or all zero


def _timestamp(column: Any) -> _Rewrite:
    """Read in the session's ``+00:00`` (set by this reader), so the binary value is the UTC instant."""
    return sa.case((_zero_timestamp(column), sa.null()), else_=column), _DATES, _zero_timestamp


_REWRITES: tuple[tuple[type, Callable[[Any], _Rewrite]], ...] = (
    (sa.Numeric, lambda c: (sa.cast(c, sa.CHAR), _CHECKED, None)),  # the exact decimal text
    (sa.TIMESTAMP, _timestamp),
    (sa.DateTime, _zero_nulled),
    (sa.Date, _zero_nulled),
    (sa.Time, lambda c: (sa.cast(c, sa.CHAR), _TIME, None)),  # may be negative or past 24h
    (mysql.BIT, lambda c: (sa.cast(c, mysql.BIGINT(unsigned=True)), _CHECKED, None)),  # else raw bytes
)


# -------------------------------------------------------------------------------------------- converting
def converter_for(kind: str, src: pa.DataType, dst: pa.DataType) -> Converter | None:
    """How a connectorx column of ``kind``/``src`` becomes ``dst`` exactly, or None."""
    if kind == _PASS:
        return safe_converter(src, dst)
    if kind == _CHECKED:
        return _checked_cast(dst)
    if kind == _DATES:
        return _dates(src, dst)
    if kind == _TIME and (pa.types.is_duration(dst) or pa.types.is_time64(dst) or pa.types.is_int64(dst)):
        return _time_of(dst)  # int64: the duration_us override (signed microseconds)
    return None


def _checked_cast(dst: pa.DataType) -> Converter:
    def convert(array: pa.Array) -> pa.Array:
        return pc.cast(array, dst, safe=True)  # parses exactly or raises; never rounds

    return convert


def _dates(src: pa.DataType, dst: pa.DataType) -> Converter | None:
    """DATE/DATETIME (zero dates already NULL); a tz-aware target reads a DATETIME as UTC wall time."""
    if pa.types.is_timestamp(src) and pa.types.is_timestamp(dst) and src.tz is None and dst.tz is not None:
        utc = pa.timestamp(src.unit, tz="UTC")

        def as_utc(array: pa.Array) -> pa.Array:
            # the same values relabelled: a UTC wall time is its UTC instant (what assume_timezone("UTC")
            # computes value by value, at several times the cost)
            return pc.cast(array.view(utc), dst, safe=True)

        return as_utc
    return safe_converter(src, dst)


def _time_of(dst: pa.DataType) -> Converter:
    def convert(array: pa.Array) -> pa.Array:
        parts = pc.extract_regex(array, _TIME_RE)
        if parts.null_count > array.null_count:
            raise pa.ArrowInvalid("unparsable MySQL TIME value")
        micros = _time_micros(parts)
        if pa.types.is_time64(dst):
            if (pc.min(micros).as_py() or 0) < 0 or (pc.max(micros).as_py() or 0) >= _DAY_US:
                raise pa.ArrowInvalid("TIME value is not a time of day (00:00:00 <= t < 24:00:00)")
            return pc.cast(micros.view(pa.time64("us")), dst, safe=True)
        if pa.types.is_int64(dst):
            return micros
        return pc.cast(micros.view(pa.duration("us")), dst, safe=True)

    return convert


def _time_micros(parts: pa.StructArray) -> pa.Array:
    """``[-]H:MM:SS[.f]`` parts -> signed microseconds (NULL where the value is NULL)."""
    fields = dict(zip(("sign", "h", "m", "s", "f"), parts.flatten(), strict=True))  # parent NULLs applied

    def number(name: str) -> pa.Array:
        return pc.cast(fields[name], pa.int64())

    fraction = pc.cast(pc.utf8_rpad(fields["f"], 6, "0"), pa.int64())
    seconds = pc.add(pc.multiply(pc.add(pc.multiply(number("h"), 60), number("m")), 60), number("s"))
    magnitude = pc.add(pc.multiply(seconds, 1_000_000), fraction)
    return pc.if_else(pc.equal(fields["sign"], "-"), pc.negate(magnitude), magnitude)


def plan(result: pa.Schema, kinds: list[str], target: pa.Schema, where: Where) -> list[Converter]:
    converters = []
    for got, kind, want in zip(result, kinds, target, strict=True):
        convert = converter_for(kind, got.type, want.type)
        if convert is None:
            raise where.unsupported(
                f"column {want.name!r}: connectorx gives {got.type} ({kind}), no exact conversion to {want.type}"
            )
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
    stats: dict[str, int],
    session: Sequence[str],
    where: Where,
    sums: Sequence[sa.ColumnElement[Any]] = (),
    count: bool = True,
) -> Iterator[tuple[int, tuple[Any, ...], Iterator[pa.RecordBatch]]]:
    """``(count, sums, batches)`` from one statement (one read view); the first batch is read to learn the
    count and the ``sums`` expressions' values (all NULL for an empty window). ``count=False``: no count
    (-1) and no sums; the first batch is still read before this yields, so the statement's read view exists.

    ``session`` statements run once, first, on connectorx's connection (``pre_execution_query``). A
    window's date bounds are rendered as literals (:func:`inline_dates`); any other value is refused.
    """
    check_width(query, schema, where)
    sums = sums if count else ()
    sql, kinds, flags = rewrite(inline_dates(query, where), where, sums, with_count=count)
    reader = _start(url, sql, batch_rows, list(dict.fromkeys(session)), where)
    try:
        converters = plan(pa.schema(list(reader.schema)[: len(kinds)]), kinds, schema, where)
        first = _next(reader, where)
        counted = -1 if not count else int(first.column(first.num_columns - 1)[0].as_py()) if first is not None else 0
        summed: tuple[Any, ...] = (None,) * len(sums)  # an empty window: no row, and every sum is NULL
        if first is not None:
            summed = tuple(first.column(first.num_columns - 1 - len(sums) + i)[0].as_py() for i in range(len(sums)))
        zeros = {position: schema.field(i).name for position, i in flags.items()}
        driver = _driver_batches(first, reader, where)
        # no read-ahead thread: connectorx reads ahead in Rust already, and its iterator holds the GIL
        yield counted, summed, _batches(driver, converters, schema, batch_rows, zeros=zeros, stats=stats, where=where)
    finally:
        reader.close()


def _start(url: sa.URL, sql: str, batch_rows: int, session: list[str], where: Where) -> Any:
    import connectorx

    target = sa.URL.create(
        "mysql", username=url.username, password=url.password, host=url.host, port=url.port, database=url.database
    )
    conn = target.render_as_string(hide_password=False)
    try:
        return connectorx.read_sql(
            conn, sql, return_type="arrow_stream", batch_size=batch_rows, pre_execution_query=session
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # connectorx raises RuntimeError, or a Rust panic (a BaseException)
        raise _translate(exc, where) from exc


def _next(reader: Any, where: Where) -> pa.RecordBatch | None:
    """The next non-empty driver batch, or None at the end."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise _translate(exc, where) from exc
        if batch.num_rows:
            return batch


def _driver_batches(first: pa.RecordBatch | None, reader: Any, where: Where) -> Iterator[pa.RecordBatch]:
    batch = first
    while batch is not None:
        yield batch
        batch = _next(reader, where)


def _batches(
    driver: Iterator[pa.RecordBatch],
    converters: list[Converter],
    schema: pa.Schema,
    batch_rows: int,
    *,
    zeros: dict[int, str],
    stats: dict[str, int],
    where: Where,
) -> Iterator[pa.RecordBatch]:
    for batch in driver:
        for position, name in zeros.items():  # the flags: 1 where a zero date became NULL
            flag = batch.column(position)
            stats[name] = stats.get(name, 0) + len(flag) - flag.null_count
        yield from rebatch([convert_batch(batch, converters, schema, where)], batch_rows)


def is_transient(text: str) -> bool:
    """A connectorx message's MySQL error code decides (``ERROR 1045`` is terminal even when connectorx says
    it "timed out waiting for connection"); without a code, the "cannot reach" wordings are transient."""
    code = _ERROR_CODE.search(text)
    if code:
        return int(code.group(1)) in TRANSIENT_CODES
    lowered = text.lower()
    return any(s in lowered for s in _UNREACHABLE)


def _translate(exc: BaseException, where: Where) -> SourceError:
    return where.driver_error("connectorx", exc, is_transient(str(exc)))
