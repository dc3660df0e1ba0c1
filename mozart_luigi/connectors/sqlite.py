"""SQLite (the local demo sources): read-only file, one read transaction, declared types -> Arrow.

SQLite is dynamically typed, so values are converted tolerantly but never lossily: dates and timestamps stored
as ISO text (``2026-11-25``, ``2026-11-25 10:00:00.123``, ``...T...Z``) or unix seconds are parsed; decimals
stored as REAL are read from their shortest repr; an integer column holding ``3.0`` gives 3, holding ``3.5``
fails. A column without a declared type is refused. Incremental windows compare ``datetime(cursor)`` (or
``date(cursor)``) so any ISO spelling falls on the right day.
"""

from __future__ import annotations

__all__ = ["SQLiteConnector", "sqlite_plan"]

import dataclasses
import datetime as dt
import decimal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.sql import sqltypes

from mozart_luigi.connectors.base import Connector, SourceColumn, Window
from mozart_luigi.types import ColumnPlan, ColumnStats, Converter, UnsupportedType, decimal_plan, decimal_text, plain

_ISO = "%Y-%m-%d %H:%M:%S"


class SQLiteConnector(Connector):
    kind = "sqlite"
    driver = "sqlite+pysqlite"
    snapshot_statements: ClassVar[tuple[str, ...]] = ("BEGIN",)  # count and rows see one snapshot

    def url(self) -> URL:
        if self.source.url is not None:
            return super().url()
        path = Path(self.source.path or self.source.database or "").expanduser().resolve()
        return URL.create(self.driver, database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})

    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        return "database is locked" in str(exc.orig)

    def map_column(self, column: SourceColumn) -> ColumnPlan:
        return sqlite_plan(column)

    def decimal_converter(self, arrow_type: pa.DataType) -> Converter:
        return _then(_to_decimal, plain(arrow_type))

    def decimal_text_converter(self) -> Converter:
        return _then(_to_decimal, decimal_text)

    def window_filter(
        self, column: sa.ColumnClause[Any], cursor: ColumnPlan, window: Window
    ) -> list[sa.ColumnElement[bool]]:
        if pa.types.is_date(cursor.arrow_type):
            value, start, end = (
                sa.func.date(column),
                window.start.date().isoformat(),
                window.end.date().isoformat(),
            )
        elif pa.types.is_timestamp(cursor.arrow_type):
            value, start, end = (
                sa.func.datetime(column),
                window.start.strftime(_ISO),
                window.end.strftime(_ISO),
            )
        else:
            raise ValueError(f"cursor column {cursor.name!r} is {cursor.source_type}: a date or timestamp is needed")
        return [value >= sa.bindparam("window_start", start), value < sa.bindparam("window_end", end)]


def sqlite_plan(column: SourceColumn) -> ColumnPlan:
    """The SQLite mapping of one reflected column (SQLAlchemy resolves declared types by affinity)."""
    t, name, nullable = column.type, column.name, column.nullable
    source = str(t) if not isinstance(t, sqltypes.NullType) else "(none)"
    if isinstance(t, sqltypes.Numeric) and not isinstance(t, sqltypes.Float):
        plan = decimal_plan(name, source, t.precision, t.scale, source_nullable=nullable)
        return dataclasses.replace(plan, convert=_then(_to_decimal, plan.convert))
    for cls, arrow_type, parse in _SIMPLE:
        if isinstance(t, cls):
            return ColumnPlan(name, source, arrow_type, _parsed(parse, arrow_type), source_nullable=nullable)
    raise UnsupportedType("declare a type for the column (INTEGER, REAL, NUMERIC(p,s), TEXT, DATE, ...)")


# --------------------------------------------------------------------------------------- value parsing


def _to_int(v: Any) -> int:
    if isinstance(v, bool | int):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    raise ValueError(f"{v!r} is not an integer")


def _to_bool(v: Any) -> bool:
    text = str(v).strip().lower()
    if text in ("1", "true", "t", "yes", "y", "1.0"):
        return True
    if text in ("0", "false", "f", "no", "n", "0.0"):
        return False
    raise ValueError(f"{v!r} is not a boolean")


def _to_float(v: Any) -> float:
    return float(v)


def _to_decimal(v: Any) -> decimal.Decimal:
    if isinstance(v, float):
        return decimal.Decimal(repr(v))
    return decimal.Decimal(str(v).strip() if isinstance(v, str) else v)


def _to_datetime(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=v)
    value = dt.datetime.fromisoformat(str(v).strip())
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _to_date(v: Any) -> dt.date:
    if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
        return v
    value = _to_datetime(v)
    if value.time() != dt.time():
        raise ValueError(f"{v!r} carries a time of day; declare the column DATETIME")
    return value.date()


def _to_time(v: Any) -> dt.time:
    return v if isinstance(v, dt.time) else dt.time.fromisoformat(str(v).strip())


def _to_text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v if isinstance(v, str) else str(v)


def _to_bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else _to_text(v).encode("utf-8")


_SIMPLE: tuple[tuple[type, pa.DataType, Callable[[Any], Any]], ...] = (
    (sqltypes.Boolean, pa.bool_(), _to_bool),
    (sqltypes.Integer, pa.int64(), _to_int),
    (sqltypes.Float, pa.float64(), _to_float),
    (sqltypes.DateTime, pa.timestamp("us"), _to_datetime),
    (sqltypes.Date, pa.date32(), _to_date),
    (sqltypes.Time, pa.time64("us"), _to_time),
    (sqltypes._Binary, pa.binary(), _to_bytes),
    (sqltypes.String, pa.string(), _to_text),
    (sqltypes.JSON, pa.string(), _to_text),
)


def _parsed(parse: Callable[[Any], Any], arrow_type: pa.DataType) -> Converter:
    def convert(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
        return pa.array([None if v is None else parse(v) for v in values], type=arrow_type)

    return convert


def _then(parse: Callable[[Any], Any], convert: Converter) -> Converter:
    def run(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
        return convert([None if v is None else parse(v) for v in values], stats)

    return run
