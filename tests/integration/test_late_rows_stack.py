"""Late and deleted rows on the stack, PostgreSQL and MariaDB at once: a copy of each sample shop is loaded day
by day; then rows arrive late, inside days already loaded (the day before the next run date, and 3 days before
it): ``mozart audit`` lists those days (and ``status`` shows them stale); the next run, with ``lookback_days: 3``
and ``deletes: keys``, re-extracts them: the rows reach Iceberg and the marts, which equal plain SQL on the
source databases, and the audit finds nothing. Then an order and its lines are deleted at the source, in a day
the lookback no longer reaches: the next run drops them from staging and the marts (keys stream).

Each tenant reads its own copy of the sample shop (a schema in PostgreSQL's ``acme``, a database in MariaDB),
so the rows it inserts touch no other test. Tenant ids are unique; everything is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pipeline_helpers
import pytest
import sqlalchemy as sa
import yaml
from dbt_shop import build, luigi_events, write_config
from pipeline_helpers import Setup
from test_dbt_trino import _expected_from_source, _got

from mozart_luigi import cli
from mozart_luigi.audit import audit
from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.status_grid import STALE, build_matrix
from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse import open_warehouse

pytestmark = pytest.mark.integration
setup = pipeline_helpers.made_setups
DAYS = [dt.date(2026, 11, 25) + dt.timedelta(days=i) for i in range(4)]  # the sample shops' days
NEXT = dt.date(2026, 11, 29)  # the next run date
LAST = dt.date(2026, 11, 30)  # the run after it: the deletes
SHOP = ("customers", "products", "orders", "order_items")
# Late rows: (order_id, customer_id, at) and their line (order_item_id, product_id, quantity, price). At 28
# (the day before the next run) and 26 (3 days before it), both loaded before the rows were committed.
LATE = [
    (900001, 3, dt.datetime(2026, 11, 28, 21, 15, 0, 123456), 900001, 2, 3, "19.99"),
    (900002, 5, dt.datetime(2026, 11, 26, 8, 0, 0, 500000), 900002, 4, 1, "5.25"),
]


@pytest.fixture
def shops(stack_env: dict[str, str]) -> Iterator[dict[str, sa.URL]]:
    """``{"postgresql": url, "mysql": url}`` of a private copy of each sample shop (dropped afterwards)."""
    name = f"late_{uuid.uuid4().hex[:8]}"
    pg = sa.make_url(stack_env["MOZART_TEST_PG_URL"]).set(database="acme")
    my = sa.make_url(stack_env["MOZART_TEST_MYSQL_URL"])
    pg_engine, my_engine = sa.create_engine(pg), sa.create_engine(my)
    try:
        with pg_engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            for table in SHOP:
                conn.exec_driver_sql(f'CREATE TABLE "{name}".{table} (LIKE public.{table} INCLUDING ALL)')
                conn.exec_driver_sql(f'INSERT INTO "{name}".{table} SELECT * FROM public.{table}')
        with my_engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            for table in SHOP:
                conn.exec_driver_sql(f"CREATE TABLE `{name}`.{table} LIKE globex.{table}")
                conn.exec_driver_sql(f"INSERT INTO `{name}`.{table} SELECT * FROM globex.{table}")
        yield {"postgresql": pg.update_query_dict({"options": f"-csearch_path={name}"}), "mysql": my.set(database=name)}
    finally:
        with pg_engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        with my_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        pg_engine.dispose()
        my_engine.dispose()


def _configure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shops: dict[str, sa.URL], tenants: dict[str, str], **options: Any
) -> Path:
    """Tenants reading the copies (URLs through the environment) and the shipped tables with ``options`` set on
    the incremental tables."""
    config_dir = write_config(tmp_path, monkeypatch, [], profile="stack")
    body = {}
    for tenant, kind in tenants.items():
        var = f"MOZART_TEST_LATE_{kind.upper()}_URL"
        monkeypatch.setenv(var, shops[kind].render_as_string(hide_password=False))
        body[tenant] = {"source": {"kind": kind, "url": f"${{{var}}}"}}
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump({"tenants": body}), encoding="utf-8")
    tables = yaml.safe_load((config_dir / "tables.yaml").read_text(encoding="utf-8"))
    for spec in tables["tables"].values():
        if spec.get("mode") == "incremental":
            spec.update(options)
    (config_dir / "tables.yaml").write_text(yaml.safe_dump(tables, sort_keys=False), encoding="utf-8")
    reset_config_cache()
    return config_dir


def _insert_late(url: sa.URL) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for oid, cid, at, iid, pid, qty, price in LATE:
                conn.execute(
                    sa.text("INSERT INTO orders VALUES (:o, :c, 'placed', :at, :at)"), {"o": oid, "c": cid, "at": at}
                )
                conn.execute(
                    sa.text("INSERT INTO order_items VALUES (:i, :o, :p, :q, :price, :at)"),
                    {"i": iid, "o": oid, "p": pid, "q": qty, "price": price, "at": at},
                )
    finally:
        engine.dispose()


def _loaded_ids(tenant: str, table: str, key: str, date: dt.date) -> set[int]:
    settings = get_config().settings
    with open_warehouse(settings, tenant=tenant) as wh:
        rows = wh.query(
            f'SELECT {key} FROM {settings.trino_catalog}."{tenant}"."{table}" WHERE _mozart_date = ?',
            [date],
            tenant=tenant,
        )
    return {int(r[0]) for r in rows}


def test_late_rows_reach_iceberg_and_the_marts_on_the_next_run(
    shops: dict[str, sa.URL],
    setup: list[Setup],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stack_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenants = {f"t_late_{uuid.uuid4().hex[:6]}_pg": "postgresql", f"t_late_{uuid.uuid4().hex[:6]}_my": "mysql"}
    config_dir = _configure(tmp_path, monkeypatch, shops, tenants)
    import os

    setup.append(Setup(config_dir, tmp_path / "data", list(tenants), dict(os.environ), "stack"))
    first = build(*(LoadIceberg(tenant=t, table=x, date=d) for t in tenants for x in SHOP for d in DAYS), workers=2)
    assert first.scheduling_succeeded, first.summary_text
    for kind in tenants.values():
        _insert_late(shops[kind])
    for tenant in tenants:
        for oid, _, at, *_ in LATE:
            assert oid not in _loaded_ids(tenant, "orders", "order_id", at.date())  # its day is loaded, without it

    assert cli.main(["audit", "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    late_days = {(t, x, row[2].date().isoformat()) for t in tenants for x in ("orders", "order_items") for row in LATE}
    assert {(f["tenant"], f["table"], f["date"]) for f in found} == late_days
    assert all(f["source_rows"] == f["loaded_rows"] + 1 for f in found)
    grid = build_matrix(get_config(), DAYS[0], DAYS[-1])
    assert {(c.tenant, c.table, c.date.isoformat()) for c in grid.cells if c.state == STALE} == late_days

    _configure(tmp_path, monkeypatch, shops, tenants, lookback_days=3, deletes="keys")
    with luigi_events(DbtRun) as events:
        second = build(*(DbtRun(tenant=t, date=NEXT) for t in tenants), workers=2)
    assert second.scheduling_succeeded and not events.failed, second.summary_text
    for tenant, kind in tenants.items():
        for oid, _, at, iid, *_ in LATE:
            assert oid in _loaded_ids(tenant, "orders", "order_id", at.date()), (tenant, at)
            assert iid in _loaded_ids(tenant, "order_items", "order_item_id", at.date()), (tenant, at)
        assert _got(tenant) == _expected_from_source(shops[kind]), tenant
    after = audit(get_config(), DAYS[0], NEXT)
    assert after.ok and len(after.checked) == 2 * 2 * 5, (after.findings, after.errors)
    assert not [c for c in build_matrix(get_config(), DAYS[0], NEXT).cells if c.state == STALE]

    gone: dict[str, int] = {}
    for tenant, kind in tenants.items():  # an order placed and last updated on the first day, with its lines
        gone[tenant] = _delete_first_days_order(shops[kind])
    with luigi_events(DbtRun) as events:
        third = build(*(DbtRun(tenant=t, date=LAST) for t in tenants), workers=2)
    assert third.scheduling_succeeded and not events.failed, third.summary_text
    for tenant, kind in tenants.items():
        assert gone[tenant] in _loaded_ids(tenant, "orders", "order_id", DAYS[0])  # still in its raw day
        assert gone[tenant] not in _loaded_ids(tenant, "orders__keys", "order_id", LAST)
        assert gone[tenant] not in _staged_ids(tenant)
        assert _got(tenant) == _expected_from_source(shops[kind]), tenant


def _delete_first_days_order(url: sa.URL) -> int:
    """Delete (at the source) the first order whose row and lines were all last updated on the first day."""
    engine = sa.create_engine(url)
    day = sa.bindparam("day", DAYS[0])
    try:
        with engine.begin() as conn:
            oid = conn.execute(
                sa.text(
                    "SELECT MIN(o.order_id) FROM orders o WHERE CAST(o.updated_at AS DATE) = :day AND NOT EXISTS "
                    "(SELECT 1 FROM order_items i WHERE i.order_id = o.order_id AND CAST(i.updated_at AS DATE) <> :day)"
                ).bindparams(day)
            ).scalar_one()
            conn.execute(sa.text("DELETE FROM order_items WHERE order_id = :o"), {"o": oid})
            conn.execute(sa.text("DELETE FROM orders WHERE order_id = :o"), {"o": oid})
    finally:
        engine.dispose()
    return int(oid)


def _staged_ids(tenant: str) -> set[int]:
    settings = get_config().settings
    with open_warehouse(settings, tenant=tenant) as wh:
        rows = wh.query(f'SELECT order_id FROM {settings.trino_catalog}."{tenant}_staging".stg_orders', tenant=tenant)
    return {int(r[0]) for r in rows}
