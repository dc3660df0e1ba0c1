"""Oracle without a server: compiled SQL, the type mapping and the output type handler we install."""

from __future__ import annotations

import datetime as dt
import decimal
from types import SimpleNamespace
from typing import Any

import oracledb
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import oracle

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors import OracleConnector, Snapshot, SourceColumn, Window, connector_for
from mozart_luigi.connectors.oracle import _TIMESTAMP_DETAILS, oracle_plan, output_type_handler
from mozart_luigi.errors import TypeMappingError
from mozart_luigi.secrets import Secret
from mozart_luigi.types import UnsupportedType

pytestmark = pytest.mark.unit
SOURCE = SourceConfig(
    kind="oracle",
    host="db",
    port=1521,
    service_name="FREEPDB1",
    user="initech",
    password=Secret("pw-oracle-1"),
    schema="INITECH",
)


def connector() -> OracleConnector:
    return connector_for(TenantConfig(id="initech", source=SOURCE, tables=("orders",)))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("type_", "arrow_type"),
    [
        (oracle.NUMBER(), pa.decimal128(38, 10)),  # NUMBER without precision: decimal, never float
        (oracle.NUMBER(10, 0), pa.int64()),
        (oracle.NUMBER(18, 0), pa.int64()),
        (oracle.NUMBER(19, 0), pa.decimal128(19, 0)),
        (oracle.NUMBER(38, 0), pa.decimal128(38, 0)),
        (oracle.NUMBER(12, 2), pa.decimal128(12, 2)),
        (oracle.NUMBER(None, 2), pa.decimal128(38, 2)),
        (oracle.NUMBER(5, -2), pa.decimal128(7, 0)),
        (sa.INTEGER(), pa.decimal128(38, 0)),  # INTEGER is NUMBER(*,0): 38 digits
        (oracle.FLOAT(binary_precision=126), pa.decimal128(38, 10)),
        (sa.DOUBLE_PRECISION(), pa.decimal128(38, 10)),
        (oracle.BINARY_DOUBLE(), pa.float64()),
        (oracle.BINARY_FLOAT(), pa.float32()),
        (oracle.DATE(), pa.timestamp("us")),  # DATE carries a time of day
        (oracle.TIMESTAMP(), pa.timestamp("us")),
        (oracle.TIMESTAMP(timezone=True), pa.timestamp("us", tz="UTC")),
        (oracle.TIMESTAMP(local_timezone=True), pa.timestamp("us", tz="UTC")),
        (oracle.VARCHAR2(20), pa.string()),
        (oracle.NVARCHAR2(20), pa.string()),
        (oracle.CLOB(), pa.string()),
        (oracle.NCLOB(), pa.string()),
        (oracle.LONG(), pa.string()),
        (oracle.BLOB(), pa.binary()),
        (oracle.RAW(16), pa.binary()),
    ],
)
def test_oracle_mapping(type_: Any, arrow_type: pa.DataType) -> None:
    assert oracle_plan(SourceColumn("c", type_)).arrow_type == arrow_type


def test_timestamp_with_time_zone_is_selected_in_utc() -> None:
    plan = oracle_plan(SourceColumn("changed", oracle.TIMESTAMP(timezone=True)))
    sql = str(sa.select(plan.select_expression(sa.column("changed"))).compile(dialect=oracle.dialect()))
    assert sql.startswith("SELECT sys_extract_utc(changed) AS changed")


@pytest.mark.parametrize("type_", [oracle.INTERVAL(), oracle.ROWID(), sa.types.NullType()])
def test_types_without_exact_mapping_are_refused(type_: Any) -> None:
    with pytest.raises(UnsupportedType):
        oracle_plan(SourceColumn("c", type_))


def test_timestamp_beyond_microseconds_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeMappingError, match=r"column 'c' of type TIMESTAMP\(9\) .*cast to TIMESTAMP\(6\)"):
        connector().plan(SourceColumn("c", oracle.TIMESTAMP(), detail="TIMESTAMP(9)"), TableConfig("t", "t"))
    ok = oracle_plan(SourceColumn("c", oracle.TIMESTAMP(timezone=True), detail="TIMESTAMP(6) WITH TIME ZONE"))
    assert ok.arrow_type == pa.timestamp("us", tz="UTC") and ok.source_type == "TIMESTAMP(6) WITH TIME ZONE"


def test_compiled_query_quotes_hostile_names_and_binds_the_window() -> None:
    conn = connector()
    columns = [
        SourceColumn("id", oracle.NUMBER(10, 0)),
        SourceColumn("changed", oracle.TIMESTAMP(timezone=True)),
        SourceColumn("Order Note", oracle.CLOB()),
        SourceColumn("select", oracle.VARCHAR2(5)),
    ]
    table = TableConfig(name="order_items", source_name="Order Items", mode="incremental", cursor="changed")
    snap = Snapshot(conn, None, table, Window.for_date(dt.date(2026, 11, 25)), columns)  # type: ignore[arg-type]
    query = snap.query.compile(dialect=conn.engine.dialect)
    sql = " ".join(query.string.split())
    assert sql == (
        'SELECT "INITECH"."Order Items".id, sys_extract_utc("INITECH"."Order Items".changed) AS changed, '
        '"INITECH"."Order Items"."Order Note", "INITECH"."Order Items"."select" FROM "INITECH"."Order Items" '
        'WHERE "INITECH"."Order Items".changed >= :window_start '
        'AND "INITECH"."Order Items".changed < :window_end'
    )
    assert query.params == {
        "window_start": dt.datetime(2026, 11, 25),
        "window_end": dt.datetime(2026, 11, 26),
    }
    count = " ".join(snap.count_query.compile(dialect=conn.engine.dialect).string.split())
    assert count.startswith('SELECT count(*) AS count_1 FROM "INITECH"."Order Items" WHERE')


def test_refinement_query_binds_owner_and_table() -> None:
    sql = str(_TIMESTAMP_DETAILS.compile(dialect=oracle.dialect()))
    assert ":owner" in sql and ":table_name" in sql and "all_tab_columns" in sql


def test_session_url_and_connect_args() -> None:
    conn = connector()
    assert conn.snapshot_statements == ("ALTER SESSION SET TIME_ZONE = 'UTC'", "SET TRANSACTION READ ONLY")
    url = conn.url()
    assert url.drivername == "oracle+oracledb" and url.database is None
    assert dict(url.query) == {"service_name": "FREEPDB1"} and "pw-oracle-1" not in repr(url)
    assert conn.connect_args() == {"tcp_connect_timeout": 10.0}


# ------------------------------------------------------------------------------------- type handler


class RecordingCursor:
    """Records what the handler asks ``cursor.var`` for (building a real Var needs a live connection)."""

    arraysize = 500

    def var(self, type_: Any, arraysize: int) -> tuple[Any, int]:
        return type_, arraysize


def info(type_code: Any, precision: int = 0, scale: int = 0) -> SimpleNamespace:
    return SimpleNamespace(type_code=type_code, precision=precision, scale=scale)


@pytest.mark.parametrize(
    ("metadata", "fetched_as"),
    [
        (info(oracledb.DB_TYPE_NUMBER, 0, -127), decimal.Decimal),  # NUMBER
        (info(oracledb.DB_TYPE_NUMBER, 38, 0), decimal.Decimal),  # INTEGER / NUMBER(38)
        (info(oracledb.DB_TYPE_NUMBER, 12, 2), decimal.Decimal),
        (info(oracledb.DB_TYPE_NUMBER, 126, -127), decimal.Decimal),  # FLOAT(126)
        (info(oracledb.DB_TYPE_NUMBER, 18, 0), int),
        (info(oracledb.DB_TYPE_CLOB), oracledb.DB_TYPE_LONG),
        (info(oracledb.DB_TYPE_NCLOB), oracledb.DB_TYPE_LONG_NVARCHAR),
        (info(oracledb.DB_TYPE_BLOB), oracledb.DB_TYPE_LONG_RAW),
        (info(oracledb.DB_TYPE_BINARY_DOUBLE), None),
        (info(oracledb.DB_TYPE_DATE), None),
        (info(oracledb.DB_TYPE_TIMESTAMP_TZ), None),
    ],
)
def test_output_type_handler(metadata: SimpleNamespace, fetched_as: Any) -> None:
    result = output_type_handler(RecordingCursor(), metadata)
    assert (result[0] if result else None) is fetched_as
    if result:
        assert result[1] == RecordingCursor.arraysize


def test_handler_is_installed_on_the_snapshot_connection() -> None:
    dbapi_connection = SimpleNamespace(outputtypehandler="sqlalchemy's")
    connector().prepare_dbapi_connection(dbapi_connection)
    assert dbapi_connection.outputtypehandler is output_type_handler
