"""dbt on the DuckDB target: marts equal an independent computation; DbtRun through Luigi, twice; a tenant
whose data breaks a dbt test fails with the test named while another tenant completes.

Raw tables are written with the duckdb module in a temporary warehouse file (the layout LoadIceberg's DuckDB
warehouse produces), and LoadIceberg's markers are recorded so that DbtRun's requirements are complete.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from dbt_changes import History, write_duckdb
from dbt_shop import (
    DAYS,
    MART_KEYS,
    build,
    create_duckdb_keys,
    create_duckdb_raw,
    expected_marts,
    keys_snapshots,
    luigi_events,
    mark_loads_done,
    shop,
    write_config,
)

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.dbt_runner import DbtFailure, run_dbt, work_dir
from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.warehouse import open_warehouse

pytestmark = pytest.mark.contract
GOOD, BAD = "shop_good", "shop_bad"
INC, REF = "shop_inc", "shop_ref"  # the same raw history: built incrementally / always with --full-refresh
RUN_DATE = DAYS[-1]


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_config(tmp_path, monkeypatch, [GOOD, BAD], profile="local")
    path = get_config().settings.duckdb_path
    path.parent.mkdir(parents=True, exist_ok=True)
    create_duckdb_raw(path, GOOD, shop(1))
    create_duckdb_raw(path, BAD, shop(2, bad_status=True))
    return path


def marts(path: Path, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return {
            mart: [tuple(r) for r in con.execute(f"SELECT * FROM {tenant}_mart.{mart} ORDER BY {key}").fetchall()]
            for mart, key in MART_KEYS.items()
        }


def schemas(path: Path) -> set[str]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}


def test_marts_equal_an_independent_computation_as_of_each_run_date(warehouse: Path) -> None:
    settings = get_config().settings
    tables = get_config().tables_for(GOOD)
    assert expected_marts(shop(1), DAYS[1]) != expected_marts(shop(1), DAYS[2])  # the dates are told apart
    for run_date in (DAYS[1], DAYS[2], DAYS[1]):  # back to an earlier date: no stale date from a saved parse
        result = run_dbt(GOOD, run_date, settings=settings, tables=tables)
        assert result.ok and result.models_built == 9 and not result.failed
        assert marts(warehouse, GOOD) == expected_marts(shop(1), run_date), f"as of {run_date}"
    log = (work_dir(settings, GOOD) / "logs" / "dbt.log").read_text(encoding="utf-8")
    assert log.count("Unable to do partial parsing") == 1, "only the first build parses the whole project"
    assert log.count("Partial parsing enabled, no changes found, skipping parsing") == 2  # a new date: no parse
    assert "Partial parsing: updated file" not in log
    assert {f"{GOOD}_staging", f"{GOOD}_intermediate", f"{GOOD}_mart"} <= schemas(warehouse)
    assert not any(s.startswith(BAD + "_") for s in schemas(warehouse))


def test_a_broken_dbt_test_names_the_tenant_and_the_test_and_a_fix_converges(warehouse: Path) -> None:
    with pytest.raises(DbtFailure) as caught:
        run_dbt(BAD, RUN_DATE, settings=get_config().settings, tables=get_config().tables_for(BAD))
    text = str(caught.value)
    assert text.startswith(f"tenant '{BAD}': dbt build for {RUN_DATE} (target local) failed: 1 node(s)")
    assert "test accepted_values_stg_orders_status__placed__shipped__delivered__cancelled (fail" in text
    assert caught.value.result is not None
    skipped = {n.name for n in caught.value.result.nodes if n.status == "skipped"}
    assert {"int_order_lines", "daily_revenue"} <= skipped  # nothing downstream of the failure was built

    create_duckdb_raw(warehouse, BAD, shop(2))  # the source data is fixed: the next run converges
    result = run_dbt(BAD, RUN_DATE, settings=get_config().settings, tables=get_config().tables_for(BAD))
    assert result.ok
    assert marts(warehouse, BAD) == expected_marts(shop(2), RUN_DATE)


def test_dbt_run_through_luigi_twice_one_tenant_failing(warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOZART_DBT_WEEKLY_TESTS", RUN_DATE.strftime("%A"))  # RUN_DATE runs every test
    settings = get_config().settings
    for tenant in (GOOD, BAD):
        mark_loads_done(tenant, RUN_DATE)
    good, bad = DbtRun(tenant=GOOD, date=RUN_DATE), DbtRun(tenant=BAD, date=RUN_DATE)

    with luigi_events(DbtRun) as events:
        first = build(good, bad)
    assert events.succeeded == [good.task_id]
    assert set(events.failed) == {bad.task_id}
    message = str(events.failed[bad.task_id])
    assert f"tenant '{BAD}'" in message and "accepted_values_stg_orders_status" in message
    assert not first.scheduling_succeeded  # a failed task makes the run fail (non-zero exit for cron)

    assert marts(warehouse, GOOD) == expected_marts(shop(1), RUN_DATE)
    report = settings.report_dir / "dbt" / GOOD / RUN_DATE.isoformat() / "run_results.json"
    statuses = {r["status"] for r in json.loads(report.read_text())["results"]}
    assert statuses == {"success", "pass"}
    with open_warehouse(settings) as wh:
        markers = {m.tenant: m for m in wh.markers(None, RUN_DATE) if m.task_family == "DbtRun"}
    assert set(markers) == {GOOD}
    assert markers[GOOD].rows == 9 and markers[GOOD].table is None
    assert markers[GOOD].details["counts"]["test:pass"] == 38 and markers[GOOD].details["selection"] == "full"
    report_mtime = report.stat().st_mtime_ns

    with luigi_events(DbtRun) as again:
        second = build(DbtRun(tenant=GOOD, date=RUN_DATE))
    assert second.scheduling_succeeded and again.succeeded == [] and again.failed == {}
    assert "complete ones were encountered" in second.summary_text
    assert report.stat().st_mtime_ns == report_mtime
    assert marts(warehouse, GOOD) == expected_marts(shop(1), RUN_DATE)

    older = DAYS[1]  # a backfill of an older date after the newer one: the marts stay as of the newer date
    mark_loads_done(GOOD, older)
    with luigi_events(DbtRun) as backfill:
        build(DbtRun(tenant=GOOD, date=older))
    assert backfill.succeeded == [DbtRun(tenant=GOOD, date=older).task_id]
    assert marts(warehouse, GOOD) == expected_marts(shop(1), RUN_DATE) != expected_marts(shop(1), older)
    with open_warehouse(settings) as wh:
        (marker,) = [m for m in wh.markers(GOOD, older) if m.task_family == "DbtRun"]
    assert marker.details["as_of"] == RUN_DATE.isoformat()
    assert marker.details["selection"] == "nightly"  # not the weekly day: the data tests not tagged weekly
    assert marker.details["counts"]["test:pass"] == 9 and marker.details["counts"]["model:success"] == 9


DELETED = {"orders": {3}, "order_items": {2, 4}}  # gone from the source on the last day (order 3 and its line)
UNSEEN = {"orders": {9}}  # inserted after that day's keys were read: its data was read later, so it stays


def test_deletes_keys_drop_the_rows_whose_key_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``deletes: keys`` on both incremental tables: staging drops a key absent from the run date's keys snapshot
    (unless a version of it was read after that snapshot); the marts equal the same rule computed in Python,
    as of each run date; the dbt tests (reconciles_with_raw, relationships) pass."""
    config_dir = write_config(tmp_path, monkeypatch, [GOOD], profile="local")
    tables = yaml.safe_load((config_dir / "tables.yaml").read_text())
    for name in ("orders", "order_items"):
        tables["tables"][name]["deletes"] = "keys"
    (config_dir / "tables.yaml").write_text(yaml.safe_dump(tables, sort_keys=False), encoding="utf-8")
    reset_config_cache()
    assert [t.name for t in get_config().tables_for(GOOD)] == [
        "customers",
        "products",
        "orders",
        "orders__keys",
        "order_items",
        "order_items__keys",
    ]
    path = get_config().settings.duckdb_path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = shop(1)
    keys = keys_snapshots(data, DELETED, unseen=UNSEEN)
    create_duckdb_raw(path, GOOD, data)
    create_duckdb_keys(path, GOOD, keys)
    last = expected_marts(data, DAYS[2], keys)
    assert last != expected_marts(data, DAYS[2])  # the deletes change the marts
    for run_date in (DAYS[1], DAYS[2]):
        result = run_dbt(GOOD, run_date, settings=get_config().settings, tables=get_config().tables_for(GOOD))
        assert result.ok and not result.failed, [n.name for n in result.failed]
        assert marts(path, GOOD) == expected_marts(data, run_date, keys), f"as of {run_date}"
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        orders = {r[0] for r in con.execute(f"SELECT order_id FROM {GOOD}_staging.stg_orders").fetchall()}
        items = {r[0] for r in con.execute(f"SELECT order_item_id FROM {GOOD}_staging.stg_order_items").fetchall()}
    assert 3 not in orders and 9 in orders and {2, 4}.isdisjoint(items)
    assert run_mode(path, GOOD) == "full"  # deletes: keys: every run is a full rebuild (dbt/README.md)


def run_mode(path: Path, tenant: str) -> str:
    """The mode the tenant's last dbt run chose (its {tenant}_staging.mozart_run table)."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        (mode,) = {r[0] for r in con.execute(f"SELECT DISTINCT mode FROM {tenant}_staging.mozart_run").fetchall()}
    return str(mode)


def test_incremental_runs_equal_an_independent_computation_after_any_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nights, lookback reloads of earlier partitions, a rerun of an old date (its partition replaced, the run as
    of the newest date), a replaced snapshot of a `full` table, a backfill of an earlier date, a removed
    partition: after each run the marts equal the independent computation, built incrementally where the mode
    allows (the mode asserted), and a tenant rebuilt with --full-refresh from the same raw data agrees."""
    write_config(tmp_path, monkeypatch, [INC, REF], profile="local")
    settings, tables = get_config().settings, get_config().tables_for(INC)
    path = settings.duckdb_path
    path.parent.mkdir(parents=True, exist_ok=True)
    history = History(seed=11)

    def run(run_date: dt.date, mode: str, *, reference: bool = False) -> None:
        dirty = history.take_dirty()
        for tenant in (INC, REF):
            write_duckdb(path, tenant, history, dirty)
        result = run_dbt(INC, run_date, settings=settings, tables=tables, selector="nightly")
        assert result.ok and result.models_built == 9, [n.describe() for n in result.failed]
        expected = expected_marts(history.data(), run_date)
        assert marts(path, INC) == expected, f"incremental as of {run_date}"
        assert run_mode(path, INC) == mode, f"as of {run_date}"
        if reference:
            full = run_dbt(
                REF, run_date, settings=settings, tables=tables, selector="nightly", extra_args=["--full-refresh"]
            )
            assert full.ok and run_mode(path, REF) == "full"
            assert marts(path, REF) == expected, f"full as of {run_date}"

    run(history.night(), "full")  # the first run: no state
    for _ in range(3):
        run(history.night(), "incremental")
    day = [history.date(i) for i in range(12)]
    history.night()
    history.reload(day[3])  # lookback_days: 2 (late rows, an update gone from the day)
    history.reload(day[2])
    run(day[4], "incremental", reference=True)
    history.reload(day[1], late=0)  # a rerun of an old date: its newest version of a row is gone
    history.reload(day[0])
    run(day[4], "incremental")  # DbtRun of an old date builds as of the newest: rebuilds what depends on it
    run(day[4], "incremental")  # nothing changed: nothing to do, same marts
    history.reload_snapshot("customers", day[4])  # the snapshot the marts were built from was replaced
    run(day[4], "full")
    run(day[2], "full", reference=True)  # a run date before the last one (a backfill by hand)
    history.night()
    history.night()
    run(day[6], "incremental")  # from the state of day 2: partitions 3 .. 6 are new to it
    history.remove("orders", day[5])
    history.remove("order_items", day[5])
    run(day[6], "incremental", reference=True)
    for n in (7, 8):
        history.night()
        history.reload(day[n - 1], drop_update=n % 2 == 0)
        history.reload(day[n - 2], late=0)
        run(day[n], "incremental", reference=n == 8)
    assert len(expected_marts(history.data(), day[8])["daily_revenue"]) >= 8
