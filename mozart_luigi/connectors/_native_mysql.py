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
  year, month or day 0 is turned into NULL in the SQL, counted per column into ``stats``: see
  :func:`valid_date`). ``TIMESTAMP`` is read in a ``+00:00`` session: the binary value is the UTC instant.
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
    "valid_date",
]

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

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
#: TO_DAYS('0001-01-01'): the first day with year, month and day all non-zero (see :func:`valid_date`)
_FIRST_VALID_DAY = 366
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


class Layout(NamedTuple):
    """Where a statement's extra result columns are (positions in its result)."""

    flags: dict[int, int]  #: no count: a per-row zero-date flag's position -> its date column's index
    present: dict[int, int]  #: with the count: a date column's non-NULL source count's position -> its index
    sums: list[int]  #: with the count: the ``sums`` expressions' positions (the count is the last column)


class Rewritten(NamedTuple):
    """The statement connectorx runs, each query column's converter family, and its :class:`Layout`."""

    sql: str
    kinds: list[str]
    layout: Layout


def rewrite(
    query: sa.Select[Any], where: Where, sums: Sequence[sa.ColumnElement[Any]] = (), *, with_count: bool = True
) -> Rewritten:
    """The statement connectorx runs, each column's kind, and where its zero dates are counted.

    Its columns: the query's columns re-selected exactly (a date column as NULL where its date is invalid,
    :func:`valid_date`); then, with the count: the ``sums`` (a table's checksums, over the query's table and
    filter), per date column ``COUNT(col)`` (its non-NULL source values) and last the window's ``COUNT(*)``,
    all from one statement, so from one read view: a column's zero dates are its NULLs in the rows minus
    its source NULLs (``COUNT(*) - COUNT(col)``), no per-row work. ``with_count=False`` (a parallel stream,
    whose coordinator counts the table): the rows and, per date column, a flag (``1`` where the statement
    turned an invalid date into NULL, else NULL), streamed from the first row scanned.
    """
    selected = list(query.selected_columns)
    exprs, kinds, dates = [], [], []
    for i, column in enumerate(selected):
        expr, kind, is_date = _select_expr(column)
        exprs.append(expr.label(f"mozart_c{i}"))
        kinds.append(kind)
        if is_date:
            dates.append(i)
    if not with_count:
        flag_exprs = [_zero_flag(selected[i]).label(f"mozart_f{i}") for i in dates]
        flags = {len(selected) + k: i for k, i in enumerate(dates)}
        rows = query.with_only_columns(*exprs, *flag_exprs).subquery("mozart_q")
        return Rewritten(_compiled(sa.select(*rows.c), where), kinds, Layout(flags, {}, []))
    rows = query.with_only_columns(*exprs).subquery("mozart_q")
    if sums:
        present = [sa.func.count(selected[i]).label(f"mozart_z{i}") for i in dates]
        counted = query.with_only_columns(sa.func.count().label(_COUNT), *sums, *present)
    else:
        inner = list(query.subquery("mozart_q2").c)
        present = [sa.func.count(inner[i]).label(f"mozart_z{i}") for i in dates]
        counted = sa.select(sa.func.count().label(_COUNT), *present).select_from(inner[0].table)
    count = counted.subquery("mozart_c")
    extra = [c for c in count.c if c.name != _COUNT]  # the sums, then the date columns' non-NULL counts
    # the 1-row count first (STRAIGHT_JOIN keeps that order): the rows then stream from the scan
    statement = sa.select(*rows.c, *extra, count.c[_COUNT]).select_from(count.join(rows, sa.true()))
    statement = statement.prefix_with("STRAIGHT_JOIN", dialect="mysql")
    first = len(selected) + len(sums)
    positions = {first + k: i for k, i in enumerate(dates)}
    return Rewritten(_compiled(statement, where), kinds, Layout({}, positions, list(range(len(selected), first))))


def _compiled(statement: sa.Select[Any], where: Where) -> str:
    compiled = statement.compile(dialect=_DIALECT)
    if compiled.binds:
        raise where.unsupported(f"connectorx cannot bind values; the query carries {sorted(compiled.binds)}")
    return str(compiled)


_Rewrite = tuple[Any, str, bool]


def _select_expr(column: Any) -> _Rewrite:
    """``(expression, kind, is a date column whose invalid dates become NULL)`` for one selected column."""
    stored = _stored_float(column)
    if stored is not column or isinstance(column.type, sa.Float):
        return stored, _PASS, False  # binary protocol: the stored IEEE value
    if isinstance(column.type, sa.Numeric) and _fits_connectorx(column.type):
        return column, _PASS, False  # decimal128(38, 10) holds it exactly; the cast to (p, s) is checked
    for sa_type, build in _REWRITES:
        if isinstance(column.type, sa_type):
            return build(column)
    return column, _PASS, False


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


def valid_date(column: Any) -> sa.ColumnElement[bool]:
    """``TO_DAYS(col) >= 366``: true exactly for a DATE/DATETIME/TIMESTAMP whose year, month and day are all
    non-zero; NULL or false for the dates neither path can represent (PyMySQL hands them back as text:
    ``0000-00-00``, ``2024-00-10``, ``2024-10-00``, ``0000-01-01``), which both paths store as NULL and count.

    ``TO_DAYS`` is NULL when the month or the day is 0 (MariaDB and MySQL read its argument with
    ``NO_ZERO_IN_DATE | NO_ZERO_DATE``, whatever the session's ``sql_mode``), else the day number, which is
    at most 365 in year 0 and at least 366 (``0001-01-01``) from year 1 on; a ``TIMESTAMP`` is either zero
    or after 1970. One function call per value (``year() = 0 OR month() = 0 OR dayofmonth() = 0``, the
    earlier form, made three) and no comparison with a zero date. A date the server stored under
    ``ALLOW_INVALID_DATES`` (``2024-02-30``) is valid here, as it was for that form (connectorx then refuses
    it: the extract fails, naming the driver's error).
    """
    return sa.func.to_days(column) >= sa.literal_column(str(_FIRST_VALID_DAY))


def _zero_nulled(column: Any) -> _Rewrite:
    """DATE, DATETIME and TIMESTAMP (read in the session's ``+00:00``, set by this reader, so the binary value
    is the UTC instant): the value where :func:`valid_date`, else NULL."""
    return sa.case((valid_date(column), column)), _DATES, True


def _zero_flag(column: Any) -> Any:
    """``1`` where :func:`_zero_nulled` turned a non-NULL value into NULL, else NULL. (``col IS NULL`` in a
    select list is the value's own NULL: the ODBC rule that matches ``0000-00-00`` in a NOT NULL column
    applies to ``WHERE`` only.)"""
    return sa.case((valid_date(column), sa.null()), (column.is_(None), sa.null()), else_=sa.literal_column("1"))


_REWRITES: tuple[tuple[type, Callable[[Any], _Rewrite]], ...] = (
    (sa.Numeric, lambda c: (sa.cast(c, sa.CHAR), _CHECKED, False)),  # the exact decimal text
    (sa.DateTime, _zero_nulled),  # also TIMESTAMP
    (sa.Date, _zero_nulled),
    (sa.Time, lambda c: (sa.cast(c, sa.CHAR), _TIME, False)),  # may be negative or past 24h
    (mysql.BIT, lambda c: (sa.cast(c, mysql.BIGINT(unsigned=True)), _CHECKED, False)),  # else raw bytes
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
    sql, kinds, layout = rewrite(inline_dates(query, where), where, sums, with_count=count)
    reader = _start(url, sql, batch_rows, list(dict.fromkeys(session)), where)
    try:
        converters = plan(pa.schema(list(reader.schema)[: len(kinds)]), kinds, schema, where)
        first = _next(reader, where)
        counted = -1 if not count else int(first.column(first.num_columns - 1)[0].as_py()) if first is not None else 0
        summed: tuple[Any, ...] = (None,) * len(sums)  # an empty window: no row, and every sum is NULL
        zeros = _ZeroDates(
            {position: schema.field(i).name for position, i in layout.flags.items()}, counted, stats=stats
        )
        if first is not None:
            summed = tuple(first.column(p)[0].as_py() for p in layout.sums)
            for position, i in layout.present.items():
                zeros.present[i] = (schema.field(i).name, int(first.column(position)[0].as_py()))
        driver = _driver_batches(first, reader, where)
        # no read-ahead thread: connectorx reads ahead in Rust already, and its iterator holds the GIL
        yield counted, summed, _batches(driver, converters, schema, batch_rows, zeros=zeros, where=where)
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


class _ZeroDates:
    """Counts each date column's invalid dates (made NULL by the statement) into ``stats``.

    Without the count (a parallel stream): the per-row flags, batch by batch. With it: once the rows are all
    read, a column's NULLs in the rows minus its source NULLs (``count - COUNT(col)``, read with the count,
    in the same read view); only when the rows read are exactly ``count`` (else the extract's count check
    fails, and no figure is made up).
    """

    def __init__(self, flags: dict[int, str], count: int, *, stats: dict[str, int]) -> None:
        self.flags, self.count, self.stats = flags, count, stats
        self.present: dict[int, tuple[str, int]] = {}  # column index -> (name, its non-NULL source values)
        self._nulls: dict[int, int] = {}
        self._rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        for position, name in self.flags.items():  # 1 where an invalid date became NULL
            flag = batch.column(position)
            self.stats[name] = self.stats.get(name, 0) + len(flag) - flag.null_count
        for i in self.present:
            self._nulls[i] = self._nulls.get(i, 0) + batch.column(i).null_count
        self._rows += batch.num_rows

    def finish(self) -> None:
        if self._rows != self.count:
            return
        for i, (name, present) in self.present.items():
            self.stats[name] = self.stats.get(name, 0) + self._nulls.get(i, 0) - (self.count - present)


def _batches(
    driver: Iterator[pa.RecordBatch],
    converters: list[Converter],
    schema: pa.Schema,
    batch_rows: int,
    *,
    zeros: _ZeroDates,
    where: Where,
) -> Iterator[pa.RecordBatch]:
    for batch in driver:
        zeros.add(batch)
        yield from rebatch([convert_batch(batch, converters, schema, where)], batch_rows)
    zeros.finish()


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
