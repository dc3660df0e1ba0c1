"""Smoke test of the running stack (scripts/stack up, or docker compose).

Connection settings come from the MOZART_* variables printed by `scripts/stack env`.
Everything created here has a unique name and is removed again.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration

SHOP_TABLES = ("customers", "products", "orders", "order_items")


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    if not os.environ.get("MOZART_TRINO_HOST"):
        pytest.skip('MOZART_TRINO_HOST is unset: run `scripts/stack up` and `eval "$(scripts/stack env)"`')
    return dict(os.environ)


@pytest.fixture
def trino_query(env) -> Iterator:
    import trino

    conn = trino.dbapi.connect(
        host=env["MOZART_TRINO_HOST"],
        port=int(env["MOZART_TRINO_PORT"]),
        user=env.get("MOZART_TRINO_USER", "mozart"),
    )

    def query(sql: str) -> list[list]:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall()

    try:
        yield query
    finally:
        conn.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def test_iceberg_table_roundtrip(trino_query):
    schema = unique("smoke")
    table = f"iceberg.{schema}.events"
    trino_query(f"CREATE SCHEMA iceberg.{schema}")
    try:
        trino_query(f"CREATE TABLE {table} (id bigint, ts timestamp(6), amount decimal(38, 9), note varchar)")
        trino_query(
            f"INSERT INTO {table} VALUES "
            "(1, TIMESTAMP '2026-11-25 01:02:03.123456', DECIMAL '12345.123456789', 'a'), "
            "(2, TIMESTAMP '2026-11-28 23:59:59.999999', DECIMAL '-0.000000001', NULL)"
        )
        rows = trino_query(f"SELECT id, ts, amount, note FROM {table} ORDER BY id")
        assert rows == [
            [1, dt.datetime(2026, 11, 25, 1, 2, 3, 123456), Decimal("12345.123456789"), "a"],
            [2, dt.datetime(2026, 11, 28, 23, 59, 59, 999999), Decimal("-0.000000001"), None],
        ]
    finally:
        trino_query(f"DROP TABLE IF EXISTS {table}")
        trino_query(f"DROP SCHEMA IF EXISTS iceberg.{schema}")


def s3_filesystem(env: dict[str, str]):
    from pyarrow import fs

    endpoint = urlsplit(env["MOZART_S3_ENDPOINT_URL"])
    return fs.S3FileSystem(
        access_key=env["MOZART_S3_ACCESS_KEY"],
        secret_key=env["MOZART_S3_SECRET_KEY"],
        region=env.get("MOZART_S3_REGION", "us-east-1"),
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme,
        force_virtual_addressing=False,  # path-style requests
    )


def test_trino_serves_the_iceberg_catalog_and_no_raw_catalog(trino_query):
    """Loads commit to the Iceberg REST catalog directly; nothing reads the lake through a Hive catalog any
    more, so the stack runs none (one catalog fewer to run and secure)."""
    catalogs = {row[0] for row in trino_query("SHOW CATALOGS")}
    assert "iceberg" in catalogs and "raw" not in catalogs


def test_postgres_acme_sample_shop(env):
    import psycopg2

    conn = psycopg2.connect(
        host=env["MOZART_PG_HOST"],
        port=int(env["MOZART_PG_PORT"]),
        user="acme_reader",
        password=env["ACME_DB_PASSWORD"],
        dbname="acme",
    )
    with closing(conn), closing(conn.cursor()) as cur:
        counts = {}
        for table in SHOP_TABLES:
            cur.execute(f"SELECT count(*) FROM public.{table}")
            counts[table] = cur.fetchone()[0]
    assert all(counts.values()), counts


def test_mariadb_globex_sample_shop(env):
    import pymysql

    conn = pymysql.connect(
        host=env["MOZART_MYSQL_HOST"],
        port=int(env["MOZART_MYSQL_PORT"]),
        user="globex_reader",
        password=env["GLOBEX_DB_PASSWORD"],
        database="globex",
    )
    with closing(conn), closing(conn.cursor()) as cur:
        counts = {}
        for table in SHOP_TABLES:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
    assert all(counts.values()), counts
