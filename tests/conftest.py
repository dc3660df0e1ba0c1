"""Shared fixtures: isolated env and config cache, Luigi's instance cache reset, stack detection."""

from __future__ import annotations

import os
from pathlib import Path

import luigi
import pytest

from mozart_luigi.config import reset_config_cache

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolation(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with a fresh config cache and Luigi task-instance cache."""
    reset_config_cache()
    luigi.task_register.Register.clear_instance_cache()
    yield
    reset_config_cache()
    luigi.task_register.Register.clear_instance_cache()


def stack_is_configured() -> bool:
    return bool(os.environ.get("MOZART_TRINO_HOST") and os.environ.get("MOZART_TEST_PG_URL"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def stack_env() -> dict[str, str]:
    """The environment `scripts/stack env` exported; skips when the stack is not configured."""
    if not stack_is_configured():
        pytest.skip('stack not configured: run `eval "$(scripts/stack env)"` after `scripts/stack up`')
    return dict(os.environ)


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_root: Path) -> Path:
    """Profile ``local`` on the shipped config, with every data path under ``tmp_path``."""
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(repo_root / "config"))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path))
    for name in ("MOZART_DUCKDB_PATH", "MOZART_LAKE_URL", "MOZART_REPORT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path
