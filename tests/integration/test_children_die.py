"""Children die with their SIGKILLed worker: a child started through ``children.popen`` (the helper dbt is
started with), and dbt itself started by ``run_dbt`` in the middle of a build, are gone within seconds of
their parent's SIGKILL, and dbt's DuckDB file opens for write again.

No stack needed: local processes and dbt-duckdb. The dbt build is a throw-away project whose one Python
model (run by dbt-duckdb inside the dbt process, connection open) writes dbt's pid to a flag file and sleeps
for 300 s, so "mid-build" is a state the test waits for, not a moment it guesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only"),
]
GONE_WITHIN = 10.0  # seconds; the kernel signals at once, this only bounds the polling

PARENT = """\
import sys, time
from mozart_luigi import children
child = children.popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(300)
"""

WORKER = """\
import datetime as dt, sys
from pathlib import Path
from mozart_luigi.dbt_runner import run_dbt
from mozart_luigi.settings import Settings
project, data = Path(sys.argv[1]), Path(sys.argv[2])
settings = Settings(profile="local", data_dir=data, duckdb_path=data / "warehouse.duckdb")
run_dbt("acme", dt.date(2026, 11, 28), settings=settings, project=project, target="local")
"""

PROJECT = {
    "dbt_project.yml": 'name: asleep\nversion: "1.0"\nprofile: asleep\nmodel-paths: ["models"]\n',
    "profiles.yml": """\
asleep:
  target: local
  outputs:
    local:
      type: duckdb
      path: "{{ env_var('MOZART_DUCKDB_PATH') }}"
      threads: 1
""",
    "models/asleep.py": """\
import os
import time


def model(dbt, session):
    flag = os.environ["MOZART_TEST_DBT_FLAG"]
    with open(flag + ".tmp", "w") as out:
        out.write(str(os.getpid()))
    os.rename(flag + ".tmp", flag)
    time.sleep(300)
    return session.sql("select 1 as x")
""",
}


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (state, ppid, ...); None when the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _gone(pid: int) -> bool:
    """Exited: no such pid, or a zombie (dead, every file and lock released, not yet reaped by init)."""
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def _parent_of(pid: int) -> int | None:
    stat = _stat(pid)
    return int(stat[1]) if stat else None


def _wait_gone(pid: int, seconds: float = GONE_WITHIN) -> bool:
    deadline = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _live_processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and not _gone(int(entry.name)):
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # exited while we looked
                continue
    return found


def _kill_leftover(pid: int | None) -> None:
    """So that a failing run (the child survived) leaves no 300 s sleeper behind."""
    if pid is not None and not _gone(pid):
        os.kill(pid, signal.SIGKILL)


def _wait_for_flag(flag: Path, worker: subprocess.Popen[bytes], log: Path, seconds: float = 180.0) -> int:
    deadline = time.monotonic() + seconds
    while not flag.exists():
        assert worker.poll() is None, f"the worker exited ({worker.returncode}): {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"dbt did not reach the model in {seconds:.0f}s"
        time.sleep(0.1)
    return int(flag.read_text())


@pytest.fixture
def sleeping_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name, text in PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text, encoding="utf-8")
    return project


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        _kill_leftover(pid)


def test_a_child_dies_with_its_sigkilled_parent(leftovers: list[int]) -> None:
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        leftovers.append(child)
        assert _parent_of(child) == parent.pid and not _gone(child)

        parent.kill()
        parent.wait(timeout=10)

    assert _wait_gone(child), f"child {child} still runs {GONE_WITHIN:.0f}s after its parent was SIGKILLed"


def test_dbt_dies_with_its_sigkilled_worker_mid_build_and_frees_the_duckdb_file(
    tmp_path: Path, sleeping_project: Path, leftovers: list[int]
) -> None:
    import duckdb

    data, flag, log = tmp_path / "data", tmp_path / "dbt.pid", tmp_path / "worker.log"
    env = {**os.environ, "MOZART_TEST_DBT_FLAG": str(flag)}
    with (
        log.open("wb") as out,
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(sleeping_project), str(data)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as worker,
    ):
        dbt = _wait_for_flag(flag, worker, log)
        leftovers.append(dbt)
        assert _parent_of(dbt) == worker.pid, "the model runs in dbt, the worker's child"
        with pytest.raises(duckdb.IOException, match="lock"):  # dbt holds the file: the kill is mid-build
            duckdb.connect(str(data / "warehouse.duckdb")).close()

        worker.kill()
        worker.wait(timeout=10)

    assert _wait_gone(dbt), f"dbt {dbt} still runs {GONE_WITHIN:.0f}s after its worker was SIGKILLed"
    assert _live_processes_mentioning(str(sleeping_project)) == []
    # the lock goes with the last of dbt's threads: a SIGKILLed leader can read as gone (zombie) while its
    # other threads are still exiting, so opening for write is retried until GONE_WITHIN, never longer
    deadline = time.monotonic() + GONE_WITHIN
    while True:
        try:
            con = duckdb.connect(str(data / "warehouse.duckdb"))  # opens for write: the lock is released
            break
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with con:
        con.execute("CREATE TABLE after_the_kill AS SELECT 1 AS x")
        assert con.execute("SELECT x FROM after_the_kill").fetchall() == [(1,)]
