"""Several worker processes on one night, as several hosts would run it: three ``luigi`` processes (distinct
worker ids, one task slot each, ``--worker-keep-alive`` so that a worker waiting for a resource another
holds does not leave) against one luigid, on the extracts and loads of six tenants × two tables
(``night_loads.NightLoads``: the graph part that reads the tenants' databases; dbt left out to keep the test
small).

Each tenant is a schema of the stack's PostgreSQL read by its own role with ``max_connections: 1``; each
source table is a view that holds the connection ~0.4 s (``pg_sleep`` in a materialised CTE), so a second
session of the same role would be seen. A sampler reads ``pg_stat_activity`` (the source's own session
view) every 20 ms during the night. Checked: every task ran exactly once over all workers (their logs),
luigid has every task DONE and nothing else, at least two workers ran tasks, no role ever had two sessions
while several tenants' did at once, and Iceberg holds exactly the source rows.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from pipeline_helpers import BIN, REPO, Setup, _write, cleanup, luigid

from mozart_luigi.config import load_config
from mozart_luigi.warehouse.trino import TrinoWarehouse

pytestmark = pytest.mark.integration
DATE = dt.date(2026, 11, 28)
TENANTS = 6
TABLES = ("customers", "orders")
WORKERS = 3
HOLD_SECONDS = 0.4


def _connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg2

    url = url.replace("postgresql+psycopg2://", "postgresql://")
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def _sizes(i: int) -> tuple[int, int, int]:
    """(customers, orders on DATE, orders on other days) of tenant i."""
    return 10 + i, 5 + 2 * i, 3


def _create_sources(admin, prefix: str, password: str) -> None:  # type: ignore[no-untyped-def]
    with admin.cursor() as cur:
        for i in range(TENANTS):
            schema = role = f"{prefix}_{i}"
            customers, today, other = _sizes(i)
            cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", [password])
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(f"""
                CREATE TABLE {schema}.customers_base (
                  customer_id integer PRIMARY KEY, email varchar(255) NOT NULL, full_name varchar(200) NOT NULL,
                  country char(2) NOT NULL, created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL);
                CREATE TABLE {schema}.orders_base (
                  order_id integer PRIMARY KEY, customer_id integer NOT NULL, status varchar(16) NOT NULL,
                  ordered_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL);
                INSERT INTO {schema}.customers_base
                  SELECT n, 'c' || n || '@example.com', 'Customer ' || n, 'DE',
                         timestamp '2026-11-01' + n * interval '1 minute',
                         timestamp '2026-11-20' + n * interval '1 minute'
                  FROM generate_series(1, {customers}) n;
                INSERT INTO {schema}.orders_base
                  SELECT n, 1 + n % {customers}, 'placed', timestamp '{DATE}' + n * interval '1 minute',
                         CASE WHEN n <= {today} THEN timestamp '{DATE}' + n * interval '7 minutes'
                              ELSE timestamp '{DATE}' - n * interval '1 day' END
                  FROM generate_series(1, {today + other}) n;
                CREATE VIEW {schema}.customers AS
                  WITH hold AS MATERIALIZED (SELECT pg_sleep({HOLD_SECONDS}))
                  SELECT c.* FROM {schema}.customers_base c, hold;
                CREATE VIEW {schema}.orders AS
                  WITH hold AS MATERIALIZED (SELECT pg_sleep({HOLD_SECONDS}))
                  SELECT o.* FROM {schema}.orders_base o, hold;
                GRANT USAGE ON SCHEMA {schema} TO {role};
                GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};
            """)


def _drop_sources(admin, prefix: str) -> None:  # type: ignore[no-untyped-def]
    with admin.cursor() as cur:
        for i in range(TENANTS):
            name = f"{prefix}_{i}"
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name])
            cur.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            cur.execute(f"DROP ROLE IF EXISTS {name}")


class Sampler(threading.Thread):
    """Polls pg_stat_activity for the tenants' roles: the most sessions of one role at once, and the most
    roles with a session at once."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.url, self.prefix = url, prefix
        self.stop = threading.Event()
        self.most_per_role: Counter[str] = Counter()
        self.most_roles = 0
        self.samples = 0

    def run(self) -> None:
        conn = _connect(self.url)
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(
                        "SELECT usename, count(*) FROM pg_stat_activity WHERE usename LIKE %s GROUP BY 1",
                        [f"{self.prefix}\\_%"],
                    )
                    now = dict(cur.fetchall())
                    for role, n in now.items():
                        self.most_per_role[role] = max(self.most_per_role[role], n)
                    self.most_roles = max(self.most_roles, len(now))
                    self.samples += 1
                    time.sleep(0.02)
        finally:
            conn.close()


@pytest.mark.parametrize("kill", [False, True], ids=["all-alive", "one-killed"])
def test_three_workers_run_one_night_once_within_each_tenants_connections(
    stack_env: dict[str, str], tmp_path: Path, kill: bool
) -> None:
    """With ``kill``, worker 0 is held in its first extract (``MOZART_TEST_PAUSE_AT=before_manifest``) and
    killed -9 there; luigid (``worker_disconnect_delay = 5``, ``retry_delay = 3`` in its own config) marks the
    task FAILED at its next prune (every 60 s), makes it pending again at the one after, and a surviving
    keep-alive worker runs it: the night still completes, each task done once, with exact counts."""
    url = stack_env["MOZART_TEST_PG_URL"]  # database mozart_test, as the superuser `mozart`
    prefix = f"mw{uuid.uuid4().hex[:8]}"
    password = f"pw-{uuid.uuid4().hex}"
    env = {**os.environ, **stack_env, "MOZART_PROFILE": "stack", "MW_SOURCE_PASSWORD": password}
    tenants = {
        f"{prefix}_{i}": {
            "profiles": ["stack"],
            "max_connections": 1,
            "tables": list(TABLES),
            "source": {
                "kind": "postgresql",
                "host": "${MOZART_PG_HOST}",
                "port": "${MOZART_PG_PORT}",
                "database": url.rsplit("/", 1)[1],
                "user": f"{prefix}_{i}",
                "schema": f"{prefix}_{i}",
                "password": "${MW_SOURCE_PASSWORD}",
            },
        }
        for i in range(TENANTS)
    }
    setup: Setup = _write(tmp_path, tenants, env, "stack")
    setup.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    admin = _connect(url)
    sampler = Sampler(url, prefix)
    try:
        _create_sources(admin, prefix, password)
        sampler.start()
        luigid_env = dict(setup.env)
        if kill:
            cfg = tmp_path / "luigid.cfg"
            cfg.write_text("[scheduler]\nworker_disconnect_delay = 5\nretry_delay = 3\n")
            luigid_env["LUIGI_CONFIG_PATH"] = str(cfg)  # read after the project's luigi.cfg (cwd)
        with luigid(tmp_path, luigid_env) as server:
            argv = [
                str(BIN / "luigi"),
                "--module",
                "night_loads",
                "NightLoads",
                "--date",
                DATE.isoformat(),
                "--scheduler-host",
                "127.0.0.1",
                "--scheduler-port",
                str(server.port),
                "--workers",
                "1",
                "--worker-keep-alive",
            ]
            started = time.monotonic()
            procs = []
            for w in range(WORKERS):
                log = (tmp_path / f"worker-{w}.log").open("w")
                worker_env = dict(setup.env)
                if kill and w == 0:
                    worker_env.update(MOZART_TEST_PAUSE_AT="before_manifest", MOZART_TEST_PAUSE_DIR=str(tmp_path))
                procs.append(
                    (
                        subprocess.Popen(
                            [*argv, "--worker-id", f"night-worker-{w}"],
                            cwd=REPO,
                            env=worker_env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        ),
                        log,
                    )
                )
            if kill:
                reached = tmp_path / "before_manifest.reached"
                deadline = time.monotonic() + 600
                while not reached.exists() or not reached.read_text():
                    assert time.monotonic() < deadline and procs[0][0].poll() is None, "worker 0 never paused"
                    time.sleep(0.1)
                assert int(reached.read_text()) == procs[0][0].pid  # one task slot: the task runs in the worker
                os.kill(procs[0][0].pid, signal.SIGKILL)
            for proc, log in procs:
                proc.wait(timeout=1200)
                log.close()
            seconds = time.monotonic() - started
            logs = [(tmp_path / f"worker-{w}.log").read_text() for w in range(WORKERS)]
            # Luigi's summary (and so the exit code) keeps what a worker saw when it scheduled: a task another
            # worker was running (10, already_running) or whose resource was taken (25, not_run), even when
            # keep-alive then ran or saw it done. Never a failure (30) or anything worse; luigid decides below.
            for w, ((proc, _), text) in enumerate(zip(procs, logs, strict=True)):
                if kill and w == 0:
                    assert proc.returncode == -signal.SIGKILL
                    continue
                assert proc.returncode in (0, 10, 25), text[-6000:]
                assert "failed" not in text.split("===== Luigi Execution Summary =====")[1], text[-3000:]
            _, done = server.api("task_list", {"status": "DONE", "upstream_status": "", "search": ""})
            workers = {w["name"] for w in server.api("worker_list")[1]}
            if not kill:  # (with a 5 s worker_disconnect_delay luigid forgets any worker that has left)
                assert {f"night-worker-{w}" for w in range(WORKERS)} <= workers, workers  # distinct worker ids
            for status in ("PENDING", "RUNNING", "FAILED", "DISABLED"):
                assert server.api("task_list", {"status": status, "upstream_status": "", "search": ""})[1] == {}
        sampler.stop.set()
        sampler.join(timeout=10)

        # luigid: the whole graph DONE, nothing else
        families = Counter(task["name"] for task in done.values())
        assert families == {
            "NightLoads": 1,
            "ExtractTable": TENANTS * len(TABLES),
            "LoadIceberg": TENANTS * len(TABLES),
        }

        # every task ran exactly once over the three workers (each worker logs "done" for what it ran)
        ran: Counter[str] = Counter()
        by_worker: dict[int, int] = {}
        for w, text in enumerate(logs):
            mine = re.findall(rf"Worker night-worker-{w} done +((?:ExtractTable|LoadIceberg)\(.*\))", text)
            by_worker[w] = len(mine)
            ran.update(mine)
        assert len(ran) == 2 * TENANTS * len(TABLES), ran
        assert set(ran.values()) == {1}, [t for t, n in ran.items() if n > 1]
        assert sum(n > 0 for n in by_worker.values()) >= 2, by_worker  # the night really was shared
        if kill:  # the task worker 0 was killed in was run (to the end) by a survivor, once
            [killed] = re.findall(r"Worker night-worker-0 running +(ExtractTable\(.*\))", logs[0])
            assert killed in ran and killed not in re.findall(r"night-worker-0 done +(\S.*)", logs[0])

        # per-tenant max_connections (1) held across workers, as the source itself saw it
        print(
            f"night: {seconds:.1f} s; tasks by worker {by_worker}; {sampler.samples} samples; "
            f"most roles at once {sampler.most_roles}; "
            f"most sessions per role {dict(sampler.most_per_role)}"
        )
        assert set(sampler.most_per_role) == set(tenants), sampler.most_per_role  # every tenant's reads seen
        assert max(sampler.most_per_role.values()) == 1, sampler.most_per_role
        assert sampler.most_roles >= 2  # workers did read several tenants at the same time

        # exact counts in Iceberg
        settings = load_config(setup.config_dir, env=setup.env).settings
        for i, tenant in enumerate(tenants):
            customers, today, _ = _sizes(i)
            warehouse = TrinoWarehouse.from_settings(settings, tenant=tenant)
            try:
                counts = {table: warehouse.count_partition(tenant, table, DATE) for table in TABLES}
            finally:
                warehouse.close()
            assert counts == {"customers": customers, "orders": today}, (tenant, counts)
    finally:
        sampler.stop.set()
        try:
            cleanup(setup)
        finally:
            _drop_sources(admin, prefix)
            admin.close()
