"""The ``local`` profile for tests without services: a SQLite tenant's config in ``tmp_path`` (lake and DuckDB
file there too) and ``luigi.build`` with the per-process caches cleared."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import luigi
import pytest
import yaml

from mozart_luigi.config import reset_config_cache
from mozart_luigi.targets import clear_marker_cache


def build(*tasks: luigi.Task) -> luigi.execution_summary.LuigiRunResult:
    """``luigi.build`` with the local scheduler, fresh task instances and no cached markers.

    luigi 3.8 warns that the repo's ``luigi.cfg`` key ``[core] default-scheduler-host`` is "not consumed" (it
    is, through a config_path alias); with ``filterwarnings = error`` that warning would abort the build.
    """
    luigi.task_register.Register.clear_instance_cache()
    clear_marker_cache()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=luigi.parameter.UnconsumedParameterWarning)
        return luigi.build(list(tasks), local_scheduler=True, detailed_summary=True)


def configure_local(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    tenant: str,
    source: Path,
    tables: dict[str, Any] | None = None,
) -> Path:
    """tenants.yaml (one SQLite tenant) and, when given, tables.yaml in ``tmp_path/config``; the environment of
    the ``local`` profile pointed at ``tmp_path``. Returns the config folder."""
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    tenants = {"tenants": {tenant: {"source": {"kind": "sqlite", "path": str(source)}}}}
    (config / "tenants.yaml").write_text(yaml.safe_dump(tenants), encoding="utf-8")
    if tables is not None:
        write_tables(config, tables)
    for key, value in {
        "MOZART_CONFIG_DIR": str(config),
        "MOZART_PROFILE": "local",
        "MOZART_DATA_DIR": str(tmp_path / "data"),
        "MOZART_LAKE_URL": (tmp_path / "lake").as_uri(),
        "MOZART_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MOZART_TEST_CRASH_AT", raising=False)
    reset_config_cache()
    return config


def write_tables(config: Path, tables: dict[str, Any]) -> None:
    """tables.yaml in ``config`` (order kept), and the config cache dropped."""
    (config / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}, sort_keys=False), encoding="utf-8")
    reset_config_cache()
