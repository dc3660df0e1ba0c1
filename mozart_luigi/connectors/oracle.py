"""Oracle (python-oracledb, thin mode): read-only transaction at session time zone UTC, and the type mapping.

``NUMBER`` is decimal in Oracle, so it is never fetched as a float: :func:`output_type_handler` (installed on
the snapshot connection, replacing SQLAlchemy's) returns ``NUMBER`` as ``Decimal`` — or ``int`` for
``NUMBER(p<=18, 0)`` — and LOBs as ``str``/``bytes`` so no LOB locator outlives its row. ``TIMESTAMP WITH
TIME ZONE`` is selected as ``SYS_EXTRACT_UTC(col)`` (the driver drops the offset). ``DATE`` carries a time, so
it maps to a timestamp. ``TIMESTAMP(p>6)`` would lose digits in the driver and is refused.
"""

from __future__ import annotations

__all__ = ["OracleConnector", "oracle_plan", "output_type_handler"]

import decimal
import re
from typing import Any, ClassVar

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import oracle
from sqlalchemy.engine import URL
from sqlalchemy.sql import sqltypes

from mozart_luigi.config import TableConfig
from mozart_luigi.connectors.base import Connector, SourceColumn
from mozart_luigi.types import ColumnPlan, UnsupportedType, decimal_plan, plain

_TRANSIENT = (
    "DPY-6005",
    "DPY-6000",
    "DPY-4011",
    "ORA-12541",
    "ORA-12170",
    "ORA-12514",
    "ORA-12528",
    "ORA-12537",
    "ORA-03113",
    "ORA-03114",
    "ORA-03135",
    "ORA-01033",
    "ORA-01034",
    "ORA-12516",
)
_TIMESTAMP_DETAILS = sa.text(
    "SELECT column_name, data_type FROM all_tab_columns "
    "WHERE owner = :owner AND table_name = :table_name AND data_type LIKE 'TIMESTAMP%'"
)
_FRACTION = re.compile(r"TIMESTAMP\((\d)\)")


def output_type_handler(cursor: Any, metadata: Any) -> Any:
    """NUMBER -> Decimal (int for NUMBER(p<=18,0)); CLOB/NCLOB -> str; BLOB -> bytes. Else the default."""
    import oracledb

    code = metadata.type_code
    if code is oracledb.DB_TYPE_NUMBER:
        if metadata.scale == 0 and 0 < (metadata.precision or 0) <= 18:
            return cursor.var(int, arraysize=cursor.arraysize)
        return cursor.var(decimal.Decimal, arraysize=cursor.arraysize)
    lob_as = {
        oracledb.DB_TYPE_CLOB: oracledb.DB_TYPE_LONG,
        oracledb.DB_TYPE_NCLOB: oracledb.DB_TYPE_LONG_NVARCHAR,
        oracledb.DB_TYPE_BLOB: oracledb.DB_TYPE_LONG_RAW,
    }.get(code)
    if lob_as is not None:
        return cursor.var(lob_as, arraysize=cursor.arraysize)
    return None


def _utc(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.sys_extract_utc(column)


class OracleConnector(Connector):
    kind = "oracle"
    driver = "oracle+oracledb"
    snapshot_statements: ClassVar[tuple[str, ...]] = (
        "ALTER SESSION SET TIME_ZONE = 'UTC'",
        "SET TRANSACTION READ ONLY",
    )

    def url(self) -> URL:
        url = super().url()
        if self.source.url is None and self.source.service_name:
            url = url.set(database=None).update_query_dict({"service_name": self.source.service_name})
        return url

    def connect_args(self) -> dict[str, Any]:
        return {"tcp_connect_timeout": float(self.source.connect_timeout)}

    def prepare_dbapi_connection(self, dbapi_connection: Any) -> None:
        dbapi_connection.outputtypehandler = output_type_handler

    def reflect(self, conn: sa.Connection, table: TableConfig) -> list[SourceColumn]:
        """SQLAlchemy reflection, refined with the fractional precision of TIMESTAMP columns it drops."""
        columns = super().reflect(conn, table)
        dialect = conn.dialect
        owner = self.schema_for(table) or sa.inspect(conn).default_schema_name
        params = {
            "owner": dialect.denormalize_name(owner),  # type: ignore[arg-type]  # None passes through (SQLAlchemy types it str)
            "table_name": dialect.denormalize_name(table.source_name),
        }
        details = {
            dialect.normalize_name(name): data_type for name, data_type in conn.execute(_TIMESTAMP_DETAILS, params)
        }
        return [SourceColumn(c.name, c.type, c.nullable, details.get(c.name)) for c in columns]

    def is_transient(self, exc: sa.exc.DBAPIError) -> bool:
        return super().is_transient(exc) or any(code in str(exc.orig) for code in _TRANSIENT)

    def error_code(self, orig: BaseException) -> str | None:
        args = getattr(orig, "args", ())
        return getattr(args[0], "full_code", None) if args else None

    def map_column(self, column: SourceColumn) -> ColumnPlan:
        return oracle_plan(column)


def oracle_plan(column: SourceColumn) -> ColumnPlan:
    """The Oracle mapping of one reflected column."""
    t, name, nullable = column.type, column.name, column.nullable
    source = column.detail or _type_name(t)
    numeric = _numeric_plan(column, source)
    if numeric is not None:
        return numeric
    if isinstance(t, sqltypes.DateTime):
        arrow_type, expression, note = _timestamp(t, column.detail)
        return ColumnPlan(name, source, arrow_type, plain(arrow_type), expression, note, nullable)
    if isinstance(t, oracle.INTERVAL | oracle.ROWID | oracle.BFILE):
        raise UnsupportedType("no exact Arrow mapping for this Oracle type")
    if isinstance(t, sqltypes._Binary):  # BLOB, RAW
        return ColumnPlan(name, source, pa.binary(), plain(pa.binary()), source_nullable=nullable)
    if isinstance(t, sqltypes.String):  # VARCHAR2, NVARCHAR2, CHAR, NCHAR, CLOB, NCLOB, LONG
        return ColumnPlan(name, source, pa.string(), plain(pa.string()), source_nullable=nullable)
    raise UnsupportedType("no exact Arrow mapping for this Oracle type")


def _numeric_plan(column: SourceColumn, source: str) -> ColumnPlan | None:
    t, name, nullable = column.type, column.name, column.nullable
    if isinstance(t, oracle.BINARY_DOUBLE | oracle.BINARY_FLOAT):
        arrow_type = pa.float64() if isinstance(t, oracle.BINARY_DOUBLE) else pa.float32()
        return ColumnPlan(name, source, arrow_type, plain(arrow_type), source_nullable=nullable)
    if isinstance(t, sqltypes.Float):  # FLOAT(b), DOUBLE PRECISION, REAL: decimal NUMBER subtypes in Oracle
        return decimal_plan(name, source, None, None, source_nullable=nullable)
    if isinstance(t, sqltypes.Numeric):  # NUMBER(p, s) (also an Integer subclass: check first)
        return _number_plan(name, source, t.precision, t.scale, nullable)
    if isinstance(t, sqltypes.Integer):  # INTEGER = NUMBER(*, 0): up to 38 digits
        return decimal_plan(name, source, 38, 0, source_nullable=nullable)
    return None


def _number_plan(name: str, source: str, precision: int | None, scale: int | None, nullable: bool) -> ColumnPlan:
    if precision is None and not scale:
        return decimal_plan(name, source, None, None, source_nullable=nullable)
    if precision is None:  # NUMBER(*, s)
        return decimal_plan(name, source, 38, scale, source_nullable=nullable)
    if not scale and precision <= 18:  # fetched as int by output_type_handler
        return ColumnPlan(
            name, source, pa.int64(), plain(pa.int64()), source_nullable=nullable, source_decimal=(precision, 0)
        )
    return decimal_plan(name, source, precision, scale, source_nullable=nullable)


def _timestamp(t: sa.types.TypeEngine[Any], detail: str | None) -> tuple[pa.DataType, Any, str | None]:
    """(Arrow type, select expression, note) of DATE / TIMESTAMP [WITH [LOCAL] TIME ZONE]."""
    match = _FRACTION.search(detail or "")
    if match and int(match.group(1)) > 6:
        raise UnsupportedType(f"{detail} has more fractional digits than microseconds; cast to TIMESTAMP(6)")
    if getattr(t, "timezone", False):
        return pa.timestamp("us", tz="UTC"), _utc, "selected as SYS_EXTRACT_UTC(...)"
    if getattr(t, "local_timezone", False):  # returned in the session time zone, which is UTC
        return pa.timestamp("us", tz="UTC"), None, None
    if isinstance(t, oracle.DATE):
        return pa.timestamp("us"), None, "Oracle DATE carries a time of day: stored as a timestamp"
    return pa.timestamp("us"), None, None


def _type_name(type_: sa.types.TypeEngine[Any]) -> str:
    try:
        return type_.compile(dialect=oracle.dialect())
    except sa.exc.CompileError:
        return type(type_).__name__
