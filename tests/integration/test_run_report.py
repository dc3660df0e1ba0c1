"""The run report through `mozart run`: one tenant with a bad source fails (exit 30, rows `failed` with the
error, never the password) while the other completes (rows extracted == rows loaded); `mozart status`
rebuilds the same picture later and keeps the failures; report.json is written next to the logs; the closing
block names what failed and how to rerun it; neither the run's log file nor its run record holds the password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import BIN, Setup, cleanup, local_setup, run, stack_setup, unique

pytestmark = pytest.mark.integration
DATE = "2026-11-28"
WRONG = "wrong-Pa55word-c4n4ry"


def _check(setup: Setup, good: str, bad: str, tmp_path: Path, *, error: str) -> None:
    log = tmp_path / "run.log"
    done = run([str(BIN / "mozart"), "run", "--date", DATE, "--local-scheduler", "--workers", "2"], setup, log=log)
    assert done.returncode == 30, log.read_text()[-5000:]
    assert "Run report for 2026-11-28" in done.stdout
    assert ": 5 done, 1 missing, 4 failed (exit 30)" in done.stdout
    assert f"FAILED {bad} " in done.stdout and f"  rerun:   mozart rerun --tenant {bad}" in done.stdout
    (mozart_log,) = [Path(line[5:]) for line in done.stdout.splitlines() if line.startswith("log: ")]
    report = json.loads((setup.data_dir / "reports" / DATE / "report.json").read_text())
    assert report["ok"] is False
    assert report["run"] == {"status": "FAILED", "exit_code": 30}
    rows = {(r["tenant"], r["table"]): r for r in report["tables"]}
    for table in ("customers", "products", "orders", "order_items"):
        ok, failed = rows[(good, table)], rows[(bad, table)]
        assert ok["status"] == "done" and ok["rows_extracted"] == ok["rows_loaded"] > 0, ok
        assert ok["seconds"] is not None and ok["seconds"] >= 0
        assert failed["status"] == "failed" and failed["rows_loaded"] is None, failed
        assert failed["error"].startswith("ExtractTable: ") and error in failed["error"], failed["error"]
    dbt = {d["tenant"]: d["status"] for d in report["dbt"]}
    assert dbt == {good: "done", bad: "missing"}
    assert report["counts"] == {"done": 5, "missing": 1, "failed": 4}
    status = run([str(BIN / "mozart"), "status", "--date", DATE, "--json"], setup)
    assert status.returncode == 1
    again = json.loads(status.stdout)
    assert [(r["tenant"], r["table"], r["status"]) for r in again["tables"]] == [
        (r["tenant"], r["table"], r["status"]) for r in report["tables"]
    ]
    text = run([str(BIN / "mozart"), "status", "--date", DATE, "--tenant", good], setup)
    assert text.returncode == 0 and "5 done, 0 missing, 0 failed" in text.stdout
    runs = (setup.data_dir / "reports" / "runs.jsonl").read_text()
    for where in (log.read_text(), json.dumps(report), status.stdout, mozart_log.read_text(), runs):
        assert WRONG not in where


def test_report_local_missing_source_fails_one_tenant(tmp_path: Path) -> None:
    setup = local_setup(tmp_path, ["demo_west", "demo_gone"], canary=WRONG)
    (setup.data_dir / "sources" / "demo_gone.sqlite").unlink()
    _check(setup, "demo_west", "demo_gone", tmp_path, error="demo_gone")


def test_report_stack_wrong_password_fails_one_tenant(stack_env: dict[str, str], tmp_path: Path) -> None:
    setup = stack_setup(tmp_path, stack_env, unique("t_report"), ["acme", "globex"])
    tenants = yaml.safe_load((setup.config_dir / "tenants.yaml").read_text())
    bad = setup.tenants[1]
    tenants["tenants"][bad]["source"]["password"] = "${T_REPORT_WRONG_PW}"
    (setup.config_dir / "tenants.yaml").write_text(yaml.safe_dump(tenants, sort_keys=False))
    setup.env["T_REPORT_WRONG_PW"] = WRONG
    try:
        _check(setup, setup.tenants[0], bad, tmp_path, error="globex_reader")
    finally:
        cleanup(setup)
