"""dbt_runner and DbtRun without running dbt: command line, environment, progress, run_results, graph."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import yaml

from mozart_luigi.config import load_config
from mozart_luigi.dbt_runner import (
    DbtFailure,
    ProgressTracker,
    _failure_message,
    build_command,
    dbt_env,
    dbt_executable,
    project_dir,
    read_run_results,
    tables_var,
    target_for_profile,
    work_dir,
)
from mozart_luigi.errors import ConfigError, TransformError
from mozart_luigi.secrets import Secret
from mozart_luigi.settings import Settings

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 28)

# Lines as dbt-core 1.11 prints them with --log-format text (captured from a real run).
DBT_LINES = """\
19:46:49  Running with dbt=1.11.16
19:46:50  Found 9 models, 44 data tests, 4 sources, 546 macros
19:46:57  1 of 53 START sql view model t_good_staging.stg_customers ...................... [RUN]
19:46:57  1 of 53 OK created sql view model t_good_staging.stg_customers ................. [OK in 0.20s]
19:46:57  2 of 53 START test not_null_stg_customers_email ................................ [RUN]
19:46:57  2 of 53 PASS not_null_stg_customers_email ...................................... [PASS in 0.02s]
19:46:58  3 of 53 FAIL 1 accepted_values_stg_orders_status__placed__shipped__delivered__cancelled  [FAIL 1]
19:46:58  4 of 53 SKIP relation t_good_intermediate.int_order_lines ...................... [SKIP]
19:46:58  5 of 53 SKIP test unique_int_orders_order_id ................................... [SKIP]
19:46:59  Done. PASS=1 WARN=0 ERROR=1 SKIP=2 NO-OP=0 TOTAL=53
""".splitlines()


def _results(path: Path, statuses: dict[str, tuple[str, str | None]]) -> Path:
    results = [
        {
            "unique_id": uid,
            "status": status,
            "message": message,
            "failures": 1 if status == "fail" else 0,
            "execution_time": 0.1,
            "relation_name": None,
            "thread_id": "Thread-1",
            "timing": [],
            "adapter_response": {},
            "compiled": True,
            "compiled_code": "select 1",
            "batch_results": None,
        }
        for uid, (status, message) in statuses.items()
    ]
    path.write_text(
        json.dumps(
            {
                "metadata": {"invocation_id": "abc-123", "dbt_version": "1.11.16"},
                "results": results,
                "elapsed_time": 2.5,
                "args": {},
            }
        )
    )
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(
        Settings(),
        data_dir=tmp_path / "data",
        duckdb_path=tmp_path / "wh.duckdb",
        report_dir=tmp_path / "reports",
        trino_host="trino.internal",
        trino_port=18080,
        s3_secret_key=Secret("s3-very-secret"),
    )


# ------------------------------------------------------------------------------------------- command


def test_command_names_tenant_date_target_and_private_paths(settings: Settings) -> None:
    work = work_dir(settings, "acme")
    tables = {"orders": {"mode": "incremental", "primary_key": ["order_id"], "cursor": "updated_at"}}
    argv = build_command("acme", target="trino", project=project_dir(), work=work, tables=tables, executable="dbt")
    assert argv[:2] == ["dbt", "build"]
    assert argv[argv.index("--target") + 1] == "trino"
    assert argv[argv.index("--project-dir") + 1] == str(project_dir())
    assert argv[argv.index("--profiles-dir") + 1] == str(project_dir())
    assert argv[argv.index("--target-path") + 1] == str(settings.data_dir / "dbt" / "acme" / "target")
    assert argv[argv.index("--log-path") + 1] == str(settings.data_dir / "dbt" / "acme" / "logs")
    assert json.loads(argv[argv.index("--vars") + 1]) == {"tenant": "acme", "tables": tables}
    assert not any("2026-11-28" in arg for arg in argv)  # the date goes by env (MOZART_RUN_DATE): see dbt_env


def test_two_tenants_never_share_dbt_folders(settings: Settings) -> None:
    assert work_dir(settings, "acme") != work_dir(settings, "globex")


@pytest.mark.parametrize("tenant", ["Acme", "acme;drop schema x", "1acme", "a" * 41, ""])
def test_command_refuses_unsafe_tenant(settings: Settings, tenant: str) -> None:
    with pytest.raises(ConfigError):
        build_command(tenant, target="local", project=project_dir(), work=Path("/tmp/x"), executable="dbt")


def test_env_exports_settings_and_keeps_secrets_off_the_command_line(settings: Settings) -> None:
    base = {"PATH": "/usr/bin", "MOZART_S3_SECRET_KEY": "s3-very-secret", "DBT_PROFILES_DIR": "/elsewhere"}
    env = dbt_env(settings, "trino", base)
    assert env["MOZART_DBT_TARGET"] == "trino"
    assert env["MOZART_TRINO_HOST"] == "trino.internal" and env["MOZART_TRINO_PORT"] == "18080"
    assert env["MOZART_DUCKDB_PATH"] == str(settings.duckdb_path)
    assert env["PATH"] == "/usr/bin" and "DBT_PROFILES_DIR" not in env
    assert "MOZART_RUN_DATE" not in dbt_env(settings, "trino", {"MOZART_RUN_DATE": "2020-01-01"})  # no stale date
    assert dbt_env(settings, "trino", base, run_date=DAY)["MOZART_RUN_DATE"] == "2026-11-28"
    argv = build_command(
        "acme", target="trino", project=project_dir(), work=work_dir(settings, "acme"), executable="dbt"
    )
    assert not any("s3-very-secret" in arg for arg in argv)


def test_profile_selects_target() -> None:
    assert target_for_profile("stack") == "trino"
    assert target_for_profile("local") == "local"
    with pytest.raises(TransformError, match="no dbt target for profile 'prod'"):
        target_for_profile("prod")


def test_dbt_is_the_venv_sibling() -> None:
    assert Path(dbt_executable()).name == "dbt" and Path(dbt_executable()).exists()


# ------------------------------------------------------------------------------------------ progress


def test_progress_counts_models_and_nodes_from_dbt_lines() -> None:
    tracker = ProgressTracker()
    changed = [tracker.feed(line) for line in DBT_LINES]
    state = tracker.state
    assert sum(changed) == 5
    assert (state.nodes_done, state.nodes_total, state.models_done, state.models_total) == (5, 53, 2, 9)
    assert state.failures == ["accepted_values_stg_orders_status__placed__shipped__delivered__cancelled FAIL"]
    assert state.message("acme").startswith("dbt acme: 2/9 models done (5/53 nodes, 1 failed)")


def test_progress_names_the_last_node() -> None:
    tracker = ProgressTracker()
    tracker.feed(DBT_LINES[3])
    assert tracker.state.last == "t_good_staging.stg_customers OK"


# --------------------------------------------------------------------------------------- run_results


def test_run_results_success_counts(tmp_path: Path) -> None:
    path = _results(
        tmp_path / "run_results.json",
        {
            "model.mozart.stg_orders": ("success", "OK"),
            "model.mozart.daily_revenue": ("success", "OK"),
            "test.mozart.unique_stg_orders_order_id.8e01966b51": ("pass", None),
        },
    )
    result = read_run_results(path, tenant="acme", run_date=DAY, target="local")
    assert result.ok and result.models_built == 2 and result.invocation_id == "abc-123"
    assert result.counts() == {"model:success": 2, "models_built": 2, "nodes": 3, "test:pass": 1}
    assert result.elapsed_seconds == 2.5


def test_failure_message_names_tenant_and_failed_nodes(tmp_path: Path) -> None:
    path = _results(
        tmp_path / "run_results.json",
        {
            "model.mozart.stg_orders": ("success", "OK"),
            "test.mozart.accepted_values_stg_orders_status__placed.8e01966b51": ("fail", "Got 1 result"),
            "model.mozart.int_orders": ("error", "Binder Error: column x not found"),
            "model.mozart.daily_revenue": ("skipped", None),
        },
    )
    result = read_run_results(path, tenant="acme", run_date=DAY, target="local", return_code=1)
    assert not result.ok
    assert [n.name for n in result.failed] == ["accepted_values_stg_orders_status__placed", "int_orders"]
    error = DbtFailure(_failure_message(result, [], tmp_path / "dbt.log"), tenant="acme", result=result)
    text = str(error)
    assert text.startswith("tenant 'acme': dbt build for 2026-11-28 (target local) failed: 2 node(s) failed")
    assert "test accepted_values_stg_orders_status__placed (fail: Got 1 result)" in text
    assert "model int_orders (error: Binder Error: column x not found)" in text
    assert "1 skipped" in text
    assert isinstance(error, TransformError)


def test_unreadable_run_results_is_a_transform_error(tmp_path: Path) -> None:
    bad = tmp_path / "run_results.json"
    bad.write_text("{not json")
    with pytest.raises(DbtFailure, match="tenant 'acme': cannot read dbt's"):
        read_run_results(bad, tenant="acme", run_date=DAY, target="local")


# ------------------------------------------------------------------------------- project vs config


def test_dbt_project_table_defaults_mirror_tables_yaml(repo_root: Path) -> None:
    """Standalone `dbt build` (without DbtRun's var) must treat tables as config/tables.yaml says."""
    project = yaml.safe_load((repo_root / "dbt" / "dbt_project.yml").read_text())
    config = load_config(repo_root / "config", env={})
    expected = tables_var(config.tables.values())
    defaults = {
        name: {"mode": spec["mode"], "primary_key": spec["primary_key"], "cursor": spec.get("cursor")}
        for name, spec in project["vars"]["tables"].items()
    }
    assert defaults == expected


# ---------------------------------------------------------------------------------------- DbtRun graph


@pytest.fixture
def local_config(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shutil.copy(repo_root / "config" / "tables.yaml", config_dir / "tables.yaml")
    tenants = {
        "tenants": {
            "shop_a": {"source": {"kind": "sqlite", "path": str(tmp_path / "a.sqlite")}},
            "shop_b": {"source": {"kind": "sqlite", "path": str(tmp_path / "b.sqlite")}, "tables": ["orders"]},
        }
    }
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump(tenants))
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOZART_PROFILE", "local")
    return config_dir


def test_dbt_run_requires_every_load_of_the_tenant(local_config: Path) -> None:
    from mozart_luigi.tasks.dbt import DbtRun
    from mozart_luigi.tasks.load import LoadIceberg

    task = DbtRun(tenant="shop_a", date=DAY)
    assert task.requires() == [
        LoadIceberg(tenant="shop_a", table=t, date=DAY) for t in ("customers", "products", "orders", "order_items")
    ]
    only_orders = [LoadIceberg(tenant="shop_b", table="orders", date=DAY)]
    assert DbtRun(tenant="shop_b", date=DAY).requires() == only_orders


def test_dbt_run_output_is_a_marker_and_resources_cap_writers(local_config: Path) -> None:
    from mozart_luigi.targets import MarkerTarget
    from mozart_luigi.tasks.dbt import DbtRun

    task = DbtRun(tenant="shop_a", date=DAY)
    out = task.output()
    assert isinstance(out, MarkerTarget)
    found = (out.task_family, out.task_id, out.tenant, out.date, out.table)
    assert found == ("DbtRun", task.task_id, "shop_a", DAY, None)
    assert task.resources == {"dbt_shop_a": 1, "duckdb_writer": 1}


def test_dbt_run_on_trino_holds_only_the_tenant_slot(local_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mozart_luigi.config import reset_config_cache
    from mozart_luigi.tasks.dbt import DbtRun

    monkeypatch.setenv("MOZART_PROFILE", "stack")
    monkeypatch.setenv("MOZART_S3_ACCESS_KEY", "unit-access")
    monkeypatch.setenv("MOZART_S3_SECRET_KEY", "unit-secret")
    reset_config_cache()
    assert DbtRun(tenant="shop_a", date=DAY).resources == {"dbt_shop_a": 1}
