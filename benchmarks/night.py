"""Night benchmark (issue #15): a synthetic night on the real stack, run through luigid by several workers.

Needs the stack (``eval "$(scripts/stack env)"``). ``--tenants N`` tenants (half PostgreSQL: a schema each in
the ``mozart_test`` database; half MariaDB: a database each), the shop's tables generated server-side (small
rows: 20 customers, 8 products, 12 orders and 24 order lines a day, ``--days`` days), ``--tables T`` tables
each (the shop's four, then ``x05_customers``... reading the shop tables again through ``source_name``).
luigid is started here on a free loopback port with its state file in a temporary folder, and ``--workers W``
worker processes are started as separate hosts would be: ``luigi --module mozart_luigi AllTenants --date D
--workers 1 --worker-id night-w{k} --worker-keep-alive`` each, from the project folder (``luigi.cfg`` applies),
one date, then the next (``--days``). After each night one more ``luigi`` process asks for the same date:
the time it takes to answer "complete" is the completeness time. ``--no-dbt`` runs ``NightLoads`` (every
extract and load, no ``DbtRun``) instead of ``AllTenants``.

Reported per night: graph scheduling time (worker start to Luigi's "Done scheduling tasks", first and
slowest worker), first task running, wall, tasks run and tasks/s, per-stage task seconds per tenant (extract,
load, dbt: median / max / sum over tenants, from the run records ``{report_dir}/runs.jsonl``), luigid CPU and
memory (``/proc/<pid>``), load retries, commit conflicts and the weekly snapshot expiries with their seconds
(worker log lines), and the extrapolation to ``--extrapolate`` tenants under ``night_model.EXTRAPOLATION_MODEL``.

``--schedule-only`` needs no data: profile ``local`` with N SQLite tenants whose files do not exist. One
worker hands the whole graph (every task missing) to luigid; measured: the time until luigid holds it
("Done scheduling tasks") and until the first task runs (the worker is then stopped), luigid's CPU for it per
task, then ``--probes`` ``get_work`` calls of an assistant worker (seconds and luigid CPU each). Then every
``DbtRun`` marker is written and a fresh worker asks for the same graph: the time to answer "complete".

Everything created is dropped at the end, also on failure, Ctrl-C or SIGTERM: the source schemas and
databases, the tenants' Iceberg and dbt schemas and markers, the lake prefix ``s3://raw/_bench/night_<run>``,
the temporary folder; luigid and the workers are stopped.

Usage: ``.venv/bin/python benchmarks/night.py [--tenants 100] [--tables 8] [--workers 2] [--days 2]
[--no-dbt] [--json FILE]``; ``--schedule-only --tenants 1000 --tables 20``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import luigi
import yaml

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for _path in (REPO, HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from night_model import (  # noqa: E402 - after the path set-up
    EXTRAPOLATION_MODEL,
    NightSample,
    extrapolate,
    graph_size,
    local_tenants,
    maintenance_cost,
    stack_tenants,
    stage_seconds,
    tables_yaml,
    tenant_ids,
)
from night_procs import Luigid, Worker, children_cpu, process_cpu, worker_argv  # noqa: E402
from night_sources import build_sources, drop_sources  # noqa: E402

FIRST_DATE = dt.date(2026, 11, 20)


class NightLoads(luigi.WrapperTask):
    """Every extract and load of every tenant of the profile, no dbt (``--no-dbt``)."""

    date: dt.date = luigi.DateParameter()

    def requires(self) -> list[luigi.Task]:
        from mozart_luigi.config import get_config
        from mozart_luigi.tasks.load import LoadIceberg

        config = get_config()
        return [
            LoadIceberg(tenant=t.id, table=table, date=self.date) for t in config.tenants.values() for table in t.tables
        ]


# ---------------------------------------------------------------------------------------------- processes
# ---------------------------------------------------------------------------------------------- nights
def run_night(
    luigid: Luigid, env: dict[str, str], folder: Path, date: dt.date, args: argparse.Namespace
) -> dict[str, Any]:
    """W workers on one date, then one more process asking for the same (now complete) date."""
    root = "AllTenants" if args.dbt else "NightLoads"
    records_before = _records(env)
    cpu0, load0, children0, offset = luigid.cpu(), _load(), children_cpu(), luigid.log_offset()
    workers = [
        Worker(
            worker_argv(root, date, luigid.port, f"night-w{k}-{date:%m%d}", keep_alive=True, expand=args.expand),
            env,
            folder / f"worker-{date}-{k}.log",
        )
        for k in range(args.workers)
    ]
    try:
        codes = [w.finish(args.timeout) for w in workers]
    finally:  # on a failure or SIGTERM here, no worker is left running
        for w in workers:
            w.stop()
    wall = max(w.times.get("exited", 0.0) for w in workers)
    cpu1, workers_cpu, api = luigid.cpu(), children_cpu() - children0, luigid.api_calls(offset)
    records = _records(env)[len(records_before) :]
    done = sum(1 for r in records for t in r.get("tasks", []) if t.get("outcome") == "done")
    task_s = sum(
        float(t.get("seconds") or 0) for r in records for t in r.get("tasks", []) if t.get("outcome") == "done"
    )
    scheduled = [w.times.get("scheduled") for w in workers]
    firsts = [w.times["first_running"] for w in workers if "first_running" in w.times]
    first_work = [w.times["first_work_running"] for w in workers if "first_work_running" in w.times]
    complete = completeness(luigid, env, folder, date, root, args.expand)
    retries = [line for w in workers for line in w.lines]
    night: dict[str, Any] = {
        "date": date.isoformat(),
        "load_average_at_start": load0,
        "load_average_at_end": _load(),
        "exit_codes": codes,
        "graph_tasks": graph_size(args.tenants, args.tables, dbt=args.dbt),
        "first_task_added_s": _round(min((w.times.get("first_task_added", 1e9) for w in workers), default=None)),
        "graph_scheduling_s": {
            "first_worker": _round(min((s for s in scheduled if s is not None), default=None)),
            "slowest_worker": _round(max((s for s in scheduled if s is not None), default=None)),
        },
        "first_task_running_s": _round(min(firsts, default=None)),
        "first_extract_load_or_dbt_running_s": _round(min(first_work, default=None)),
        "wall_s": round(wall, 2),
        "tasks_run": done,
        "tasks_per_s": round(done / wall, 3) if wall else None,
        "task_seconds_sum": round(task_s, 2),
        "stages_per_tenant": stage_seconds(records),
        "luigid": {"cpu_s": round(cpu1 - cpu0, 2), **luigid.memory_mb()},
        "luigid_api": api,
        "workers_cpu_s": round(workers_cpu, 2),
        "load_retries": sum("retrying in" in line for line in retries),
        "commit_conflicts": sum("commit conflict" in line for line in retries),
        "maintenance": maintenance_cost(retries),
        "retry_lines": retries[:5],
        "completeness": complete,
    }
    sample = NightSample(
        tenants=args.tenants,
        tables=args.tables,
        dbt=args.dbt,
        wall_s=wall,
        startup_s=min((w.times.get("first_task_added", 0.0) for w in workers), default=0.0),
        schedule_s=max((s for s in scheduled if s is not None), default=0.0),
        task_s=task_s,
        luigid_cpu_s=cpu1 - cpu0,
    )
    night["extrapolation"] = extrapolate(sample, args.extrapolate).as_dict()
    return night


def completeness(
    luigid: Luigid, env: dict[str, str], folder: Path, date: dt.date, root: str, expand: str | None = None
) -> dict[str, Any]:
    """One fresh ``luigi`` process asking for a date that is complete: its scheduling and whole wall time."""
    cpu0, children0 = luigid.cpu(), children_cpu()
    argv = worker_argv(root, date, luigid.port, f"check-{date:%m%d}", keep_alive=False, expand=expand)
    worker = Worker(argv, env, folder / f"check-{date}.log")
    try:
        code = worker.finish(600)
    finally:
        worker.stop()
    return {
        "exit_code": code,
        "first_task_added_s": _round(worker.times.get("first_task_added")),
        "answered_s": _round(worker.times.get("scheduled")),
        "process_wall_s": _round(worker.times.get("exited")),
        "luigid_cpu_s": round(luigid.cpu() - cpu0, 3),
        "worker_cpu_s": round(children_cpu() - children0, 2),
        "load_average": _load(),
    }


def bench_stack(args: argparse.Namespace, run: str, tmp: Path) -> dict[str, Any]:
    import sqlalchemy as sa

    pg_url = sa.make_url(_need_env("MOZART_TEST_PG_URL"))
    my_url = sa.make_url(_need_env("MOZART_TEST_MYSQL_URL"))
    tenants = tenant_ids(run, args.tenants)
    env = _write_config(tmp, run, stack_tenants(run, args.tenants, str(pg_url.database)), args.tables, "stack")
    env["MOZART_LAKE_URL"] = f"s3://raw/_bench/night_{run}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    dates = [FIRST_DATE + dt.timedelta(days=k) for k in range(args.days)]
    result: dict[str, Any] = {"nights": []}
    luigid = None
    try:
        started = time.monotonic()
        build_sources(pg_url, my_url, tenants, dates)
        result["sources_built_s"] = round(time.monotonic() - started, 1)
        luigid = Luigid(tmp / "luigid", env)
        for date in dates:
            night = run_night(luigid, env, tmp, date, args)
            result["nights"].append(night)
            _print_night(night)
    finally:
        if luigid is not None:
            luigid.stop()
        _clean_stack(env, tmp, tenants, pg_url, my_url)
    return result


# ---------------------------------------------------------------------------------------- schedule only
def bench_schedule_only(args: argparse.Namespace, run: str, tmp: Path) -> dict[str, Any]:
    env = _write_config(tmp, run, local_tenants(run, args.tenants), args.tables, "local")
    date = FIRST_DATE
    tasks = graph_size(args.tenants, args.tables)
    luigid = Luigid(tmp / "luigid", env)
    try:
        out: dict[str, Any] = {"graph_tasks": tasks, "load_average_at_start": _load()}
        cpu0, offset = luigid.cpu(), luigid.log_offset()
        argv = worker_argv("AllTenants", date, luigid.port, "sched-w0", keep_alive=False, expand=args.expand)
        worker = Worker(argv, env, tmp / "w0.log")
        try:
            scheduled = worker.wait_for("scheduled", args.timeout)
            cpu_scheduled, worker_cpu = luigid.cpu(), process_cpu(worker.proc.pid)
            first = worker.wait_for("first_running", 120)
            first_work = worker.wait_for("first_work_running", 120)
        finally:
            worker.stop()
            worker.finish(30)
        api = luigid.api_calls(offset)
        added = int(api.get("add_task", {}).get("calls") or 0)  # per-tenant: the tenants, not the whole graph
        out["missing"] = {
            "first_task_added_s": _round(worker.times.get("first_task_added")),
            "scheduled_s": _round(scheduled),
            "first_task_running_s": _round(first),
            "first_extract_load_or_dbt_running_s": _round(first_work),
            "luigid_cpu_s": round(cpu_scheduled - cpu0, 2),
            "tasks_handed_over": added,
            "luigid_cpu_ms_per_task_handed_over": round((cpu_scheduled - cpu0) / added * 1000, 3) if added else None,
            "luigid_cpu_to_first_running_s": round(luigid.cpu() - cpu0, 2),
            "worker_cpu_s": round(worker_cpu, 2),
            "luigid_api": api,
            **luigid.memory_mb(),
            "load_average": _load(),
        }
        _print(
            f"all missing: scheduled {scheduled} s, first task running {first} s, first extract running {first_work} s",
            out["missing"],
        )
        out["get_work"] = _probe_get_work(luigid, args.probes)
        _print("get_work (assistant)", out["get_work"])
        out["markers_written_s"] = _write_dbt_markers(env, date)
        out["complete"] = completeness(luigid, env, tmp, date, "AllTenants", args.expand)
        _print("complete graph", out["complete"])
        out["load_average_at_end"] = _load()
        return out
    finally:
        luigid.stop()


def _probe_get_work(luigid: Luigid, probes: int) -> dict[str, Any]:
    seconds: list[float] = []
    cpu0 = luigid.cpu()
    for k in range(probes):
        started = time.monotonic()
        luigid.api("get_work", {"worker": "probe", "host": "bench", "assistant": True, "current_tasks": []})
        seconds.append(time.monotonic() - started)
        if k == 0:
            cpu_first = luigid.cpu() - cpu0
    cpu = luigid.cpu() - cpu0
    return {
        "calls": probes,
        "median_s": round(sorted(seconds)[len(seconds) // 2], 3) if seconds else None,
        "max_s": round(max(seconds), 3) if seconds else None,
        "luigid_cpu_s_per_call": round(cpu / probes, 3) if probes else None,
        "luigid_cpu_s_first_call": round(cpu_first, 3) if probes else None,
        "load_average": _load(),
    }


def _write_dbt_markers(env: dict[str, str], date: dt.date) -> float:
    """Every tenant's ``DbtRun`` marker for ``date`` in the local warehouse: the night looks complete."""
    from mozart_luigi.config import get_config, reset_config_cache
    from mozart_luigi.markers import Marker
    from mozart_luigi.tasks.dbt import DbtRun
    from mozart_luigi.warehouse import open_warehouse

    started = time.monotonic()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        reset_config_cache()
        config = get_config()
        with open_warehouse(config.settings) as warehouse:
            for tenant in config.tenants:
                task = DbtRun(tenant=tenant, date=date)
                warehouse.write_marker(Marker("DbtRun", task.task_id, tenant, date, rows=0))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_config_cache()
    return round(time.monotonic() - started, 1)


# ---------------------------------------------------------------------------------------------- set-up
def _write_config(tmp: Path, run: str, tenants: dict[str, Any], tables: int, profile: str) -> dict[str, str]:
    config = tmp / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "tenants.yaml").write_text(yaml.safe_dump(tenants, sort_keys=False))
    (config / "tables.yaml").write_text(yaml.safe_dump(tables_yaml(tables), sort_keys=False))
    env = dict(os.environ)
    env.update(MOZART_PROFILE=profile, MOZART_CONFIG_DIR=str(config), MOZART_DATA_DIR=str(tmp / "data"))
    for name in ("LUIGI_CONFIG_PATH", "MOZART_REPORT_DIR", "MOZART_DUCKDB_PATH"):
        env.pop(name, None)
    if profile == "local":
        env.pop("MOZART_LAKE_URL", None)
    return env


def _clean_stack(env: dict[str, str], tmp: Path, tenants: list[str], pg_url: Any, my_url: Any) -> None:
    """Each step on its own, so one failing does not leave the others."""
    steps: list[tuple[str, Callable[[], None]]] = [
        ("warehouse", lambda: _drop_warehouse(env, tenants)),
        ("lake", lambda: _drop_lake(env)),
        ("sources", lambda: drop_sources(pg_url, my_url, tenants)),
    ]
    for name, step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - reported; the next step still runs
            print(f"clean-up of the {name} failed:", file=sys.stderr)
            traceback.print_exc()
    print(f"clean-up done: {len(tenants)} tenants, {env['MOZART_LAKE_URL']}", file=sys.stderr)


def _drop_warehouse(env: dict[str, str], tenants: list[str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mozart_luigi.config import load_config
    from mozart_luigi.retry import retrying
    from mozart_luigi.warehouse.trino import TrinoWarehouse

    settings = load_config(Path(env["MOZART_CONFIG_DIR"]), env=env).settings
    catalog = settings.trino_catalog

    def drop(tenant: str) -> None:
        with TrinoWarehouse.from_settings(settings, tenant=tenant) as wh:
            for layer in ("staging", "intermediate", "mart"):
                schema = f"{tenant}_{layer}"
                rows = wh.query(
                    f"SELECT table_name, table_type FROM {catalog}.information_schema.tables WHERE table_schema = ?",
                    [schema],
                )
                for name, kind in rows:
                    what = "VIEW" if kind == "VIEW" else "TABLE"
                    wh.query(f'DROP {what} IF EXISTS {catalog}."{schema}"."{name}"')
                wh.query(f'DROP SCHEMA IF EXISTS {catalog}."{schema}"')
            retrying(lambda: wh.drop_tenant(tenant), what=f"drop tenant {tenant}", attempts=6)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(drop, t) for t in tenants]:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - reported; the other tenants are still dropped
                traceback.print_exc()


def _drop_lake(env: dict[str, str]) -> None:
    from mozart_luigi.config import load_config
    from mozart_luigi.lake import Lake

    lake = Lake.from_settings(load_config(Path(env["MOZART_CONFIG_DIR"]), env=env).settings)
    lake.filesystem.delete_dir_contents(lake.fs_path(lake.url), missing_dir_ok=True)
    with contextlib.suppress(FileNotFoundError):
        lake.filesystem.delete_dir(lake.fs_path(lake.url))


# ---------------------------------------------------------------------------------------------- output
def _records(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["MOZART_DATA_DIR"]) / "reports" / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _print_night(night: dict[str, Any]) -> None:
    keep = (
        "graph_scheduling_s",
        "first_task_running_s",
        "first_extract_load_or_dbt_running_s",
        "wall_s",
        "tasks_run",
        "tasks_per_s",
        "luigid",
        "maintenance",
    )
    _print(f"night {night['date']} (exit {night['exit_codes']})", {k: night[k] for k in keep})
    _print("  stages per tenant", night["stages_per_tenant"])
    _print("  completeness", night["completeness"])
    _print("  extrapolation", night["extrapolation"])


def _print(title: str, data: Any) -> None:
    print(f"{title}: {json.dumps(data)}", file=sys.stderr, flush=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _need_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f'benchmarks: {name} not set; run: eval "$(scripts/stack env)"')
    return value


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False)
    return out.stdout.strip()


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--tables", type=int, default=8, help="tables per tenant (the shop's 4, then copies)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one luigi command each)")
    parser.add_argument("--days", type=int, default=2, help="consecutive dates, one night each")
    parser.add_argument("--no-dbt", dest="dbt", action="store_false", help="extracts and loads only (NightLoads)")
    parser.add_argument("--schedule-only", action="store_true", help="profile local, no data: luigid scheduling")
    parser.add_argument("--probes", type=int, default=10, help="--schedule-only: get_work calls measured")
    parser.add_argument("--extrapolate", type=int, default=1000, help="tenants the model extrapolates to")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a night (or the scheduling) may take")
    parser.add_argument(
        "--expand",
        choices=("auto", "upfront", "per-tenant"),
        help="AllTenants --expand: luigid gets the whole graph first (upfront) or a tenant's tasks when a worker "
        "takes it on (per-tenant); default: the project's (luigi.cfg, else auto)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.dbt and args.tables < 4 and not args.schedule_only:
        parser.error("dbt models the four shop tables: --tables 4 or more, or --no-dbt")
    return args


def main() -> None:
    args = _args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still runs the clean-up
    run = uuid.uuid4().hex[:6]
    results: dict[str, Any] = {
        "benchmark": "night",
        "argv": sys.argv[1:],
        "commit": _commit(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average_at_start": _load()},
        "tenants": args.tenants,
        "tables": args.tables,
        "workers": args.workers,
        "dbt": args.dbt,
        "expand": args.expand,
        "model": EXTRAPOLATION_MODEL,
    }
    with _temporary() as tmp:
        if args.schedule_only:
            results["schedule_only"] = bench_schedule_only(args, run, tmp)
        else:
            results.update(bench_stack(args, run, tmp))
    results["load_average_at_end"] = _load()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


@contextlib.contextmanager
def _temporary() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench_night_") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    main()
