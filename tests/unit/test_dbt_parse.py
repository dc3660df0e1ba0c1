"""`dbt parse` of the project for both targets (no connection needed), and its refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from mozart_luigi.config import load_config
from mozart_luigi.dbt_runner import DbtFailure, parse_project
from mozart_luigi.settings import Settings

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 28)
MODELS = {
    "stg_customers": ("staging", "view"),
    "stg_products": ("staging", "view"),
    "stg_orders": ("staging", "mozart_incremental"),  # an incremental table: merged by key
    "stg_order_items": ("staging", "mozart_incremental"),
    "int_order_lines": ("intermediate", "view"),
    "int_orders": ("intermediate", "view"),
    "daily_revenue": ("mart", "mozart_incremental"),
    "customer_lifetime_value": ("mart", "mozart_incremental"),
    "product_performance": ("mart", "mozart_incremental"),
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(Settings(), data_dir=tmp_path / "data", duckdb_path=tmp_path / "warehouse.duckdb")


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.parametrize("target", ["local", "trino"])
def test_parse_puts_each_layer_in_the_tenant_schemas(settings: Settings, repo_root: Path, target: str) -> None:
    tables = load_config(repo_root / "config", env={}).tables.values()
    manifest = _manifest(parse_project("acme", settings=settings, run_date=DAY, tables=tables, target=target))
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert {name: (n["schema"], n["config"]["materialized"]) for name, n in models.items()} == {
        name: (f"acme_{layer}", kind) for name, (layer, kind) in MODELS.items()
    }
    sources = {s["name"]: s for s in manifest["sources"].values()}
    assert set(sources) == {"customers", "products", "orders", "order_items"}
    assert {s["schema"] for s in sources.values()} == {"acme"}
    expected_db = "iceberg" if target == "trino" else "warehouse"
    assert {s["database"] for s in sources.values()} == {expected_db}
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    names = {t["name"] for t in tests}
    assert {f"reconciles_with_raw_stg_{t}_{t}" for t in sources} <= names
    assert "accepted_values_stg_orders_status__placed__shipped__delivered__cancelled" in names
    assert any(n.startswith("relationships_stg_order_items_product_id") for n in names)


def test_parse_refuses_an_unsafe_tenant_var(settings: Settings, repo_root: Path) -> None:
    """dbt itself rejects a tenant that is not a safe identifier (defence in depth behind the config)."""
    import subprocess

    from mozart_luigi.dbt_runner import build_command, dbt_env, project_dir

    argv = build_command("acme", target="local", project=project_dir(), work=settings.data_dir / "x", command="parse")
    vars_at = argv.index("--vars") + 1
    argv[vars_at] = json.dumps({"tenant": "acme; drop schema acme", "run_date": "2026-11-28"})
    done = subprocess.run(argv, env=dbt_env(settings, "local"), capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "invalid dbt var 'tenant' \"acme; drop schema acme\"" in done.stdout


def test_parse_names_a_table_missing_from_the_tables_var(settings: Settings, repo_root: Path) -> None:
    config = load_config(repo_root / "config", env={})
    without_items = [t for name, t in config.tables.items() if name != "order_items"]
    with pytest.raises(DbtFailure, match="table \"order_items\" is missing from dbt var 'tables'") as caught:
        parse_project("acme", settings=settings, run_date=DAY, tables=without_items, target="local")
    assert caught.value.tenant == "acme"
