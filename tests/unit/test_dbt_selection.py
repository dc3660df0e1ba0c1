"""Which dbt data tests a DbtRun runs: the weekly day setting, the selector of a date, the command line, and
what dbt's own selectors (dbt/selectors.yml) select from the project (``dbt ls``, no connection needed)."""

from __future__ import annotations

import configparser
import dataclasses
import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mozart_luigi.dbt_runner import build_command, dbt_env, project_dir, project_selectors
from mozart_luigi.errors import ConfigError, TransformError
from mozart_luigi.settings import Settings
from mozart_luigi.tasks.dbt import DEFAULT_WEEKLY_TESTS, DbtRun, dbt_selection, weekly_tests_setting

pytestmark = pytest.mark.unit
MONDAY = dt.date(2026, 11, 23)
WEEK = [MONDAY + dt.timedelta(days=i) for i in range(7)]
NIGHTLY_TESTS = {
    "accepted_values_stg_orders_status__placed__shipped__delivered__cancelled",
    "reconciles_with_raw_stg_customers_customers",
    "reconciles_with_raw_stg_order_items_order_items",
    "reconciles_with_raw_stg_orders_orders",
    "reconciles_with_raw_stg_products_products",
    "unique_stg_customers_customer_id",
    "unique_stg_order_items_order_item_id",
    "unique_stg_orders_order_id",
    "unique_stg_products_product_id",
}
MODELS = {
    "stg_customers",
    "stg_products",
    "stg_orders",
    "stg_order_items",
    "int_order_lines",
    "int_orders",
    "daily_revenue",
    "customer_lifetime_value",
    "product_performance",
}


def _cfg(value: str | None) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    if value is not None:
        cfg["mozart"] = {"dbt_weekly_tests": value}
    return cfg


class _Luigi:
    """The part of luigi's config parser that is read: ``get(section, option, default)``."""

    def __init__(self, cfg: configparser.ConfigParser) -> None:
        self._cfg = cfg

    def get(self, section: str, option: str, default: str) -> str:
        return self._cfg.get(section, option, fallback=default)


# ------------------------------------------------------------------------------------------- setting


def test_the_weekly_day_defaults_to_sunday() -> None:
    assert weekly_tests_setting({}, _Luigi(_cfg(None))) == DEFAULT_WEEKLY_TESTS == "sunday"


def test_luigi_cfg_sets_the_weekly_day_and_the_env_var_overrides_it() -> None:
    assert weekly_tests_setting({}, _Luigi(_cfg("Wednesday"))) == "wednesday"
    assert weekly_tests_setting({"MOZART_DBT_WEEKLY_TESTS": "friday"}, _Luigi(_cfg("wednesday"))) == "friday"
    assert weekly_tests_setting({"MOZART_DBT_WEEKLY_TESTS": " "}, _Luigi(_cfg("daily"))) == "daily"


@pytest.mark.parametrize(
    ("env", "cfg", "key"),
    [
        ({"MOZART_DBT_WEEKLY_TESTS": "weekly"}, None, "MOZART_DBT_WEEKLY_TESTS"),
        ({}, "sun", "[mozart] dbt_weekly_tests"),
    ],
)
def test_a_bad_weekly_day_names_where_it_was_set(env: dict[str, str], cfg: str | None, key: str) -> None:
    with pytest.raises(ConfigError, match="not a weekday name") as caught:
        weekly_tests_setting(env, _Luigi(_cfg(cfg)))
    assert caught.value.problems[0].key == key


def test_the_shipped_luigi_cfg_runs_the_full_tests_on_sunday(repo_root: Path) -> None:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(repo_root / "luigi.cfg")
    assert weekly_tests_setting({}, _Luigi(cfg)) == "sunday"


# ----------------------------------------------------------------------------------------- selection


@pytest.mark.parametrize("weekly", ["monday", "thursday", "sunday"])
def test_one_date_a_week_runs_the_full_set(weekly: str) -> None:
    chosen = {day.strftime("%A").lower(): dbt_selection(day, weekly) for day in WEEK}
    assert chosen == {day: "full" if day == weekly else "nightly" for day in chosen}
    next_week = [day + dt.timedelta(days=7) for day in WEEK]
    assert [dbt_selection(day, weekly) for day in next_week] == list(chosen.values())


def test_daily_runs_the_full_set_every_date() -> None:
    assert {dbt_selection(day, "daily") for day in WEEK} == {"full"}


def test_the_command_passes_the_selector_only_when_given(tmp_path: Path) -> None:
    common: dict[str, Any] = {"target": "trino", "project": project_dir(), "work": tmp_path, "executable": "dbt"}
    assert "--selector" not in build_command("acme", **common)  # by hand and in the contract tests: every node
    argv = build_command("acme", **common, selector="full")
    assert argv[argv.index("--selector") + 1] == "full"
    assert argv[:2] == ["dbt", "build"]


def test_the_project_defines_both_selectors(tmp_path: Path) -> None:
    assert project_selectors(project_dir()) == {"nightly", "full"}
    assert project_selectors(tmp_path) == frozenset()  # a project without selectors.yml
    (tmp_path / "selectors.yml").write_text("selectors: [{name: only, definition: {method: fqn, value: '*'}}]")
    assert project_selectors(tmp_path) == {"only"}
    (tmp_path / "selectors.yml").write_text("selectors: [unclosed")
    with pytest.raises(TransformError, match="cannot read the dbt selectors"):
        project_selectors(tmp_path)


@pytest.mark.parametrize(("weekly", "expected"), [("saturday", ("full", "full")), ("friday", ("nightly", "nightly"))])
def test_dbt_run_picks_the_selector_of_its_date(
    local: Path, monkeypatch: pytest.MonkeyPatch, weekly: str, expected: tuple[str, str]
) -> None:
    monkeypatch.setenv("MOZART_DBT_WEEKLY_TESTS", weekly)
    assert DbtRun(tenant="demo_north", date=dt.date(2026, 11, 28))._selection() == expected  # a Saturday


def test_dbt_run_without_the_selector_in_its_project_runs_every_test(
    local: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MOZART_DBT_WEEKLY_TESTS", "friday")
    monkeypatch.setenv("MOZART_DBT_PROJECT_DIR", str(tmp_path))  # e.g. a one-model project of the tests
    assert DbtRun(tenant="demo_north", date=dt.date(2026, 11, 28))._selection() == ("full", None)


# ------------------------------------------------------------------------------ dbt's own selectors


def _ls(tmp_path: Path, selector: str, resource_type: str) -> set[str]:
    settings = dataclasses.replace(Settings(), data_dir=tmp_path, duckdb_path=tmp_path / "w.duckdb")
    argv = build_command(
        "acme",
        target="local",
        project=project_dir(),
        work=tmp_path / "dbt",
        command="ls",
        selector=selector,
        extra_args=("--resource-type", resource_type, "--output", "name", "--quiet"),
    )
    done = subprocess.run(argv, env=dbt_env(settings, "local"), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:]
    return {line.strip() for line in done.stdout.splitlines() if line.strip()}


def test_nightly_selects_every_model_and_only_the_untagged_tests(tmp_path: Path) -> None:
    assert _ls(tmp_path, "nightly", "model") == MODELS
    assert _ls(tmp_path, "nightly", "test") == NIGHTLY_TESTS


def test_full_selects_every_model_and_every_test(tmp_path: Path) -> None:
    assert _ls(tmp_path, "full", "model") == MODELS
    tests = _ls(tmp_path, "full", "test")
    assert len(tests) == 38 and tests > NIGHTLY_TESTS
    assert "assert_daily_revenue_matches_order_lines" in tests
    assert "relationships_stg_order_items_product_id__product_id__ref_stg_products_" in tests
