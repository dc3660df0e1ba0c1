"""DbtRun's weekly upkeep of the tenant's dbt tables: due once a week per tenant on a day spread by tenant id,
run after the marker with the tenant's staging and mart schemas, and best effort (a failure leaves the build
complete)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import luigi
import pytest
from local_pipeline import build

from mozart_luigi.config import get_config
from mozart_luigi.demo import DEMO_DATE, generate_source
from mozart_luigi.errors import WarehouseUnavailableError
from mozart_luigi.tasks import dbt as dbt_task
from mozart_luigi.tasks.dbt import DbtRun, upkeep_due
from mozart_luigi.warehouse import open_warehouse
from mozart_luigi.warehouse.base import ModelUpkeep
from mozart_luigi.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.unit


def test_upkeep_is_due_once_a_week_per_tenant_spread_over_the_week() -> None:
    week = [dt.date(2026, 11, 23) + dt.timedelta(days=n) for n in range(7)]
    for tenant in ("acme", "globex", "t042"):
        due = [day for day in week if upkeep_due(tenant, day)]
        assert len(due) == 1 and upkeep_due(tenant, due[0] + dt.timedelta(days=7))
    days = {next(d for d in week if upkeep_due(f"t{i:03d}", d)) for i in range(60)}
    assert len(days) == 7  # 60 tenants do not all keep up on the same night


@pytest.mark.parametrize("fails", [False, True], ids=["done", "fails"])
def test_a_due_dbt_run_keeps_up_its_tables_after_the_marker(
    local: Path, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    generate_source(Path(get_config().tenant("demo_west").source.path), "demo_west")
    calls: list[tuple[str, list[str], int, bool]] = []

    def upkeep(self: Any, tenant: str, schemas: Any, retention_days: int) -> ModelUpkeep:
        marker = DbtRun(tenant=tenant, date=DEMO_DATE).task_id in self.completed("DbtRun", tenant, DEMO_DATE)
        calls.append((tenant, list(schemas), retention_days, marker))
        if fails:
            raise WarehouseUnavailableError("trino is restarting")
        return ModelUpkeep(tables=5, files_before=40, files_after=5, delete_files_before=7, delete_files_after=0)

    monkeypatch.setattr(DuckDBWarehouse, "upkeep_models", upkeep)
    monkeypatch.setattr(dbt_task, "upkeep_due", lambda tenant, date: tenant == "demo_west" and date == DEMO_DATE)
    logged: list[str] = []
    for level in ("info", "warning"):
        monkeypatch.setattr(dbt_task.log, level, lambda msg, *args: logged.append(msg % args))
    result = build(DbtRun(tenant="demo_west", date=DEMO_DATE))
    assert result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS, result.summary_text
    retention = get_config().settings.snapshot_retention_days
    assert calls == [("demo_west", ["demo_west_staging", "demo_west_mart"], retention, True)]  # after the marker
    with open_warehouse(get_config().settings) as warehouse:
        assert warehouse.completed("DbtRun", "demo_west", DEMO_DATE)
    upkeep_lines = [line for line in logged if line.startswith("dbt upkeep")]
    if fails:
        assert upkeep_lines == ["dbt upkeep tenant=demo_west skipped: trino is restarting"]
    else:
        [line] = upkeep_lines
        assert line.startswith("dbt upkeep tenant=demo_west tables=5 data files 40 -> 5, delete files 7 -> 0, failed=0")


def test_duckdb_has_no_upkeep(local: Path) -> None:
    with open_warehouse(get_config().settings) as warehouse:
        assert warehouse.upkeep_models("demo_west", ["demo_west_mart"], 7) is None
