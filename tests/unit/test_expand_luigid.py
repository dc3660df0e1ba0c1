"""``AllTenants --expand per-tenant`` through a real luigid: a worker killed -9 inside an extract of the tenant
it took on; a worker process started for the same night afterwards re-adds that tenant's pipeline, takes the
tenant over (luigid gives a task only to a worker that added it, so the dead worker's subtree needs a process
that adds it again: docs/operations.md, "Big nights"), waits for luigid to fail the dead worker's running
extract, and completes the night: every task done once, none by the dead worker (profile ``local``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from luigid_local import REPO, luigid

from mozart_luigi.config import get_config
from mozart_luigi.demo import DEMO_DATE, generate_source
from mozart_luigi.warehouse import open_warehouse

pytestmark = pytest.mark.unit
TENANTS = ("demo_north", "demo_south", "demo_west")


def _worker(port: int, name: str, log: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    argv = [
        str(REPO / ".venv" / "bin" / "luigi"),
        "--module",
        "mozart_luigi",
        "AllTenants",
        "--date",
        DEMO_DATE.isoformat(),
        "--expand",
        "per-tenant",
        "--scheduler-host",
        "127.0.0.1",
        "--scheduler-port",
        str(port),
        "--workers",
        "1",
        "--worker-id",
        name,
        *extra,
    ]
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _done(text: str, worker: str) -> list[str]:
    return re.findall(rf"Worker {worker} done +((?:ExtractTable|LoadIceberg|DbtRun)\(.*\))", text)


def _dbt_markers() -> set[str]:
    with open_warehouse(get_config().settings) as warehouse:
        return {tenant for _, tenant, _ in warehouse.completed_rows("DbtRun", [(t, DEMO_DATE) for t in TENANTS])}


def test_a_killed_worker_leaves_only_its_tenant_to_the_next_run(local: Path, tmp_path: Path) -> None:
    for tenant in TENANTS:
        generate_source(Path(get_config().tenant(tenant).source.path), tenant)
    cfg = tmp_path / "luigid.cfg"
    cfg.write_text("[scheduler]\nworker_disconnect_delay = 5\nretry_delay = 3\n")
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}  # read after the project's luigi.cfg (cwd)
    os.environ["LUIGI_CONFIG_PATH"] = str(cfg)  # luigid_local starts luigid with os.environ
    try:
        with luigid(tmp_path) as port:
            paused = {**env, "MOZART_TEST_PAUSE_AT": "before_manifest", "MOZART_TEST_PAUSE_DIR": str(tmp_path)}
            first = _worker(port, "w-killed", tmp_path / "killed.log", paused)
            reached = tmp_path / "before_manifest.reached"
            deadline = time.monotonic() + 300
            while not reached.exists() or not reached.read_text():
                assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "killed.log").read_text()
                time.sleep(0.1)
            assert int(reached.read_text()) == first.pid
            killed_log = (tmp_path / "killed.log").read_text()
            running = r"running +ExtractTable\(tenant=(\w+), date=[\d-]+, table=(\w+)\)"
            [(taken, table)] = re.findall(running, killed_log)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)

            survivor = _worker(port, "w-survivor", tmp_path / "survivor.log", env, "--worker-keep-alive")
            assert survivor.wait(timeout=600) in (0, 10, 25), (tmp_path / "survivor.log").read_text()[-4000:]
            survivor_log = (tmp_path / "survivor.log").read_text()
    finally:
        os.environ.pop("LUIGI_CONFIG_PATH", None)
    assert _dbt_markers() == set(TENANTS)
    assert _done(killed_log, "w-killed") == []  # killed in its first extract
    ran = Counter(_done(survivor_log, "w-survivor"))
    assert set(ran.values()) == {1}, ran  # no task ran twice
    assert len(ran) == len(TENANTS) * (1 + 2 * 4)  # every DbtRun, load and extract
    assert f"ExtractTable(tenant={taken}, date={DEMO_DATE}, table={table})" in ran  # the killed one, to the end
    summary = survivor_log.split("===== Luigi Execution Summary =====")[1]
    assert not re.search(r"\d+ failed", summary) and "there were no failed tasks" in summary, summary
