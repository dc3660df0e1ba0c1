"""Checksums on the stack (docs/late-rows.md, "Checksums"): PostgreSQL and MariaDB, each through its native
reader (ADBC / connectorx) and the SQLAlchemy row path (``native: false``), a ``full`` and an ``incremental``
table with integer and decimal columns (negative values, 64-bit values whose partial sums cancel, decimals
of 38 digits, an unbounded PostgreSQL ``numeric``). Each load passes its check in Trino; the sums the
manifest and the marker record equal plain SQL on the source, and the loaded day's sums in Trino.

Each test's tables live in a schema (PostgreSQL database ``acme``) or a database (MariaDB) of their own, and
the tenants are unique; everything is dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pipeline_helpers
import pytest
import sqlalchemy as sa
import yaml
from dbt_shop import build
from pipeline_helpers import Setup

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.errors import VerificationError
from mozart_luigi.lake import Lake
from mozart_luigi.targets import clear_marker_cache
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse import open_warehouse

pytestmark = pytest.mark.integration
setup = pipeline_helpers.made_setups
DAY = dt.date(2026, 11, 25)
BIG = "1234567890123456789012345678.0123456789"  # 38 digits
# (id, qty, delta, amount numeric(38,10), price numeric(12,2), loose unbounded numeric (PG) / decimal(30,10))
LEDGER = [
    (1, 5, -9_000_000_000_000_000_000, BIG, "-0.01", "12345678901234567890.123456789"),
    (2, -7, 9_000_000_000_000_000_000, "-999999999999999999999999999.9999999999", "19.99", "-0.000000001"),
    (3, None, -3, "0.0000000001", None, None),
    (4, 2_147_483_647, 9_000_000_000_000_000_000, "-1", "-99999.99", "1"),
]
# (id, qty, price, moved_at): the last row is the next day's (outside the window)
MOVES = [
    (1, 10, "-5.50", dt.datetime(2026, 11, 25, 0, 0, 0)),
    (2, -4, "1000000000.01", dt.datetime(2026, 11, 25, 23, 59, 59, 999999)),
    (3, 1000, "7.00", dt.datetime(2026, 11, 26, 0, 0, 0)),
]
TABLES = {
    "ledger": {"mode": "full", "primary_key": ["id"], "checksum": ["qty", "delta", "amount", "price", "loose"]},
    "moves": {"mode": "incremental", "cursor": "moved_at", "primary_key": ["id"], "checksum": ["qty", "price"]},
}
DDL = {
    "postgresql": [
        "CREATE TABLE {s}.ledger (id integer PRIMARY KEY, qty integer, delta bigint, amount numeric(38,10), "
        "price numeric(12,2), loose numeric)",
        "CREATE TABLE {s}.moves (id integer PRIMARY KEY, qty smallint, price numeric(12,2), moved_at timestamp)",
    ],
    "mysql": [
        "CREATE TABLE {s}.ledger (id INT PRIMARY KEY, qty INT, delta BIGINT, amount DECIMAL(38,10), "
        "price DECIMAL(12,2), loose DECIMAL(30,10))",
        "CREATE TABLE {s}.moves (id INT PRIMARY KEY, qty SMALLINT, price DECIMAL(12,2), moved_at DATETIME(6))",
    ],
}


@pytest.fixture
def sources(stack_env: dict[str, str]) -> Iterator[dict[str, sa.URL]]:
    """``{"postgresql": url, "mysql": url}`` of a private schema / database holding ledger and moves."""
    name = f"cks_{uuid.uuid4().hex[:8]}"
    pg = sa.make_url(stack_env["MOZART_TEST_PG_URL"]).set(database="acme")
    my = sa.make_url(stack_env["MOZART_TEST_MYSQL_URL"])
    engines = {"postgresql": sa.create_engine(pg), "mysql": sa.create_engine(my)}
    try:
        with engines["postgresql"].begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            _fill(conn, "postgresql", f'"{name}"')
        with engines["mysql"].begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
            _fill(conn, "mysql", f"`{name}`")
        yield {"postgresql": pg.update_query_dict({"options": f"-csearch_path={name}"}), "mysql": my.set(database=name)}
    finally:
        with engines["postgresql"].begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        with engines["mysql"].begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        for engine in engines.values():
            engine.dispose()


def _fill(conn: sa.Connection, kind: str, schema: str) -> None:
    for statement in DDL[kind]:
        conn.exec_driver_sql(statement.format(s=schema))
    ledger = sa.text(f"INSERT INTO {schema}.ledger VALUES (:i, :q, :d, :a, :p, :l)")
    conn.execute(ledger, [dict(zip("iqdapl", row, strict=True)) for row in LEDGER])
    moves = sa.text(f"INSERT INTO {schema}.moves VALUES (:i, :q, :p, :m)")
    conn.execute(moves, [dict(zip("iqpm", row, strict=True)) for row in MOVES])


def _configure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: dict[str, sa.URL], tenants: dict[str, tuple[str, bool]]
) -> Path:
    config_dir = tmp_path / "config"
    config_dir.mkdir(exist_ok=True)
    body: dict[str, Any] = {}
    for tenant, (kind, native) in tenants.items():
        var = f"MOZART_TEST_CKS_{kind.upper()}_URL"
        monkeypatch.setenv(var, sources[kind].render_as_string(hide_password=False))
        body[tenant] = {"source": {"kind": kind, "url": f"${{{var}}}", "native": native}}
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump({"tenants": body}), encoding="utf-8")
    (config_dir / "tables.yaml").write_text(yaml.safe_dump({"tables": TABLES}, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOZART_PROFILE", "stack")
    for name in ("MOZART_DUCKDB_PATH", "MOZART_REPORT_DIR"):
        monkeypatch.delenv(name, raising=False)
    reset_config_cache()
    clear_marker_cache()
    return config_dir


def _source_sums(url: sa.URL, table: str) -> dict[str, Decimal | None]:
    """The day's sums by plain SQL on the source (the full table, or the window of ``DAY``)."""
    columns = TABLES[table]["checksum"]
    select = ", ".join(f"sum({c})" for c in columns)
    where = " WHERE moved_at >= :start AND moved_at < :end" if table == "moves" else ""
    start = dt.datetime.combine(DAY, dt.time())
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(f"SELECT {select} FROM {table}{where}"), {"start": start, "end": start + dt.timedelta(days=1)}
            ).one()
    finally:
        engine.dispose()
    return {c: None if v is None else Decimal(v) for c, v in zip(columns, row, strict=True)}


def _loaded_sums(tenant: str, table: str) -> dict[str, Decimal | None]:
    columns = TABLES[table]["checksum"]
    settings = get_config().settings
    select = ", ".join(f'sum(CAST("{c}" AS DECIMAL(38, {0 if c in ("qty", "delta") else 10})))' for c in columns)
    with open_warehouse(settings, tenant=tenant) as wh:
        (row,) = wh.query(
            f'SELECT {select} FROM {settings.trino_catalog}."{tenant}"."{table}" WHERE _mozart_date = ?',
            [DAY],
            tenant=tenant,
        )
    return {c: None if v is None else Decimal(v) for c, v in zip(columns, row, strict=True)}


def _decimals(sums: dict[str, str | None]) -> dict[str, Decimal | None]:
    return {c: None if v is None else Decimal(v) for c, v in sums.items()}


def test_checksums_pass_on_both_sources_and_readers_and_equal_the_sources(
    sources: dict[str, sa.URL], setup: list[Setup], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:6]
    tenants = {
        f"t_cks_{tag}_pg": ("postgresql", True),
        f"t_cks_{tag}_pgrow": ("postgresql", False),
        f"t_cks_{tag}_my": ("mysql", True),
        f"t_cks_{tag}_myrow": ("mysql", False),
    }
    config_dir = _configure(tmp_path, monkeypatch, sources, tenants)
    setup.append(Setup(config_dir, tmp_path / "data", list(tenants), dict(os.environ), "stack"))
    loads = [LoadIceberg(tenant=t, table=x, date=DAY) for t in tenants for x in TABLES]
    result = build(*loads, workers=2)
    assert result.scheduling_succeeded, result.summary_text

    lake = Lake.from_settings(get_config().settings)
    expected = {(kind, table): _source_sums(sources[kind], table) for kind in sources for table in TABLES}
    assert expected["postgresql", "ledger"] == {
        "qty": Decimal(2_147_483_647 - 2),
        "delta": Decimal(9_000_000_000_000_000_000 - 3),  # beyond 64 bits on the way, and back
        "amount": Decimal("234567890123456789012345677.0123456791"),  # 37 digits, beyond a float's or int64's
        "price": Decimal("-99980.01"),
        "loose": Decimal("12345678901234567891.123456788"),
    }
    assert expected["mysql", "ledger"] == expected["postgresql", "ledger"]
    assert expected["postgresql", "moves"] == {"qty": Decimal(6), "price": Decimal("999999994.51")}
    for tenant, (kind, native) in tenants.items():
        with open_warehouse(get_config().settings, tenant=tenant) as wh:
            markers = {m.table: m for m in wh.markers(tenant, DAY)}
        for table in TABLES:
            manifest = lake.read_manifest(tenant, table, DAY)
            reader = manifest.details["reader"]
            assert (reader == "sqlalchemy") is not native, (tenant, reader)
            assert _decimals(manifest.checksums) == expected[kind, table], (tenant, table, reader)
            assert _decimals(markers[table].details["checksums"]) == expected[kind, table], (tenant, table)
            assert _loaded_sums(tenant, table) == expected[kind, table], (tenant, table)

    again = build(*loads)  # complete: nothing runs again
    assert again.scheduling_succeeded and "complete ones were encountered" in again.summary_text


def test_a_difference_fails_the_trino_load_before_its_marker_and_the_rerun_completes(
    sources: dict[str, sa.URL], setup: list[Setup], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest whose recorded sum differs from the day (the manifest is input, not truth): Trino's load
    commits the day, then the check fails it before the marker (the task stays incomplete). With the
    manifest as extracted, the rerun finds its own commit, checks again and writes the marker."""
    tenant = f"t_cks_{uuid.uuid4().hex[:6]}_pg"
    config_dir = _configure(tmp_path, monkeypatch, sources, {tenant: ("postgresql", True)})
    setup.append(Setup(config_dir, tmp_path / "data", [tenant], dict(os.environ), "stack"))
    load = LoadIceberg(tenant=tenant, table="ledger", date=DAY)
    assert build(load.requires()).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    url = lake.manifest_url(tenant, "ledger", DAY)
    extracted = lake.read_manifest(tenant, "ledger", DAY)
    lake.move_aside(url, "test")
    lake.publish_manifest(dataclasses.replace(extracted, checksums={**extracted.checksums, "price": "-99980.02"}))

    with pytest.raises(VerificationError) as caught:
        load.run()
    assert f"tenant '{tenant}', table 'ledger': date 2026-11-25: checksum of column 'price'" in str(caught.value)
    assert "source sum -99980.02, loaded sum -99980.01" in str(caught.value)
    assert not load.complete()
    with open_warehouse(get_config().settings, tenant=tenant) as wh:
        assert [m for m in wh.markers(tenant, DAY) if m.table == "ledger"] == []
        assert wh.count_partition(tenant, "ledger", DAY) == len(LEDGER)  # committed: only the marker is missing

    lake.move_aside(url, "test")
    lake.publish_manifest(extracted)
    clear_marker_cache()
    assert build(LoadIceberg(tenant=tenant, table="ledger", date=DAY)).scheduling_succeeded
    with open_warehouse(get_config().settings, tenant=tenant) as wh:
        (marker,) = [m for m in wh.markers(tenant, DAY) if m.table == "ledger"]
    assert marker.details["recovered"] is True and marker.details["checksums"] == extracted.checksums
