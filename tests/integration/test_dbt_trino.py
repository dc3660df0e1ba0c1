"""dbt on the real Trino + Iceberg: marts equal an independent computation, DbtRun through Luigi twice, a
failing tenant named while another completes; and the whole chain from the stack's sample sources (acme on
PostgreSQL, globex on MariaDB) with marts equal to plain SQL run on those source databases.

Every tenant id is unique per test run; its schemas (raw, staging, intermediate, mart), lake files and
markers are dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dbt_shop
import pytest
import sqlalchemy as sa
import yaml
from dbt_changes import History, trino_statements
from dbt_shop import DAYS, MART_KEYS, build, expected_marts, luigi_events, shop, write_config
from pipeline_helpers import drop_dbt_schemas

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.dbt_runner import run_dbt
from mozart_luigi.lake import Lake
from mozart_luigi.targets import clear_marker_cache
from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse import open_warehouse

pytestmark = pytest.mark.integration


def _unique(suffix: str) -> str:
    return f"t_dbt_{uuid.uuid4().hex[:8]}_{suffix}"


def _drop_tenant(tenant: str) -> None:
    """Drop the dbt schemas (views and tables), then the raw schema, the markers and the lake files."""
    settings = get_config().settings
    with open_warehouse(settings, tenant=tenant) as wh:
        drop_dbt_schemas(wh, tenant)
        wh.drop_tenant(tenant)
    lake = Lake.from_settings(settings)
    for table in get_config().tables:
        lake.clear_dir(lake.table_url(tenant, table))
    clear_marker_cache()


@pytest.fixture
def tenants(stack_env: dict[str, str]) -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    reset_config_cache()
    failures = []
    for tenant in created:
        for attempt in (1, 2):  # the REST catalog may briefly refuse a commit under concurrent load
            try:
                _drop_tenant(tenant)
                break
            except Exception as exc:  # noqa: BLE001 - reported below, after every tenant was tried
                if attempt == 2:
                    failures.append(f"{tenant}: {exc}")
                time.sleep(2)
    assert not failures, f"clean-up failed: {failures}"


def _marts(tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    settings = get_config().settings
    with open_warehouse(settings, tenant=tenant) as wh:
        schema = f'{settings.trino_catalog}."{tenant}_mart"'
        out = {}
        for mart, key in MART_KEYS.items():
            rows = wh.query(f"SELECT * FROM {schema}.{mart} ORDER BY {key}", tenant=tenant)
            out[mart] = [tuple(r) for r in rows]
        return out


def _dbt_markers(date: dt.date) -> dict[str, Any]:
    with open_warehouse(get_config().settings) as wh:
        return {m.tenant: m for m in wh.markers(None, date) if m.task_family == "DbtRun"}


# --------------------------------------------------------------------------------- synthetic tenants


def test_dbt_run_on_trino_twice_with_a_failing_tenant(
    tenants: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = _unique("good"), _unique("bad")
    tenants.extend([good, bad])
    write_config(tmp_path, monkeypatch, [good, bad], profile="stack")
    settings = get_config().settings
    run_date = DAYS[-1]
    with open_warehouse(settings) as wh:
        for tenant, data in ((good, shop(3)), (bad, shop(4, bad_status=True))):
            for statement, params in dbt_shop.trino_raw_statements(settings.trino_catalog, tenant, data):
                wh.query(statement, params, tenant=tenant)
    for tenant in (good, bad):
        dbt_shop.mark_loads_done(tenant, run_date)

    with luigi_events(DbtRun) as events:
        first = build(DbtRun(tenant=good, date=run_date), DbtRun(tenant=bad, date=run_date))
    good_id = DbtRun(tenant=good, date=run_date).task_id
    assert events.succeeded == [good_id], events.failed
    message = str(events.failed[DbtRun(tenant=bad, date=run_date).task_id])
    assert f"tenant '{bad}'" in message and "(target trino)" in message
    assert "test accepted_values_stg_orders_status__placed__shipped__delivered__cancelled (fail" in message
    assert not first.scheduling_succeeded

    assert _marts(good) == expected_marts(shop(3), run_date)
    markers = _dbt_markers(run_date)
    assert good in markers and bad not in markers
    assert markers[good].rows == 9 and markers[good].details["target"] == "trino"

    with luigi_events(DbtRun) as again:
        second = build(DbtRun(tenant=good, date=run_date))
    assert second.scheduling_succeeded and again.succeeded == [] and again.failed == {}
    assert _marts(good) == expected_marts(shop(3), run_date)


def _run_mode(tenant: str) -> str:
    settings = get_config().settings
    with open_warehouse(settings, tenant=tenant) as wh:
        rows = wh.query(
            f'SELECT DISTINCT mode FROM {settings.trino_catalog}."{tenant}_staging".mozart_run', tenant=tenant
        )
    (mode,) = {r[0] for r in rows}
    return str(mode)


def test_incremental_runs_on_trino_equal_an_independent_computation(
    tenants: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Iceberg: partitions replaced (a lookback reload, a rerun of an old date), a backfill of an earlier date,
    new nights; after each dbt run the marts equal the independent computation, incrementally where the mode
    allows (MERGE on Iceberg), and a tenant rebuilt with --full-refresh from the same raw data agrees."""
    inc, ref = _unique("inc"), _unique("ref")
    tenants.extend([inc, ref])
    write_config(tmp_path, monkeypatch, [inc, ref], profile="stack")
    settings, tables = get_config().settings, get_config().tables_for(inc)
    history = History(seed=5)
    created: set[str] = set()

    def run(run_date: dt.date, mode: str, *, reference: bool = False) -> None:
        dirty = history.take_dirty()
        with open_warehouse(settings) as wh:
            for tenant in (inc, ref):
                statements = trino_statements(
                    settings.trino_catalog, tenant, history, dirty, create=tenant not in created
                )
                for statement, params in statements:
                    wh.query(statement, params, tenant=tenant)
                created.add(tenant)
        result = run_dbt(inc, run_date, settings=settings, tables=tables, selector="nightly")
        assert result.ok and result.models_built == 9, [n.describe() for n in result.failed]
        expected = expected_marts(history.data(), run_date)
        assert _marts(inc) == expected, f"incremental as of {run_date}"
        assert _run_mode(inc) == mode, f"as of {run_date}"
        if reference:
            full = run_dbt(
                ref, run_date, settings=settings, tables=tables, selector="nightly", extra_args=["--full-refresh"]
            )
            assert full.ok and _run_mode(ref) == "full"
            assert _marts(ref) == expected, f"full as of {run_date}"

    day = [history.date(i) for i in range(6)]
    history.night()
    history.night()
    run(day[1], "full")  # the first run
    history.night()
    history.reload(day[1])  # lookback: late rows, an update gone from the day
    run(day[2], "incremental")
    history.reload(day[0], late=0)  # a rerun of an old date, built as of the newest date
    run(day[2], "incremental", reference=True)
    run(day[1], "full")  # a run date before the last one
    history.night()
    history.remove("orders", day[2])
    history.remove("order_items", day[2])
    run(day[3], "incremental", reference=True)


# -------------------------------------------------------------------------- the chain from the sources


def _source_url(env: dict[str, str], kind: str, database: str) -> sa.URL:
    url = sa.make_url(env["MOZART_TEST_PG_URL" if kind == "postgresql" else "MOZART_TEST_MYSQL_URL"])
    return url.set(database=database)


SOURCE_MARTS = {
    "daily_revenue": """
        SELECT CAST(o.ordered_at AS DATE) AS order_date,
               SUM(CASE WHEN o.status <> 'cancelled' THEN 1 ELSE 0 END),
               SUM(CASE WHEN o.status = 'cancelled' THEN 1 ELSE 0 END),
               COUNT(DISTINCT CASE WHEN o.status <> 'cancelled' THEN o.customer_id END),
               COALESCE(SUM(CASE WHEN o.status <> 'cancelled' THEN l.units END), 0),
               COALESCE(SUM(CASE WHEN o.status <> 'cancelled' THEN l.amount END), 0)
        FROM orders o
        LEFT JOIN (SELECT order_id, SUM(quantity) AS units, SUM(quantity * unit_price) AS amount
                   FROM order_items GROUP BY order_id) l ON l.order_id = o.order_id
        GROUP BY CAST(o.ordered_at AS DATE) ORDER BY 1""",
    "customer_lifetime_value": """
        SELECT c.customer_id, c.email, c.full_name, c.country, COUNT(o.order_id), COALESCE(SUM(o.amount), 0),
               MIN(CAST(o.ordered_at AS DATE)), MAX(CAST(o.ordered_at AS DATE))
        FROM customers c
        LEFT JOIN (SELECT o.order_id, o.customer_id, o.ordered_at,
                          COALESCE(SUM(i.quantity * i.unit_price), 0) AS amount
                   FROM orders o LEFT JOIN order_items i ON i.order_id = o.order_id
                   WHERE o.status <> 'cancelled' GROUP BY o.order_id, o.customer_id, o.ordered_at) o
               ON o.customer_id = c.customer_id
        GROUP BY c.customer_id, c.email, c.full_name, c.country ORDER BY c.customer_id""",
    "product_performance": """
        SELECT p.product_id, p.sku, p.name, p.category, p.unit_price, COALESCE(SUM(i.quantity), 0),
               COALESCE(SUM(i.quantity * i.unit_price), 0), COUNT(DISTINCT i.order_id),
               MIN(CAST(o.ordered_at AS DATE)), MAX(CAST(o.ordered_at AS DATE))
        FROM products p
        LEFT JOIN (order_items i JOIN orders o ON o.order_id = i.order_id AND o.status <> 'cancelled')
               ON i.product_id = p.product_id
        GROUP BY p.product_id, p.sku, p.name, p.category, p.unit_price ORDER BY p.product_id""",
}
# Column kinds, to compare values across drivers (PostgreSQL sums integers into numeric, etc.).
KINDS = {
    "daily_revenue": "diiiim",
    "customer_lifetime_value": "isssimdd",
    "product_performance": "isssmimidd",
}


def _norm(kinds: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    convert: dict[str, Callable[[Any], Any]] = {
        "i": int,
        "s": lambda v: str(v).rstrip(),
        "d": lambda v: v,
        "m": lambda v: Decimal(v).quantize(Decimal("0.01")),
    }
    return tuple(None if v is None else convert[k](v) for k, v in zip(kinds, row, strict=True))


def _expected_from_source(url: sa.URL) -> dict[str, list[tuple[Any, ...]]]:
    """The marts by plain SQL on the source database; active_days is the span between the two dates."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            out = {
                m: [_norm(KINDS[m], tuple(r)) for r in conn.execute(sa.text(sql))] for m, sql in SOURCE_MARTS.items()
            }
    finally:
        engine.dispose()
    out["customer_lifetime_value"] = [
        (*r, (r[7] - r[6]).days if r[6] else None) for r in out["customer_lifetime_value"]
    ]
    return out


def _got(tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    marts = _marts(tenant)
    return {
        "daily_revenue": [_norm(KINDS["daily_revenue"], r) for r in marts["daily_revenue"]],
        "customer_lifetime_value": [
            (*_norm(KINDS["customer_lifetime_value"], r[:8]), r[8]) for r in marts["customer_lifetime_value"]
        ],
        "product_performance": [_norm(KINDS["product_performance"], r) for r in marts["product_performance"]],
    }


def test_chain_from_the_sample_sources_equals_plain_sql_on_them(
    tenants: list[str], stack_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme, globex = _unique("acme"), _unique("globex")
    tenants.extend([acme, globex])
    body = {
        acme: {
            "source": {
                "kind": "postgresql",
                "host": "${MOZART_PG_HOST:127.0.0.1}",
                "port": "${MOZART_PG_PORT}",
                "database": "acme",
                "user": "acme_reader",
                "password": "${ACME_DB_PASSWORD}",
                "schema": "public",
            }
        },
        globex: {
            "source": {
                "kind": "mysql",
                "host": "${MOZART_MYSQL_HOST:127.0.0.1}",
                "port": "${MOZART_MYSQL_PORT}",
                "database": "globex",
                "user": "globex_reader",
                "password": "${GLOBEX_DB_PASSWORD}",
            }
        },
    }
    config_dir = write_config(tmp_path, monkeypatch, [], profile="stack")
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump({"tenants": body}), encoding="utf-8")
    reset_config_cache()
    days = [dt.date(2026, 11, 25) + dt.timedelta(days=i) for i in range(4)]
    last = days[-1]
    loads = [
        LoadIceberg(tenant=t, table=table, date=day)
        for t in (acme, globex)
        for table in get_config().tenant(t).tables
        for day in days[:-1]
    ]

    with luigi_events(DbtRun) as events:
        result = build(*loads, DbtRun(tenant=acme, date=last), DbtRun(tenant=globex, date=last), workers=2)
    assert result.scheduling_succeeded, result.summary_text
    assert events.failed == {}

    assert _got(acme) == _expected_from_source(_source_url(stack_env, "postgresql", "acme"))
    assert _got(globex) == _expected_from_source(_source_url(stack_env, "mysql", "globex"))
    with luigi_events(DbtRun) as again:
        second = build(DbtRun(tenant=acme, date=last), DbtRun(tenant=globex, date=last))
    assert second.scheduling_succeeded and again.succeeded == []
