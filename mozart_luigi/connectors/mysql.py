"""MySQL / MariaDB (PyMySQL): consistent-snapshot transaction at ``time_zone = '+00:00'``; type mapping.

Policies (see docs/types.md): unsigned integers widen to the next signed type (``BIGINT UNSIGNED`` ->
``decimal(20,0)``); ``TINYINT(1)`` stays ``int8`` (MySQL's BOOL alias holds -128..127, so a boolean would be
lossy); ``DECIMAL(p>38)`` is kept as exact text; zero or partial dates (``0000-00-00``), which PyMySQL hands
back as ``str`` because Python cannot represent them, become NULL and are counted in the manifest
(``zero_dates_nulled``); ``TIME`` must be a time of day; ``BIT(n)`` becomes bool (n = 1) or an integer.
"""

from __future__ import annotations

__all__ = ["MySQLConnector", "mysql_plan"]

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeGuard

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL
from sqlalchemy.sql import sqltypes

from mozart_luigi.config import TableConfig
from mozart_luigi.connectors._native_mysql import DEFAULT_SESSION, FLOAT_AS_DOUBLE, TRANSIENT_CODES
from mozart_luigi.connectors.base import Connector, SourceColumn
from mozart_luigi.types import (
    ColumnPlan,
    ColumnStats,
    Converter,
    UnsupportedType,
    decimal_plan,
    duration_micros_from_timedelta,
    plain,
    text_values,
    time_of_day_from_timedelta,
    zero_dates_nulled,
)

_INTEGERS: tuple[tuple[type, pa.DataType, pa.DataType], ...] = (
    # (type, signed -> arrow, unsigned -> arrow): unsigned widens to the next signed type
    (mysql.TINYINT, pa.int8(), pa.int16()),
    (mysql.SMALLINT, pa.int16(), pa.int32()),
    (mysql.MEDIUMINT, pa.int32(), pa.int32()),
    (mysql.BIGINT, pa.int64(), pa.decimal128(20, 0)),
    (sqltypes.Integer, pa.int32(), pa.int64()),
)


class MySQLConnector(Connector):
    kind = "mysql"
    driver = "mysql+pymysql"
    native_reader: ClassVar[str | None] = "connectorx-mysql"
    #: UTC session (TIMESTAMPs read as instants); a slow consumer (S3 upload) must not cut the stream
    session_statements: ClassVar[tuple[str, ...]] = DEFAULT_SESSION
    snapshot_statements: ClassVar[tuple[str, ...]] = (
        *session_statements,
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    )

    def url(self) -> URL:
        url = super().url()
        return url if "charset" in url.query else url.update_query_dict({"charset": "utf8mb4"})

    def connect_args(self) -> dict[str, Any]:
        return {"connect_timeout": self.source.connect_timeout}

    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        return super().is_transient(exc) or _code(exc.orig) in TRANSIENT_CODES

    def reflect(self, conn: sa.Connection, table: TableConfig) -> list[SourceColumn]:
        """SQLAlchemy reflection with each column's true name.

        SQLAlchemy parses ``SHOW CREATE TABLE`` and returns a name as written between its backticks, where a
        backtick in the name is doubled (```a``b``` for ``a`b``): undo that escaping, so the name is quoted
        once from its true spelling in queries and ``include``/``exclude`` can name it.
        """
        return [_true_name(c) for c in super().reflect(conn, table)]

    def error_code(self, orig: BaseException) -> str | None:
        code = _code(orig)
        return f"MySQL error {code}" if code else None

    def map_column(self, column: SourceColumn) -> ColumnPlan:
        return mysql_plan(column)

    def text_plan(self, column: SourceColumn) -> ColumnPlan:
        """The ``string`` override of a ``DECIMAL`` or ``TIME``: ``CAST(col AS CHAR)``, the server's text
        (``'-838:59:59'``, ``'1.500000000000000000000000000000'``), on both readers."""
        t = column.type
        if not (_is_decimal(t) or isinstance(t, sqltypes.Time)):
            raise UnsupportedType("'string' applies to DECIMAL and TIME columns on MySQL/MariaDB")
        return ColumnPlan(
            column.name,
            _type_name(t),
            pa.string(),
            text_values,
            _as_char,
            note="type override string: server cast to text",
            source_nullable=column.nullable,
        )

    def duration_plan(self, column: SourceColumn) -> ColumnPlan:
        """The ``duration_us`` override of a ``TIME`` (a signed duration up to 838:59:59): signed microseconds."""
        if not isinstance(column.type, sqltypes.Time):
            raise UnsupportedType("'duration_us' applies to TIME columns only")
        return ColumnPlan(
            column.name,
            _type_name(column.type),
            pa.int64(),
            duration_micros_from_timedelta,
            note="type override duration_us: TIME as signed microseconds",
            source_nullable=column.nullable,
        )


def _true_name(column: SourceColumn) -> SourceColumn:
    name = column.name.replace("``", "`")
    return column if name == column.name else SourceColumn(name, column.type, column.nullable, column.detail)


def _code(orig: BaseException | None) -> int | None:
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def mysql_plan(column: SourceColumn) -> ColumnPlan:
    """The MySQL/MariaDB mapping of one reflected column: the first rule whose type matches wins."""
    t, name, nullable = column.type, column.name, column.nullable
    source = _type_name(t)
    if _is_decimal(t):
        return decimal_plan(name, source, t.precision, t.scale, source_nullable=nullable)
    if isinstance(t, mysql.FLOAT):
        # the text protocol renders FLOAT with 6 significant digits (0.142857): select it as DOUBLE, whose
        # 17-digit rendering is the stored float32 value exactly
        return ColumnPlan(
            name, source, pa.float32(), plain(pa.float32()), expression=_as_double, source_nullable=nullable
        )
    for cls, rule in _RULES:
        if isinstance(t, cls):
            arrow_type, convert, note = rule(t)
            return ColumnPlan(
                name, source, arrow_type, convert or plain(arrow_type), note=note, source_nullable=nullable
            )
    raise UnsupportedType("no exact Arrow mapping for this MySQL type")


_Mapped = tuple[pa.DataType, Converter | None, str | None]


def _is_decimal(t: sa.types.TypeEngine[Any]) -> TypeGuard[sqltypes.Numeric[Any]]:
    return isinstance(t, sqltypes.Numeric) and not isinstance(t, sqltypes.Float)


def _as_char(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.cast(column, sa.CHAR)


def _as_double(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``col + 0e0``: computed in double precision, so the server sends the stored float32 exactly (a CAST
    to DOUBLE needs MariaDB >= 10.4.5 / MySQL >= 8.0.17 and a known server version at compile time)."""
    return column + sa.literal_column(FLOAT_AS_DOUBLE, type_=sa.Float())


def _integer(t: Any) -> _Mapped:
    for cls, signed, unsigned in _INTEGERS:
        if isinstance(t, cls):
            return (unsigned if getattr(t, "unsigned", False) else signed), None, None
    raise UnsupportedType("unknown integer type")  # pragma: no cover - sqltypes.Integer is last


def _bit(t: Any) -> _Mapped:
    length = t.length or 1
    arrow_type = pa.bool_() if length == 1 else pa.int64() if length < 64 else pa.decimal128(20, 0)
    return arrow_type, _bits(arrow_type), None


def _zero_dates(arrow_type: pa.DataType) -> _Mapped:
    return arrow_type, zero_dates_nulled(arrow_type), None


_RULES: tuple[tuple[type | tuple[type, ...], Callable[[Any], _Mapped]], ...] = (
    (mysql.BIT, _bit),
    (sqltypes.Boolean, lambda t: (pa.int8(), _ints(pa.int8()), "BOOL is TINYINT(1), which holds -128..127")),
    (mysql.YEAR, lambda t: (pa.int16(), None, None)),
    (sqltypes.Float, lambda t: (pa.float32() if isinstance(t, mysql.FLOAT) else pa.float64(), None, None)),
    (sqltypes.Integer, _integer),
    (sqltypes.TIMESTAMP, lambda t: _zero_dates(pa.timestamp("us", tz="UTC"))),  # session at +00:00
    (sqltypes.DateTime, lambda t: _zero_dates(pa.timestamp("us"))),
    (sqltypes.Date, lambda t: _zero_dates(pa.date32())),
    (sqltypes.Time, lambda t: (pa.time64("us"), time_of_day_from_timedelta, "TIME must be a time of day")),
    (sqltypes._Binary, lambda t: (pa.binary(), None, None)),
    ((sqltypes.String, sqltypes.JSON, sqltypes.Enum), lambda t: (pa.string(), None, None)),  # also SET
)


def _bits(arrow_type: pa.DataType) -> Any:
    """``BIT(n)`` arrives as big-endian bytes."""

    def convert(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
        ints = [v if v is None or isinstance(v, int) else int.from_bytes(v, "big") for v in values]
        if pa.types.is_boolean(arrow_type):
            return pa.array([None if v is None else bool(v) for v in ints], type=arrow_type)
        return pa.array(ints, type=arrow_type)

    return convert


def _ints(arrow_type: pa.DataType) -> Any:
    def convert(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
        return pa.array([v if v is None else int(v) for v in values], type=arrow_type)

    return convert


def _type_name(type_: sa.types.TypeEngine[Any]) -> str:
    try:
        return type_.compile(dialect=mysql.dialect())
    except sa.exc.CompileError:
        return type(type_).__name__
