"""The quiet terminal of ``mozart run`` (profile local, the real command in a subprocess): one line per finished
task, a closing block, the detail in a log file; ``-v`` shows the log; a live progress line only on a TTY."""

from __future__ import annotations

import datetime as dt
import os
import pty
import re
import select
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.demo import generate_source
from mozart_luigi.run_events import TaskEvent
from mozart_luigi.terminal import Terminal

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
MOZART = str(REPO / ".venv" / "bin" / "mozart")
TENANTS = ("demo_north", "demo_south", "demo_west")
TABLES = ("customers", "products", "orders", "order_items")
D_OK, D_FAIL, D_VERBOSE, D_TTY = "2026-11-28", "2026-11-27", "2026-11-26", "2026-11-25"
TASK_LINE = re.compile(
    r"^(?P<tenant>demo_\w+)(?:\.(?P<table>\w+) (?P<date>\S+) (?P<verb>extracted|loaded) [\d,]+ rows"
    r"| \(dbt build\) (?P<ddate>\S+) \d+ models, \d+ tests) in \d+\.\d s$"
)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The three demo tenants' sources in a data folder of the module; the environment to run mozart in."""
    data = tmp_path_factory.mktemp("night")
    env = {
        **os.environ,
        "MOZART_PROFILE": "local",
        "MOZART_CONFIG_DIR": str(REPO / "config"),
        "MOZART_DATA_DIR": str(data),
        "COLUMNS": "200",
    }
    for name in ("MOZART_DUCKDB_PATH", "MOZART_LAKE_URL", "MOZART_REPORT_DIR"):
        env.pop(name, None)
    with pytest.MonkeyPatch.context() as patch:
        for key in ("MOZART_PROFILE", "MOZART_CONFIG_DIR", "MOZART_DATA_DIR"):
            patch.setenv(key, env[key])
        reset_config_cache()
        for tenant in TENANTS:
            generate_source(Path(get_config().tenant(tenant).source.path), tenant)
        reset_config_cache()
    yield env
    reset_config_cache()


def _mozart(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOZART, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


@contextmanager
def _source_missing(env: dict[str, str], tenant: str) -> Iterator[None]:
    source = Path(env["MOZART_DATA_DIR"]) / "sources" / f"{tenant}.sqlite"
    aside = source.with_suffix(".aside")
    shutil.move(source, aside)
    try:
        yield
    finally:
        shutil.move(aside, source)


def _log_file(stdout: str) -> Path:
    (line,) = [line for line in stdout.splitlines() if line.startswith("log: ")]
    return Path(line.removeprefix("log: "))


def test_a_good_night_of_three_tenants_fits_in_30_lines(night: dict[str, str]) -> None:
    done = _mozart(night, "run", "--date", D_OK)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 30, done.stdout
    assert done.stderr == ""  # no log record, no Luigi chatter on the terminal
    tasks = [m for m in map(TASK_LINE.match, lines) if m]
    assert len(tasks) == 3 * (2 * len(TABLES) + 1) == len(lines) - 3
    assert {(m["tenant"], m["table"], m["verb"]) for m in tasks if m["table"]} == {
        (tenant, table, verb) for tenant in TENANTS for table in TABLES for verb in ("extracted", "loaded")
    }
    assert {m["date"] or m["ddate"] for m in tasks} == {D_OK}
    assert lines[-3] == f"Run report for {D_OK} (profile local): 15 done, 0 missing, 0 failed"
    assert lines[-2] == f"report: {Path(night['MOZART_DATA_DIR']) / 'reports' / D_OK / 'report.json'}"
    log = _log_file(done.stdout)
    assert log.parent == Path(night["MOZART_DATA_DIR"]) / "logs"
    assert "luigi-interface" in log.read_text() and "Luigi Execution Summary" in log.read_text()


def test_one_failing_tenant_fits_in_40_lines_and_the_log_has_the_traceback(night: dict[str, str]) -> None:
    with _source_missing(night, "demo_west"):
        done = _mozart(night, "run", "--date", D_FAIL)
    assert done.returncode == 30, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 40, done.stdout
    assert done.stderr == "" and "Traceback" not in done.stdout
    failed = [line for line in lines if " extract FAILED: " in line]
    assert sorted(line.split()[0] for line in failed) == sorted(f"demo_west.{t}" for t in TABLES)
    assert all(f"{D_FAIL} extract FAILED: ExtractTable: SourceError: " in line for line in failed)
    head = f"Run report for {D_FAIL} (profile local): 10 done, 1 missing, 4 failed (exit 30)"
    block = lines[lines.index(head) + 1 :]
    assert block[0].startswith(
        "FAILED demo_west customers, products, orders, order_items: ExtractTable: "
        "SourceError: tenant 'demo_west', table '*': cannot connect to sqlite:"
    )
    assert block[1].startswith("  look at: the source of demo_west: tenants.demo_west.source in ")
    assert "config/tenants.yaml (sqlite:" in block[1]
    assert block[2] == f"  rerun:   mozart rerun --tenant demo_west --date {D_FAIL}"
    log = _log_file(done.stdout).read_text()
    assert "Traceback (most recent call last)" in log and "unable to open database file" in log


def test_verbose_shows_the_log_on_stderr(night: dict[str, str]) -> None:
    with _source_missing(night, "demo_west"):
        quiet = _mozart(night, "run", "--date", D_VERBOSE, "--tenants", "demo_west")
        loud = _mozart(night, "run", "--date", D_VERBOSE, "--tenants", "demo_west", "-v")
    assert quiet.returncode == loud.returncode == 30
    assert quiet.stderr == ""
    assert "luigi-interface" in loud.stderr and "Traceback (most recent call last)" in loud.stderr
    assert [line for line in loud.stdout.splitlines() if "FAILED" in line] == [
        line for line in quiet.stdout.splitlines() if "FAILED" in line
    ]


def test_a_live_progress_line_only_on_a_tty(night: dict[str, str]) -> None:
    with _source_missing(night, "demo_west"):
        raw = _on_a_tty(night, "run", "--date", D_TTY, "--tenants", "demo_west")
        piped = _mozart(night, "run", "--date", D_TTY, "--tenants", "demo_west")
    assert re.search(r"\d+ done, \d+ failed, 0:\d\d", raw), raw  # the live line, drawn by rich
    assert "\x1b[" in raw
    assert f"demo_west.orders {D_TTY} extract FAILED" in raw
    assert "\x1b[" not in piped.stdout and not re.search(r"\d+ done, \d+ failed, 0:\d\d", piped.stdout)


def _on_a_tty(env: dict[str, str], *args: str) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [MOZART, *args], cwd=REPO, env={**env, "TERM": "xterm"}, stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_grouped_lines_one_per_tenant_and_day(tmp_path: Path) -> None:
    """``mozart demo``'s mode: four days of three tenants make twelve lines; a failure still has its own."""
    out = tmp_path / "out.txt"
    days = [(dt.date(2026, 11, 25) + dt.timedelta(days=i)).isoformat() for i in range(4)]
    with out.open("w") as handle, Terminal(handle, grouped=True) as terminal:
        for day in days:
            for tenant in TENANTS:
                for table in TABLES:
                    for family in ("ExtractTable", "LoadIceberg"):
                        terminal.event(
                            TaskEvent(
                                "done",
                                f"{family}-{tenant}-{table}-{day}",
                                family,
                                tenant,
                                day,
                                table,
                                seconds=0.1,
                                rows=10,
                            )
                        )
                terminal.event(
                    TaskEvent(
                        "done", f"dbt-{tenant}-{day}", "DbtRun", tenant, day, None, seconds=9.5, models=9, tests=38
                    )
                )
        terminal.event(
            TaskEvent(
                "failed",
                "x",
                "ExtractTable",
                "demo_west",
                "2026-11-29",
                "orders",
                error="ExtractTable: mozart_luigi.errors.SourceError: boom",
            )
        )
    lines = out.read_text().splitlines()
    assert len(lines) == 13
    assert lines[0] == (
        "demo_north 2026-11-25: 4 table(s), 40 rows extracted and loaded; dbt 9 models, 38 tests in 9.5 s"
    )
    assert lines[-1] == "demo_west.orders 2026-11-29 extract FAILED: ExtractTable: SourceError: boom"
