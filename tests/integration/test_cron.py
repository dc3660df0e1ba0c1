"""scripts/cron/mozart-daily: one run at a time (flock), a dated log, the run's exit code passed through."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from pipeline_helpers import cleanup, stack_setup, unique

EXIT_LOCKED = 10  # documented in scripts/cron/mozart-daily and the README (luigi's already_running)


def _script(repo_root: Path) -> Path:
    return repo_root / "scripts" / "cron" / "mozart-daily"


def _fake_mozart(tmp_path: Path, *, sleep: float, exit_code: int) -> Path:
    """A stand-in for `mozart` that records its arguments; only used to test the wrapper itself."""
    fake = tmp_path / "fake-mozart"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$@" >> "{tmp_path}/calls"\n'
        'echo "fake mozart running in $PWD"\n'
        f"sleep {sleep}\n"
        f"exit {exit_code}\n"
    )
    fake.chmod(0o755)
    return fake


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MOZART_DATA_DIR=str(tmp_path / "data"), MOZART_LOG_DIR=str(tmp_path / "logs"), **extra)
    return env


@pytest.mark.unit
def test_two_runs_at_once_one_works_the_other_exits_already_running(tmp_path: Path, repo_root: Path) -> None:
    env = _env(tmp_path, MOZART_BIN=str(_fake_mozart(tmp_path, sleep=3, exit_code=0)))
    first = subprocess.Popen(
        [_script(repo_root), "--date", "2026-11-28"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not (tmp_path / "calls").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(
        [_script(repo_root), "--date", "2026-11-28"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    _, first_err = first.communicate(timeout=30)
    assert first.returncode == 0, first_err
    assert second.returncode == EXIT_LOCKED, second.stderr
    assert "another run holds" in second.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["run --date 2026-11-28 --workers 2 --local-scheduler"]  # the second never started mozart
    log = (tmp_path / "logs" / "mozart-daily-2026-11-28.log").read_text()
    assert "fake mozart running in " + str(repo_root) in log
    assert "end: exit code 0" in log
    assert "another run holds" in log
    # once the lock is free, the next run works again
    assert (
        subprocess.run([_script(repo_root), "--date", "2026-11-28"], check=False, env=env, timeout=30).returncode == 0
    )


@pytest.mark.unit
def test_failure_exit_code_is_passed_through_and_default_date_is_yesterday(tmp_path: Path, repo_root: Path) -> None:
    env = _env(tmp_path, MOZART_BIN=str(_fake_mozart(tmp_path, sleep=0, exit_code=30)), MOZART_SCHEDULER="luigid")
    done = subprocess.run(
        [_script(repo_root), "--tenants", "acme"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    assert done.returncode == 30
    assert f"failed with exit code 30; see {tmp_path}/logs/mozart-daily-{yesterday}.log" in done.stderr
    assert (tmp_path / "calls").read_text().strip() == f"run --date {yesterday} --workers 2 --tenants acme --luigid"


@pytest.mark.unit
def test_bad_arguments_are_refused(tmp_path: Path, repo_root: Path) -> None:
    env = _env(tmp_path, MOZART_BIN=str(_fake_mozart(tmp_path, sleep=0, exit_code=0)))
    assert (
        subprocess.run(
            [_script(repo_root), "--date", "yesterday"], check=False, env=env, capture_output=True, timeout=30
        ).returncode
        == 2
    )
    bad = subprocess.run(
        [_script(repo_root)],
        check=False,
        env={**env, "MOZART_SCHEDULER": "remote"},
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert not (tmp_path / "calls").exists()


@pytest.mark.integration
def test_real_daily_runs_at_once_on_the_stack(stack_env: dict[str, str], tmp_path: Path, repo_root: Path) -> None:
    """The real thing: two mozart-daily at once for unique stack tenants; one runs, the other exits 10."""
    setup = stack_setup(tmp_path, stack_env, unique("t_cron"), ["acme", "globex"])
    env = {**setup.env, "MOZART_LOG_DIR": str(tmp_path / "logs"), "MOZART_WORKERS": "2"}
    args = [_script(repo_root), "--date", "2026-11-28"]
    log = tmp_path / "logs" / "mozart-daily-2026-11-28.log"
    try:
        first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (log.exists() and "start" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
        first.communicate(timeout=1200)
        assert second.returncode == EXIT_LOCKED, second.stderr
        assert first.returncode == 0, log.read_text()[-4000:]
        text = log.read_text()
        assert "Run report for 2026-11-28 (profile stack)" in text
        report = json.loads((setup.data_dir / "reports" / "2026-11-28" / "report.json").read_text())
        assert report["ok"] is True
        assert {row["tenant"] for row in report["tables"]} == set(setup.tenants)
        assert all(row["rows_extracted"] == row["rows_loaded"] > 0 for row in report["tables"])
        for name in ("ACME_DB_PASSWORD", "GLOBEX_DB_PASSWORD", "MOZART_S3_SECRET_KEY"):
            assert stack_env[name] not in text, name
    finally:
        cleanup(setup)
