"""The `mozart` command: argument handling, validate, status, exit codes; nothing here needs a service."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import luigi
import pytest

from mozart_luigi.cli import main
from mozart_luigi.runner import DEFAULT_RETCODES, exit_code, retcodes

pytestmark = pytest.mark.unit
CANARY = "canary-Pa55word-7f3e"


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_root: Path) -> Path:
    """Local profile, shipped config, data under tmp; main() may change these, monkeypatch restores them."""
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(repo_root / "config"))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MOZART_REPORT_DIR", raising=False)
    monkeypatch.delenv("MOZART_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("MOZART_LAKE_URL", raising=False)
    return tmp_path


def _broken_config(tmp_path: Path, repo_root: Path) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(repo_root / "config" / "tables.yaml", folder / "tables.yaml")
    (folder / "tenants.yaml").write_text(
        "tenants:\n"
        "  good:\n"
        "    source: {kind: postgresql, url: 'postgresql://u:${CANARY_PW}@db:5432/x'}\n"
        "  Bad-Id:\n"
        "    source: {kind: sqlite, path: /tmp/x.sqlite}\n"
        "  typo:\n"
        "    sorce: {kind: sqlite}\n"
        "  nopass:\n"
        "    source: {kind: mysql, host: h, user: u, database: d, password: '${MISSING_PW_VAR}'}\n"
    )
    return folder


def test_help_lists_every_subcommand(repo_root: Path) -> None:
    out = subprocess.run(
        [str(repo_root / ".venv" / "bin" / "mozart"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("validate", "plan", "status", "run", "demo"):
        assert command in out


def test_validate_ok_lists_tenants_without_secrets(local_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out
    for tenant in ("demo_north", "demo_south", "demo_west"):
        assert tenant in out


def test_validate_reports_every_problem_and_exits_2(
    local_env: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CANARY_PW", CANARY)
    monkeypatch.delenv("MISSING_PW_VAR", raising=False)
    folder = _broken_config(local_env, repo_root)
    assert main(["--config-dir", str(folder), "validate"]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert "invalid tenant id 'Bad-Id'" in err
    assert "tenants.typo.sorce: unknown key" in err
    assert "tenants.nopass.source.password: env var MISSING_PW_VAR is not set" in err
    assert CANARY not in captured.out + err


def test_stack_profile_validate_shows_sources_but_never_passwords(
    local_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ACME_DB_PASSWORD", "GLOBEX_DB_PASSWORD", "MOZART_S3_SECRET_KEY"):
        monkeypatch.setenv(name, CANARY)
    monkeypatch.setenv("MOZART_S3_ACCESS_KEY", "access")
    assert main(["--profile", "stack", "validate"]) == 0
    out = capsys.readouterr().out
    assert "acme: postgresql://acme_reader@" in out
    assert "globex: mysql://globex_reader@" in out
    assert CANARY not in out


def test_bad_date_is_an_argument_error(local_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", "--date", "28/11/2026"])
    assert exc.value.code == 2
    assert "not a date (YYYY-MM-DD)" in capsys.readouterr().err


def test_unknown_tenant_is_a_config_error(local_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--date", "2026-11-28", "--tenant", "nobody"]) == 2
    assert "unknown tenant 'nobody'" in capsys.readouterr().err


def test_status_of_an_empty_data_dir_is_all_missing(local_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--date", "2026-11-28", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["date"] == "2026-11-28"
    assert report["ok"] is False
    assert len(report["tables"]) == 12
    assert {row["status"] for row in report["tables"]} == {"missing"}
    assert report["counts"] == {"done": 0, "missing": 15, "failed": 0}
    assert main(["status", "--date", "2026-11-28", "--tenant", "demo_west"]) == 1
    text = capsys.readouterr().out
    assert "Run report for 2026-11-28 (profile local)" in text
    assert "demo_north" not in text
    assert "0 done, 5 missing, 0 failed" in text


# ------------------------------------------------------------------------------------------ exit codes


class _T(luigi.Task):
    name = luigi.Parameter()


def _sets(**categories: set[luigi.Task]) -> dict[str, set[luigi.Task]]:
    return {
        key: categories.get(key, set())
        for key in (
            "completed",
            "already_done",
            "failed",
            "scheduling_error",
            "still_pending_ext",
            "run_by_other_worker",
            "not_run",
        )
    }


def test_exit_codes_follow_the_retcode_section_of_luigi_cfg() -> None:
    assert retcodes() == DEFAULT_RETCODES  # the shipped luigi.cfg (or its defaults) is in effect
    root, child = _T(name="root"), _T(name="child")
    assert exit_code(_sets(completed={root, child}), roots=[root]) == 0
    assert exit_code(_sets(already_done={root}), roots=[root]) == 0
    assert exit_code(_sets(failed={child}), roots=[root]) == 30
    assert exit_code(_sets(failed={child}, scheduling_error={child}), roots=[root]) == 35
    assert exit_code(_sets(run_by_other_worker={child}), roots=[root]) == 10
    assert exit_code(_sets(still_pending_ext={child}), roots=[root]) == 20
    other = _T(name="other")
    assert exit_code(_sets(completed={root}), roots=[root, other]) == 25  # a root that did not finish


def test_plan_lists_the_tasks_that_would_run_and_runs_nothing(
    local_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--date", "2026-11-28", "--tenant", "demo_west"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Plan for 2026-11-28 (profile local): 11 to run, 0 complete, 0 error(s)"
    assert out[1] == '[to run] AllTenants(date=2026-11-28, tenants=["demo_west"])'
    assert "      [to run] LoadIceberg(tenant=demo_west, date=2026-11-28, table=customers)" in out
    assert main(["plan", "--date", "2026-11-28", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["counts"] == {"done": 0, "to run": 31, "error": 0}
    assert not (local_env / "data" / "lake").exists()  # nothing ran, nothing was written


def test_run_without_a_reachable_luigid_says_so(local_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket
    import time

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    code = main(["run", "--date", "2026-11-28", "--tenants", "demo_west", "--scheduler-port", str(port)])
    assert code == 45  # its own exit code, within seconds (one probe, no RPC retries)
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}" in err and "start luigid (make luigid) or pass --local-scheduler" in err


def test_tasks_held_by_another_worker_exit_10_not_25() -> None:
    """Two runs through one luigid: the one whose tasks (or their upstream) another worker runs exits 10."""
    root, load, dbt = _T(name="root"), _T(name="load"), _T(name="dbt")
    held = {**_sets(run_by_other_worker={load}, not_run={dbt, root}), "upstream_run_by_other_worker": {dbt, root}}
    assert exit_code(held, roots=[root]) == 10
    waiting = {**_sets(not_run={dbt, root}), "upstream_run_by_other_worker": {dbt, root}}
    assert exit_code(waiting, roots=[root]) == 10
    mixed = {**_sets(run_by_other_worker={load}, not_run={dbt, root}), "upstream_run_by_other_worker": {root}}
    assert exit_code(mixed, roots=[root]) == 25  # dbt was not run for another reason: still not_run
