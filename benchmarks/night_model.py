"""The pure part of ``benchmarks/night.py``: the synthetic night's configuration, its graph size, the numbers
read back from a night (run records, worker output) and the extrapolation to more tenants.

Nothing here touches a server or the file system, so ``tests/unit/test_night_model.py`` checks it as is.
"""

from __future__ import annotations

__all__ = [
    "EXTRAPOLATION_MODEL",
    "SHOP_TABLES",
    "Extrapolation",
    "NightSample",
    "extrapolate",
    "graph_size",
    "local_tenants",
    "stack_tenants",
    "stage_seconds",
    "table_names",
    "tables_yaml",
    "tenant_ids",
]

import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: the shop's four source tables as config/tables.yaml declares them; more tables reuse them (``source_name``)
SHOP_TABLES: dict[str, dict[str, Any]] = {
    "customers": {"mode": "full", "primary_key": ["customer_id"]},
    "products": {"mode": "full", "primary_key": ["product_id"]},
    "orders": {"mode": "incremental", "cursor": "updated_at", "primary_key": ["order_id"]},
    "order_items": {"mode": "incremental", "cursor": "updated_at", "primary_key": ["order_item_id"]},
}
STAGES = {"ExtractTable": "extract", "LoadIceberg": "load", "DbtRun": "dbt"}

#: luigid CPU per task of a night (its add_task calls, progress messages, pings) and per pending task per
#: get_work, fitted to two measured nights through luigid (2026-12-02, W = 2, no dbt, load 3.5-6 on 2 cores):
#: 161 tasks -> 2.15 s, 1,601 tasks -> 35.86 s of luigid CPU; solving a * n + k * n^2 / 2 for both
LUIGID_TASK_S = 12.3e-3
LUIGID_GET_WORK_S_PER_PENDING = 12.6e-6

EXTRAPOLATION_MODEL = (
    "wall(N') = u + s * tasks(N') + w * N' / p, with u = a worker's start-up (start to its first task handed "
    "to luigid), s = scheduling seconds per task ((slowest worker's 'Done scheduling tasks' - u) / tasks; every "
    "worker schedules the whole graph, in parallel), w = task seconds per tenant (the run records' extract, load "
    "and dbt seconds / N), p = the parallelism reached (task seconds / (wall - scheduling)), assumed to hold; "
    "tasks(N') = N' * (2T + 2) + 1 (2T + 0 without dbt). luigid CPU(N') = a * tasks(N') + k * tasks(N')^2 / 2: "
    "a = luigid CPU per task (add_task, progress messages, pings), k = CPU per pending task per get_work (each "
    "get_work sorts and walks every pending task, and a night makes one get_work per task at least, over a "
    "pending set shrinking from tasks(N') to 0); a and k fitted to two measured nights (161 and 1,601 tasks). "
    "luigid is one thread: that CPU is also a floor on the wall time."
)


def table_names(count: int) -> list[str]:
    """``count`` logical tables: the shop's four first, then ``x05_orders``... reading the shop tables again."""
    if count < 1:
        raise ValueError("at least one table")
    shop = list(SHOP_TABLES)
    names = shop[:count]
    for n in range(len(shop), count):
        names.append(f"x{n + 1:02d}_{shop[n % len(shop)]}")
    return names


def tables_yaml(count: int) -> dict[str, Any]:
    """The ``tables.yaml`` body: the shop tables, and extra ones naming their shop table as ``source_name``."""
    body: dict[str, Any] = {}
    for name in table_names(count):
        shop = name.split("_", 1)[1] if name.startswith("x") and name[1:3].isdigit() else name
        body[name] = dict(SHOP_TABLES[shop]) | ({"source_name": shop} if shop != name else {})
    return {"tables": body}


def tenant_ids(run: str, count: int) -> list[str]:
    """``nt{run}_{i}``: even ``i`` on PostgreSQL (``p``), odd on MariaDB (``m``), so each kind gets half."""
    return [f"nt{run}_{'p' if i % 2 == 0 else 'm'}{i:04d}" for i in range(count)]


def stack_tenants(run: str, count: int, pg_database: str, *, max_connections: int = 2) -> dict[str, Any]:
    """``tenants.yaml`` for profile ``stack``: PostgreSQL tenants are schemas of ``pg_database``, MariaDB ones
    databases of their own, all named as the tenant. Credentials are ``${VAR}`` references to the stack's
    environment, never values."""
    tenants: dict[str, Any] = {}
    for tenant in tenant_ids(run, count):
        if "_p" in tenant:
            source = {
                "kind": "postgresql",
                "host": "${MOZART_PG_HOST}",
                "port": "${MOZART_PG_PORT}",
                "database": pg_database,
                "user": "${MOZART_PG_USER}",
                "password": "${MOZART_PG_PASSWORD}",
                "schema": tenant,
            }
        else:
            source = {
                "kind": "mysql",
                "host": "${MOZART_MYSQL_HOST}",
                "port": "${MOZART_MYSQL_PORT}",
                "database": tenant,
                "user": "${MOZART_MYSQL_USER}",
                "password": "${MOZART_MYSQL_PASSWORD}",
            }
        tenants[tenant] = {"profiles": ["stack"], "max_connections": max_connections, "source": source}
    return {"tenants": tenants}


def local_tenants(run: str, count: int) -> dict[str, Any]:
    """``tenants.yaml`` for profile ``local`` (scheduling only): SQLite paths that need not exist."""
    return {
        "tenants": {
            tenant: {
                "profiles": ["local"],
                "source": {"kind": "sqlite", "path": f"${{MOZART_DATA_DIR}}/sources/{tenant}.sqlite"},
            }
            for tenant in tenant_ids(run, count)
        }
    }


def graph_size(tenants: int, tables: int, *, dbt: bool = True) -> int:
    """Tasks of one night: per tenant an extract and a load per table, with dbt also ``DbtRun`` and
    ``TenantPipeline``; plus the root (``AllTenants``, or the benchmark's ``NightLoads`` without dbt)."""
    return tenants * (2 * tables + (2 if dbt else 0)) + 1


MAINTENANCE_LINE = re.compile(r"tenant (\S+) table (\S+): snapshots older than .* \(maintenance ([\d.]+) s\)")
UPKEEP_LINE = re.compile(r"dbt upkeep tenant=(\S+) tables=(\d+) .* \(maintenance ([\d.]+) s\)")


def maintenance_cost(lines: Iterable[str]) -> dict[str, float]:
    """The night's upkeep from the workers' log lines: the raw tables' weekly snapshot expiries (in their
    ``LoadIceberg``, the day spread by table name) and the tenants' weekly dbt-table upkeep (compaction and
    expiry in their ``DbtRun``, the day spread by tenant): how many, summed and largest seconds."""
    seconds = [float(m.group(3)) for line in lines if (m := MAINTENANCE_LINE.search(line))]
    upkeep = [(int(m.group(2)), float(m.group(3))) for line in lines if (m := UPKEEP_LINE.search(line))]
    return {
        "tables": len(seconds),
        "seconds": round(sum(seconds), 2),
        "max_s": round(max(seconds), 2) if seconds else 0.0,
        "dbt_tenants": len(upkeep),
        "dbt_tables": sum(n for n, _ in upkeep),
        "dbt_seconds": round(sum(s for _, s in upkeep), 2),
        "dbt_max_s": round(max((s for _, s in upkeep), default=0.0), 2),
    }


def stage_seconds(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage (extract, load, dbt): the median, max and sum over tenants of each tenant's task seconds
    (its tasks done, from the ``tasks`` of run records), and how many tenants had one."""
    per: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for record in records:
        for task in record.get("tasks", []):
            stage = STAGES.get(task.get("task", ""))
            if stage and task.get("outcome") == "done" and task.get("seconds") is not None:
                per[stage][task["tenant"]] += float(task["seconds"])
    out: dict[str, dict[str, float]] = {}
    for stage in STAGES.values():
        values = list(per.get(stage, {}).values())
        if values:
            out[stage] = {
                "tenants": len(values),
                "median_s": round(statistics.median(values), 3),
                "max_s": round(max(values), 3),
                "sum_s": round(sum(values), 3),
            }
    return out


@dataclass(frozen=True)
class NightSample:
    """What one measured night gives the model."""

    tenants: int
    tables: int
    dbt: bool
    wall_s: float  # the night: first worker started .. last worker exited
    startup_s: float  # the first worker's start .. its first task handed to luigid
    schedule_s: float  # the slowest worker's start .. 'Done scheduling tasks'
    task_s: float  # the sum of the seconds of every task run (run records)
    luigid_cpu_s: float  # luigid's CPU over the night


@dataclass(frozen=True)
class Extrapolation:
    tenants: int
    tasks: int
    schedule_s: float
    work_s: float
    wall_s: float
    parallelism: float
    luigid_cpu_s: float
    luigid_get_work_cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def extrapolate(
    sample: NightSample,
    tenants: int,
    *,
    luigid_task_s: float = LUIGID_TASK_S,
    get_work_s_per_pending: float = LUIGID_GET_WORK_S_PER_PENDING,
) -> Extrapolation:
    """The night of ``tenants`` tenants under :data:`EXTRAPOLATION_MODEL`."""
    measured = graph_size(sample.tenants, sample.tables, dbt=sample.dbt)
    target = graph_size(tenants, sample.tables, dbt=sample.dbt)
    running = max(sample.wall_s - sample.schedule_s, 1e-9)
    parallelism = max(sample.task_s / running, 1e-9)
    per_task = max(sample.schedule_s - sample.startup_s, 0.0) / measured
    schedule = sample.startup_s + per_task * target
    work = sample.task_s / sample.tenants * tenants / parallelism
    get_work = get_work_s_per_pending * target * target / 2
    return Extrapolation(
        tenants=tenants,
        tasks=target,
        schedule_s=schedule,
        work_s=work,
        wall_s=schedule + work,
        parallelism=parallelism,
        luigid_cpu_s=luigid_task_s * target + get_work,
        luigid_get_work_cpu_s=get_work,
    )
