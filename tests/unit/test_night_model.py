"""The night benchmark's pure logic (``benchmarks/night_model.py``): generated config, graph size, per-stage
seconds from run records, and the extrapolation model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from mozart_luigi.config import load_config

pytestmark = pytest.mark.unit
_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "night_model.py"
_spec = importlib.util.spec_from_file_location("night_model", _PATH)
assert _spec is not None and _spec.loader is not None
night_model = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("night_model", night_model)
_spec.loader.exec_module(night_model)


def test_tables_beyond_the_shop_read_the_shop_tables_again() -> None:
    assert night_model.table_names(3) == ["customers", "products", "orders"]
    body = night_model.tables_yaml(9)["tables"]
    assert list(body) == [
        "customers",
        "products",
        "orders",
        "order_items",
        "x05_customers",
        "x06_products",
        "x07_orders",
        "x08_order_items",
        "x09_customers",
    ]
    assert body["x07_orders"] == {
        "mode": "incremental",
        "cursor": "updated_at",
        "primary_key": ["order_id"],
        "source_name": "orders",
    }
    assert "source_name" not in body["order_items"]
    with pytest.raises(ValueError):
        night_model.table_names(0)


def test_tenants_are_half_postgres_half_mariadb_and_hold_no_secret(tmp_path: Path) -> None:
    tenants = night_model.stack_tenants("abc123", 5, "mozart_test")["tenants"]
    kinds = [t["source"]["kind"] for t in tenants.values()]
    assert kinds == ["postgresql", "mysql", "postgresql", "mysql", "postgresql"]
    first, second = list(tenants)[:2]
    assert tenants[first]["source"]["schema"] == first and tenants[first]["source"]["database"] == "mozart_test"
    assert tenants[second]["source"]["database"] == second
    assert all(t["source"]["password"].startswith("${MOZART_") for t in tenants.values())
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump({"tenants": tenants}))
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(night_model.tables_yaml(6)))
    env = {
        "MOZART_PROFILE": "stack",
        "MOZART_PG_HOST": "h",
        "MOZART_PG_PORT": "1",
        "MOZART_PG_USER": "u",
        "MOZART_PG_PASSWORD": "p",
        "MOZART_MYSQL_HOST": "h",
        "MOZART_MYSQL_PORT": "2",
        "MOZART_MYSQL_USER": "u",
        "MOZART_MYSQL_PASSWORD": "p",
        "MOZART_LAKE_URL": "file:///tmp/lake",
    }
    config = load_config(tmp_path, env=env)  # the generated files are a valid configuration
    assert sorted(config.tenants) == sorted(tenants)
    assert len(config.tables) == 6


def test_graph_size_counts_extracts_loads_dbt_and_wrappers() -> None:
    assert night_model.graph_size(1000, 4) == 10_001  # the 1,000 x 4 night
    assert night_model.graph_size(1000, 20) == 42_001
    assert night_model.graph_size(10, 4, dbt=False) == 81


def test_stage_seconds_add_a_tenants_tasks_done_and_ignore_the_rest() -> None:
    records = [
        {
            "tasks": [
                {"task": "ExtractTable", "tenant": "a", "outcome": "done", "seconds": 1.0},
                {"task": "ExtractTable", "tenant": "a", "outcome": "done", "seconds": 2.0},
                {"task": "ExtractTable", "tenant": "b", "outcome": "done", "seconds": 5.0},
                {"task": "ExtractTable", "tenant": "b", "outcome": "failed", "seconds": 9.0},
                {"task": "LoadIceberg", "tenant": "a", "outcome": "done", "seconds": None},
                {"task": "AllTenants", "tenant": None, "outcome": "done", "seconds": 0.1},
            ]
        },
        {"tasks": [{"task": "DbtRun", "tenant": "b", "outcome": "done", "seconds": 20.0}]},
    ]
    stages = night_model.stage_seconds(records)
    assert stages["extract"] == {"tenants": 2, "median_s": 4.0, "max_s": 5.0, "sum_s": 8.0}
    assert stages["dbt"] == {"tenants": 1, "median_s": 20.0, "max_s": 20.0, "sum_s": 20.0}
    assert "load" not in stages


def test_extrapolation_keeps_start_up_fixed_and_scales_scheduling_by_tasks_and_work_by_tenants() -> None:
    sample = night_model.NightSample(
        tenants=10, tables=4, dbt=True, wall_s=110.0, startup_s=3.0, schedule_s=10.0, task_s=150.0, luigid_cpu_s=2.0
    )
    out = night_model.extrapolate(sample, 1000, luigid_task_s=0.001, get_work_s_per_pending=1e-6)
    assert out.tasks == 10_001
    assert out.parallelism == pytest.approx(1.5)  # 150 task seconds in the 100 s after scheduling
    assert out.schedule_s == pytest.approx(3.0 + 7.0 / 101 * 10_001)
    assert out.work_s == pytest.approx(15.0 * 1000 / 1.5)
    assert out.wall_s == pytest.approx(out.schedule_s + out.work_s)
    assert out.luigid_get_work_cpu_s == pytest.approx(1e-6 * 10_001**2 / 2)  # ~50 s: quadratic in the graph
    assert out.luigid_cpu_s == pytest.approx(10.001 + out.luigid_get_work_cpu_s)
    assert night_model.extrapolate(sample, 10).wall_s == pytest.approx(110.0)  # the sample itself


def test_maintenance_cost_reads_the_loads_expiry_lines() -> None:
    lines = [
        "2026-11-20 01:00:00 INFO mozart_luigi.tasks.load[9]: tenant nt1_p000 table orders: snapshots older than "
        "7 day(s) expired, 3 kept (maintenance 1.25 s)",
        "INFO ... tenant nt1_m001 table customers: snapshots older than 7 day(s) expired, 1 kept (maintenance 0.50 s)",
        "WARNING ... retrying in 0.4 s",
        "tenant x table y: snapshot expiry skipped: refused",  # a failed expiry is not a cost measured
        "INFO mozart_luigi.tasks.dbt[7]: dbt upkeep tenant=nt1_p000 tables=9 data files 60 -> 9, delete files 12 -> 0,"
        " failed=0 (maintenance 4.50 s)",
        "WARNING ... dbt upkeep tenant=nt1_p001 skipped: trino is restarting",
    ]
    assert night_model.maintenance_cost(lines) == {
        "tables": 2,
        "seconds": 1.75,
        "max_s": 1.25,
        "dbt_tenants": 1,
        "dbt_tables": 9,
        "dbt_seconds": 4.5,
        "dbt_max_s": 4.5,
    }
    assert night_model.maintenance_cost([])["dbt_tenants"] == 0
