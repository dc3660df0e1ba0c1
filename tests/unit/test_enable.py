"""Disabled, retried, unreachable, told plainly: luigid's disabled tasks in ``mozart run``'s closing block,
``mozart enable``, exit 45 within seconds when luigid does not answer, the local scheduler by default in
profile ``local``, and ``mozart plan | head`` without a traceback."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import pytest
from luigid_local import free_port
from luigid_local import luigid as start_luigid

from mozart_luigi.cli import main
from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.demo import generate_source
from mozart_luigi.luigid_api import LuigidClient
from mozart_luigi.runlog import read_records, runs_path
from mozart_luigi.tasks.extract import ExtractTable

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
TENANT = "demo_west"
DAY = dt.date(2026, 11, 28)


def _disable(port: int, task: ExtractTable) -> None:
    """As a worker whose task failed once with retry_count 1: luigid disables it."""
    from luigi.rpc import RemoteScheduler

    scheduler = RemoteScheduler(f"http://127.0.0.1:{port}/")
    for status in ("PENDING", "FAILED"):
        scheduler.add_task(
            worker="enable-test",
            task_id=task.task_id,
            status=status,
            family=task.task_family,
            params=task.to_str_params(),
            runnable=True,
            retry_policy_dict={"retry_count": 1},
        )


def test_disabled_tasks_are_named_in_the_closing_block_and_mozart_enable_re_enables_them(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset_config_cache()
    generate_source(Path(get_config().tenant(TENANT).source.path), TENANT)
    orders = ExtractTable(tenant=TENANT, table="orders", date=DAY)
    with start_luigid(local) as port:
        luigid = LuigidClient("127.0.0.1", port)
        _disable(port, orders)
        assert [t.task_id for t in luigid.disabled()] == [orders.task_id]
        capsys.readouterr()
        code = main(["run", "--date", DAY.isoformat(), "--tenants", TENANT, "--scheduler-port", str(port)])
        out = capsys.readouterr().out
        assert code != 0  # the disabled extract (and what needs it) did not run
        assert f"{TENANT}.customers {DAY} loaded" in out and f"{TENANT}.orders {DAY} extracted" not in out
        assert (
            f"DISABLED by luigid after repeated failures (not run until re-enabled): {TENANT}.orders extract {DAY}"
            in out
        )
        assert f"  after fixing the cause: mozart enable --tenant {TENANT} --date {DAY}" in out
        assert [t.task_id for t in luigid.disabled()] == [orders.task_id]  # a new run does not re-enable it

        assert main(["enable", "--tenant", "demo_north", "--scheduler-port", str(port)]) == 0
        assert "holds no disabled task of demo_north" in capsys.readouterr().out
        assert main(["enable", "--tenant", TENANT, "--date", DAY.isoformat(), "--scheduler-port", str(port)]) == 0
        assert f"re-enabled: {TENANT}.orders extract {DAY}" in capsys.readouterr().out
        assert luigid.disabled() == []
        assert orders.task_id in luigid.task_list("FAILED")  # failures forgotten: the next run runs it
        code = main(["run", "--date", DAY.isoformat(), "--tenants", TENANT, "--scheduler-port", str(port)])
        assert code == 0, capsys.readouterr().out
        assert f"{TENANT}.orders {DAY} extracted" in capsys.readouterr().out


def test_an_unreachable_luigid_fails_within_seconds_with_exit_45(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset_config_cache()
    port = str(free_port())
    for argv in (
        ["run", "--date", DAY.isoformat(), "--luigid", "--scheduler-port", port],
        ["backfill", "--from", DAY.isoformat(), "--to", DAY.isoformat(), "--scheduler-port", port],
        ["enable", "--scheduler-port", port],
    ):
        started = time.monotonic()
        assert main(argv) == 45, argv
        assert time.monotonic() - started < 15, argv
        assert f"luigid at http://127.0.0.1:{port} did not answer" in capsys.readouterr().err
    records = read_records(runs_path(get_config().settings))
    assert [(r["entry_point"], r["exit_code"], r["status"]) for r in records] == [
        ("mozart run", 45, "LUIGID_UNREACHABLE"),
        ("mozart backfill", 45, "LUIGID_UNREACHABLE"),
    ]


def test_profile_local_uses_the_local_scheduler_by_default(
    local: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import luigi.configuration

    reset_config_cache()  # luigid of luigi.cfg is pointed at a port where nothing listens: it is never asked
    monkeypatch.setattr(luigi.configuration.get_config(), "get", _core_port(str(free_port())))
    assert main(["run", "--date", DAY.isoformat(), "--tenants", TENANT]) == 30  # its source does not exist
    assert "did not answer" not in capsys.readouterr().err
    assert main(["run", "--date", DAY.isoformat(), "--tenants", TENANT, "--luigid"]) == 45
    assert main(["run", "--date", DAY.isoformat(), "--local-scheduler", "--luigid"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def _core_port(port: str):
    import luigi.configuration

    original = luigi.configuration.get_config().get

    def get(section, option, *args, **kwargs):
        if (section, option) in (("core", "scheduler_port"), ("core", "scheduler-port")):
            return port
        return original(section, option, *args, **kwargs)

    return get


def test_plan_into_a_closed_pipe_ends_without_a_traceback(local: Path) -> None:
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "mozart"), "plan", "--date", DAY.isoformat()],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head` does once it has its lines: every write of mozart now fails (EPIPE)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err
    piped = subprocess.run(
        f"{REPO / '.venv' / 'bin' / 'mozart'} plan --date {DAY} | head -n 1",
        shell=True,
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.stdout.startswith(f"Plan for {DAY}") and piped.stderr == ""
