"""Driver errors are translated at one boundary: transient vs terminal, tenant/host/table named, no secret."""

from __future__ import annotations

import socket

import oracledb
import psycopg2
import pymysql
import pytest
import sqlalchemy as sa

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig
from mozart_luigi.connectors import connector_for
from mozart_luigi.errors import SourceError, SourceUnavailableError
from mozart_luigi.secrets import Secret

pytestmark = pytest.mark.unit
PASSWORD = "pw-Hx81-secret"
TABLE = TableConfig(name="orders", source_name="Orders", mode="full")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def connector(kind: str, port: int = 5432, sleeps: list[float] | None = None) -> object:
    source = SourceConfig(
        kind=kind,
        host="127.0.0.1",
        port=port,
        database="acme",
        user="reader",
        password=Secret(PASSWORD),
        service_name="FREEPDB1",
        connect_timeout=2,
    )
    tenant = TenantConfig(id="acme", source=source, tables=("orders",))
    return connector_for(tenant, sleep=(sleeps if sleeps is not None else []).append, base_delay=0.01)


def wrapped(orig: Exception) -> sa.exc.DBAPIError:
    return sa.exc.OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_unreachable_database_is_retried_then_fails_as_unavailable(kind: str) -> None:
    sleeps: list[float] = []
    port = closed_port()
    with pytest.raises(SourceUnavailableError) as info:
        connector(kind, port, sleeps).connect(TABLE)  # type: ignore[attr-defined]
    assert len(sleeps) == 3, "4 attempts, 3 backoff sleeps"
    message = str(info.value)
    assert message.startswith(f"tenant 'acme', table 'orders': cannot connect to {kind}")
    assert f"127.0.0.1:{port}" in message and "source table 'Orders'" in message
    assert PASSWORD not in message and info.value.retryable


@pytest.mark.parametrize(
    ("kind", "orig", "transient"),
    [
        (
            "postgresql",
            psycopg2.OperationalError('connection to server at "db", port 5432 failed: Connection refused'),
            True,
        ),
        ("postgresql", psycopg2.OperationalError('could not translate host name "db" to address'), True),
        (
            "postgresql",
            psycopg2.OperationalError('FATAL:  password authentication failed for user "reader"'),
            False,
        ),
        ("postgresql", psycopg2.OperationalError('FATAL:  database "acme" does not exist'), False),
        ("mysql", pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db'"), True),
        ("mysql", pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
        (
            "mysql",
            pymysql.err.OperationalError(1045, "Access denied for user 'reader'@'x' (using password: YES)"),
            False,
        ),
        ("mysql", pymysql.err.OperationalError(1049, "Unknown database 'acme'"), False),
        ("oracle", oracledb.OperationalError("DPY-6005: cannot connect to database"), True),
        ("oracle", oracledb.OperationalError("ORA-12541: Cannot connect. No listener"), True),
        (
            "oracle",
            oracledb.DatabaseError("ORA-01017: invalid credential or not authorized; logon denied"),
            False,
        ),
        ("sqlite", __import__("sqlite3").OperationalError("database is locked"), True),
        ("sqlite", __import__("sqlite3").OperationalError("unable to open database file"), False),
    ],
)
def test_transient_or_terminal(kind: str, orig: Exception, transient: bool) -> None:
    error = connector(kind).translate(wrapped(orig), "cannot connect to", TABLE)  # type: ignore[attr-defined]
    assert isinstance(error, SourceUnavailableError) is transient
    assert isinstance(error, SourceError) and error.retryable is transient
    assert str(error).startswith("tenant 'acme', table 'orders': cannot connect to ")


def test_driver_messages_are_redacted_and_codes_kept() -> None:
    orig = pymysql.err.OperationalError(1045, f"Access denied (password {PASSWORD} rejected)")
    error = connector("mysql").translate(wrapped(orig), "cannot connect to", TABLE)  # type: ignore[attr-defined]
    assert PASSWORD not in str(error) and "***" in str(error) and str(error).endswith("[MySQL error 1045]")


def test_password_inside_a_url_is_redacted_too() -> None:
    source = SourceConfig(kind="mysql", url=Secret(f"mysql+pymysql://reader:{PASSWORD}@db:3306/acme"))
    conn = connector_for(TenantConfig(id="acme", source=source, tables=()))
    orig = pymysql.err.OperationalError(1045, f"bad login reader/{PASSWORD}")
    error = conn.translate(wrapped(orig), "cannot connect to", None)
    assert PASSWORD not in str(error) and "reader/***" in str(error)
    assert str(error).startswith("tenant 'acme': cannot connect to mysql+pymysql://reader:***@db:3306/acme")


def test_sqlstate_is_kept_for_postgres() -> None:
    class WithCode(psycopg2.Error):
        pgcode = "42P01"

    error = connector("postgresql").translate(wrapped(WithCode("relation does not exist")), "cannot read", TABLE)  # type: ignore[attr-defined]
    assert str(error).endswith("[SQLSTATE 42P01]") and not error.retryable
