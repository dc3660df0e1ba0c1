"""``mozart validate --connect``: each source reached with its columns checked, never a secret printed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from mozart_luigi.cli import main
from mozart_luigi.config import reset_config_cache

pytestmark = pytest.mark.unit
CANARY = "canary-Connect-Pw-77e1"


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict) -> None:
    good = tmp_path / "good.sqlite"
    with sqlite3.connect(good) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER, updated_at TIMESTAMP, note TEXT)")
    tenants = {
        "tenants": {
            "good": {"source": {"kind": "sqlite", "path": str(good)}},
            "gone": {
                "source": {
                    "kind": "postgresql",
                    "host": "127.0.0.1",
                    "port": 1,
                    "database": "x",
                    "user": "u",
                    "password": "${GONE_PASSWORD}",
                    "connect_timeout": 2,
                }
            },
        }
    }
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "tenants.yaml").write_text(yaml.safe_dump(tenants), encoding="utf-8")
    (folder / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}), encoding="utf-8")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(folder))
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GONE_PASSWORD", CANARY)
    reset_config_cache()


def test_connect_reports_each_tenant_and_missing_columns(tmp_path, monkeypatch, capsys) -> None:
    tables = {"orders": {"mode": "incremental", "cursor": "updated_at", "primary_key": ["order_id", "no_such"]}}
    _config(tmp_path, monkeypatch, tables)
    assert main(["validate"]) == 0  # without --connect nothing is reached
    assert main(["validate", "--connect"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "FAIL  tenant good" in text and "primary_key: column 'no_such' not found in orders" in text
    assert "FAIL  tenant gone" in text
    assert CANARY not in text


def test_connect_ok_when_everything_is_there(tmp_path, monkeypatch, capsys) -> None:
    _config(tmp_path, monkeypatch, {"orders": {"mode": "full", "primary_key": ["order_id"]}})
    code = main(["validate", "--connect"])
    text = capsys.readouterr().out
    assert "ok    tenant good" in text
    assert code == 1 and "FAIL  tenant gone" in text  # the unreachable tenant still fails, alone
