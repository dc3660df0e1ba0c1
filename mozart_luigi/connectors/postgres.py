"""PostgreSQL (psycopg2): REPEATABLE READ READ ONLY snapshot at UTC, and the PostgreSQL type mapping.

Types whose Python form is lossy or driver-dependent are rendered by the server in the select
(``CAST(x AS TEXT)``): ``json``/``jsonb`` (the stored JSON text, not a re-serialised dict), ``interval``
(ISO 8601, ``intervalstyle = iso_8601``, so months and days stay separate), ``uuid``, ``inet``/``cidr``/
``macaddr``, enums, ``bit``/``varbit``, ``time with time zone``, ranges and text search types; arrays of those
are cast to ``text[]``. See docs/types.md for the full table.
"""

from __future__ import annotations

__all__ = ["PostgresConnector", "postgres_plan"]

import re
from typing import Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql.ranges import AbstractMultiRange, AbstractRange
from sqlalchemy.sql import sqltypes

from mozart_luigi.config import TableConfig
from mozart_luigi.connectors._native_pg import is_transient as pg_is_transient
from mozart_luigi.connectors.base import Connector, SourceColumn
from mozart_luigi.types import ColumnPlan, UnsupportedType, decimal_plan, is_native, plain, text_values

APPLICATION_NAME = "mozart-luigi"  # pg_stat_activity shows it for both readers (a URL may set its own)
_AS_TEXT = (
    pg.ENUM,
    pg.JSON,
    pg.JSONB,
    sqltypes.JSON,
    pg.INTERVAL,
    sqltypes.Uuid,
    pg.INET,
    pg.CIDR,
    pg.MACADDR,
    pg.MACADDR8,
    pg.BIT,
    pg.TSVECTOR,
    pg.TSQUERY,
    AbstractRange,
    AbstractMultiRange,
    pg.HSTORE,
    pg.JSONPATH,
    pg.REGCLASS,
    pg.REGCONFIG,
    sqltypes.Enum,
)


_DOMAIN_BASES = sa.text(
    "SELECT a.attname, format_type(t.typbasetype, t.typtypmod) FROM pg_attribute a "
    "JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE a.attrelid = CAST(:rel AS regclass) AND t.typtype = 'd' AND a.attnum > 0 AND NOT a.attisdropped"
)
_NUMERIC = re.compile(r"numeric\((\d+)(?:,(\d+))?\)")


def _as_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.cast(column, sa.Text)


def _as_text_array(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.cast(column, pg.ARRAY(sa.Text))


def _money_as_numeric(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.cast(column, sa.Numeric)


class PostgresConnector(Connector):
    kind = "postgresql"
    driver = "postgresql+psycopg2"
    native_reader: ClassVar[str | None] = "adbc-postgresql"
    session_statements: ClassVar[tuple[str, ...]] = (
        "SET LOCAL TIME ZONE 'UTC'",
        "SET LOCAL intervalstyle = 'iso_8601'",
    )
    snapshot_statements: ClassVar[tuple[str, ...]] = (
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        *session_statements,
    )

    def connect_args(self) -> dict[str, Any]:
        """psycopg2 settings; they override the URL's query, so an ``application_name`` there is kept."""
        name = self.url().query.get("application_name", APPLICATION_NAME)
        return {"connect_timeout": self.source.connect_timeout, "application_name": name}

    def native_url(self) -> sa.URL:
        """libpq (ADBC) takes the same settings from the URL: connect timeout, application name."""
        url = self.url()
        defaults = {"connect_timeout": str(self.source.connect_timeout), "application_name": APPLICATION_NAME}
        return url.update_query_dict({k: v for k, v in defaults.items() if k not in url.query})

    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        if super().is_transient(exc):
            return True
        pgcode = getattr(exc.orig, "pgcode", None)
        return pg_is_transient(str(exc.orig), pgcode, operational=isinstance(exc, sa.exc.OperationalError))

    def error_code(self, orig: BaseException) -> str | None:
        code = getattr(orig, "pgcode", None)
        return f"SQLSTATE {code}" if code else None

    def reflect(self, conn: sa.Connection, table: TableConfig) -> list[SourceColumn]:
        """SQLAlchemy reflection, refined with domain base types (it drops their ``(p, s)``)."""
        columns = super().reflect(conn, table)
        if not any(isinstance(c.type, pg.DOMAIN) for c in columns):
            return columns
        bases: dict[str, str] = dict(conn.execute(_DOMAIN_BASES, {"rel": self.qualified_name(table)}).tuples().all())
        return [SourceColumn(c.name, c.type, c.nullable, bases.get(c.name)) for c in columns]

    def map_column(self, column: SourceColumn) -> ColumnPlan:
        return postgres_plan(column)

    def text_plan(self, column: SourceColumn) -> ColumnPlan:
        """The ``string`` override, for any column: ``CAST(col AS TEXT)``, the type's own text output (both
        readers receive the server's text; ``numeric`` keeps every digit, ``1E-12`` is ``0.000000000001``)."""
        try:
            source = postgres_plan(column).source_type
        except UnsupportedType:
            source = self.type_name(column)
        return ColumnPlan(
            column.name,
            source,
            pa.string(),
            text_values,
            _as_text,
            note="type override string: server cast to text",
            source_nullable=column.nullable,
        )


def postgres_plan(column: SourceColumn) -> ColumnPlan:
    """The PostgreSQL mapping of one reflected column (domains map like their base type)."""
    type_ = _domain_base(column) if isinstance(column.type, pg.DOMAIN) else column.type
    if isinstance(type_, sqltypes.ARRAY):
        return _array_plan(column, type_)
    return _scalar_plan(column, type_)


def _domain_base(column: SourceColumn) -> sa.types.TypeEngine[Any]:
    """A domain's base type, with the numeric ``(p, s)`` the catalog query found (``column.detail``)."""
    assert isinstance(column.type, pg.DOMAIN)  # the caller's check
    base = column.type.data_type
    match = _NUMERIC.fullmatch(column.detail or "")
    if match and isinstance(base, sqltypes.Numeric) and not isinstance(base, sqltypes.Float):
        return sa.Numeric(int(match.group(1)), int(match.group(2) or 0))
    return base


def _scalar_plan(column: SourceColumn, type_: sa.types.TypeEngine[Any]) -> ColumnPlan:
    name, nullable, source = column.name, column.nullable, _type_name(type_)
    if isinstance(type_, pg.MONEY):
        return ColumnPlan(
            name,
            source,
            pa.decimal128(19, 2),
            plain(pa.decimal128(19, 2)),
            _money_as_numeric,
            note="money cast to numeric (2 fractional digits verified)",
            source_nullable=nullable,
        )
    if isinstance(type_, pg.TIME) and type_.timezone:
        return ColumnPlan(
            name,
            source,
            pa.string(),
            text_values,
            _as_text,
            note="time with time zone as text",
            source_nullable=nullable,
        )
    if isinstance(type_, _AS_TEXT):
        return ColumnPlan(name, source, pa.string(), text_values, _as_text, source_nullable=nullable)
    if isinstance(type_, sqltypes.Numeric) and not isinstance(type_, sqltypes.Float):
        return decimal_plan(name, source, type_.precision, type_.scale, source_nullable=nullable)
    arrow_type = _native_arrow_type(type_)
    if arrow_type is None:
        raise UnsupportedType("no exact Arrow mapping for this PostgreSQL type")
    return ColumnPlan(name, source, arrow_type, plain(arrow_type), source_nullable=nullable)


def _native_arrow_type(type_: sa.types.TypeEngine[Any]) -> pa.DataType | None:
    """Types psycopg2 returns as the Python objects Arrow converts exactly."""
    checks: tuple[tuple[type | tuple[type, ...], pa.DataType], ...] = (
        (sqltypes.Boolean, pa.bool_()),
        (sqltypes.SmallInteger, pa.int16()),
        (sqltypes.BigInteger, pa.int64()),
        (pg.OID, pa.int64()),
        (sqltypes.Integer, pa.int32()),
        ((sqltypes.REAL,), pa.float32()),
        (sqltypes.Float, pa.float64()),
        (sqltypes.DateTime, pa.timestamp("us", tz="UTC" if getattr(type_, "timezone", False) else None)),
        (sqltypes.Date, pa.date32()),
        (sqltypes.Time, pa.time64("us")),
        (sqltypes._Binary, pa.binary()),
        (sqltypes.String, pa.string()),
    )
    for cls, arrow_type in checks:
        if isinstance(type_, cls):
            return arrow_type
    return None


def _array_plan(column: SourceColumn, type_: sqltypes.ARRAY[Any]) -> ColumnPlan:
    item = SourceColumn(column.name, type_.item_type, True)
    source = _type_name(type_)
    try:
        inner: ColumnPlan | None = postgres_plan(item)
    except UnsupportedType:
        inner = None
    if inner is not None and inner.expression is None and is_native(inner.convert):
        list_type = pa.list_(inner.arrow_type)
        return ColumnPlan(column.name, source, list_type, plain(list_type), source_nullable=column.nullable)
    list_type = pa.list_(pa.string())
    return ColumnPlan(
        column.name,
        source,
        list_type,
        plain(list_type),
        _as_text_array,
        note="array elements rendered as text",
        source_nullable=column.nullable,
    )


def _type_name(type_: sa.types.TypeEngine[Any]) -> str:
    try:
        return type_.compile(dialect=pg.dialect())
    except sa.exc.CompileError:
        return type(type_).__name__
