"""Late rows benchmark (issue #14): the nightly cost of ``lookback_days: 3`` and ``deletes: keys``.

Needs the stack (``eval "$(scripts/stack env)"``). Per dialect (PostgreSQL, MariaDB), a source table of
``--rows`` rows is built server-side in the ``mozart_test`` database (PostgreSQL ``generate_series``,
MariaDB's Sequence engine ``seq_1_to_N``): the 8 columns of the extract benchmark, ``id`` the primary key,
``updated_at`` the cursor, spread uniformly (and shuffled against ``id``) over ``--days`` days ending on
2026-11-20, with an index on it (``--no-cursor-index`` drops it: every day's extract then scans the table).

The same table is configured four ways, each in its own config folder and tenant (``blr_<hex>_<db>_<v>``),
all under the table name ``facts`` (so Luigi's task ids and the weekly snapshot expiry day are alike):

- ``base``: ``mode: incremental``, ``cursor: updated_at``, ``primary_key: [id]``;
- ``lb3``: the same + ``lookback_days: 3``;
- ``keys``: the same + ``deletes: keys``;
- ``both``: ``lookback_days: 3`` and ``deletes: keys``.

State: every variant's raw table is first backfilled with the days before the warm-up night (each day's own
``LoadIceberg``, ``--workers 2``), so it holds the table's history as after weeks of nightly runs; then the
warm-up night, then one night per round on consecutive run dates: the days a lookback re-extracts were loaded
the nights before (real re-extracts and partition replaces), and each night's keys snapshot is a new day.

A **night** is what ``mozart run`` asks of the tenant for one run date minus dbt: ``DbtRun(tenant,
date).requires()`` (the day's load, the lookback's reloads, the keys stream's load, each with its extract)
through ``luigi.build(..., local_scheduler=True, workers=--workers)`` in a fresh child process run from the
project folder (so luigi.cfg applies and every night starts as a cron-started ``mozart run`` does: no client,
cache or connection left over). Measured: the wall time of ``luigi.build`` (imports excluded), the child's CPU
(``getrusage`` self + children around it), the CPU of the stack's services while it ran (from ``/proc``:
shared with other jobs on the box), the rows and bytes extracted (the manifests the night published) and the
extract seconds the manifests record. Each round runs the four variants back to back, the order alternating
(reversed every other round); the run date moves on by a day each round (a date on which ``LoadIceberg``
would run its weekly snapshot expiry of ``facts`` or ``facts__keys`` is run, unmeasured, as a filler night).
Reported per variant: median seconds, median ratio to ``base`` (per round, then the median), CPU, rows.

**dbt is left out**: the sample dbt project models the shop tables, not this synthetic one. What ``deletes:
keys`` adds to staging (the semi-join of the current rows against the run date's keys, and the window max of
the read times) is measured separately: ``count(*)`` over the staging query of ``dbt/macros/current_state.sql``
(written out here for ``facts``) at the last run date, with and without the deletes condition, alternating,
``--repeat`` times, through Trino.

Everything it creates is dropped at the end (also on Ctrl-C or SIGTERM): the tenants' Iceberg schemas and
markers (``TrinoWarehouse.drop_tenant``), the lake prefix ``s3://raw/_bench/<hex>`` (markers included), the
source tables, the temporary config and data folders.

Usage: ``.venv/bin/python benchmarks/late_rows.py [--rows 2000000] [--days 45] [--dialect postgres|mysql|both]
[--repeat 3] [--workers 1] [--json FILE]``; ``--rows 20000 --days 10 --repeat 1`` is a quick check.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: ``benchmarks.common`` is importable like the others do
    sys.path.insert(0, str(REPO))

LAST_DAY = dt.date(2026, 11, 20)  # the last day the cursor reaches
TABLE = "facts"
KEYS = f"{TABLE}__keys"
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "lb3": {"lookback_days": 3},
    "keys": {"deletes": "keys"},
    "both": {"lookback_days": 3, "deletes": "keys"},
}
LABELS = {
    "base": "(a) no options",
    "lb3": "(b) lookback_days: 3",
    "keys": "(c) deletes: keys",
    "both": "(d) both",
}
DIALECTS = {"postgres": ("pg", "postgresql", "MOZART_TEST_PG_URL"), "mysql": ("my", "mysql", "MOZART_TEST_MYSQL_URL")}
SERVICES = ("postgres", "mysql", "s3", "iceberg-rest", "trino")

_PG_DDL = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY,
    qty integer,
    price numeric(12,2),
    score double precision,
    label varchar(64),
    created_at timestamp(6),
    updated_at timestamptz(6) NOT NULL,
    active boolean
)"""

# updated_at: ((g * 7919) mod rows) steps of span/rows from the first day: uniform over the days, shuffled
# against id (7919 is prime, so for rows not a multiple of it this is a permutation of 0 .. rows-1)
_PG_FILL = """
INSERT INTO {name}
SELECT g,
       CASE WHEN g % 101 = 0 THEN NULL ELSE (g * 7919) % 100000 END,
       ((g * 31) % 10000000) / 100.0,
       g / 7.0::float8,
       CASE WHEN g % 97 = 0 THEN NULL ELSE 'item-' || substr(md5(g::text), 1, 8 + (g % 24)::int) END,
       timestamp '2020-01-01' + g * interval '1.234567 second',
       timestamptz '{first} 00:00:00+00' + ((g * 7919) % {rows}) * interval '{step_us} microsecond',
       g % 3 = 0
FROM generate_series(1::bigint, {rows}::bigint) AS g"""

_MYSQL_DDL = """
CREATE TABLE {name} (
    id BIGINT PRIMARY KEY,
    qty INT,
    price DECIMAL(12,2),
    score DOUBLE,
    label VARCHAR(64),
    created_at DATETIME(6),
    updated_at TIMESTAMP(6) NOT NULL,
    active TINYINT(1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""

_MYSQL_FILL = """
INSERT INTO {name}
SELECT seq,
       IF(seq % 101 = 0, NULL, (seq * 7919) % 100000),
       ((seq * 31) % 10000000) / 100.0,
       seq / 7.0e0,
       IF(seq % 97 = 0, NULL, CONCAT('item-', LEFT(MD5(seq), 8 + seq % 24))),
       TIMESTAMP('2020-01-01') + INTERVAL seq * 1234567 MICROSECOND,
       TIMESTAMP('{first}') + INTERVAL ((seq * 7919) % {rows}) * {step_us} MICROSECOND,
       seq % 3 = 0
FROM seq_1_to_{rows}"""


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    args = _args()
    if args.child:
        _child(json.loads(args.child))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still runs the clean-up
    run = uuid.uuid4().hex[:8]
    dialects = list(DIALECTS) if args.dialect == "both" else [args.dialect]
    results: dict[str, Any] = {
        "benchmark": "late_rows",
        "commit": _commit(),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average_at_start": _load()},
        "rows": args.rows,
        "days": args.days,
        "rows_per_day": args.rows // args.days,
        "cursor_index": not args.no_cursor_index,
        "repeat": args.repeat,
        "workers": args.workers,
        "plan": _plan(args.days, args.repeat).describe(),
        "dialects": {},
    }
    for dialect in dialects:
        try:
            results["dialects"][dialect] = bench_dialect(run, dialect, args)
        except Exception as exc:  # noqa: BLE001 - the other dialect still runs; the error is reported
            traceback.print_exc()
            results["dialects"][dialect] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        _print_table(dialect, results["dialects"][dialect])
    results["load_average_at_end"] = _load()
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the source table")
    parser.add_argument(
        "--days",
        "--days-per-night",
        dest="days",
        type=int,
        default=45,
        help="days the cursor spans (a night's own day holds rows/days rows); at least repeat + 10",
    )
    parser.add_argument("--dialect", choices=("postgres", "mysql", "both"), default="postgres")
    parser.add_argument("--repeat", type=int, default=3, help="measured nights (rounds) per variant")
    parser.add_argument("--workers", type=int, default=1, help="Luigi workers of a night (mozart run's default: 1)")
    parser.add_argument("--no-cursor-index", action="store_true", help="no index on the cursor column")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one night in a fresh process
    args = parser.parse_args()
    if args.days < args.repeat + 10:
        parser.error("--days must be at least --repeat + 10 (backfill, warm-up and filler nights)")
    return args


# ---------------------------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """The run dates: backfilled days, the warm-up night, then nights (measured, or fillers)."""

    first_day: dt.date
    warm_up: dt.date
    nights: list[dt.date]
    measured: list[dt.date]

    def describe(self) -> dict[str, Any]:
        return {
            "cursor_days": [self.first_day.isoformat(), LAST_DAY.isoformat()],
            "backfilled_days": [self.first_day.isoformat(), (self.warm_up - dt.timedelta(days=1)).isoformat()],
            "warm_up_night": self.warm_up.isoformat(),
            "measured_nights": [d.isoformat() for d in self.measured],
            "filler_nights": [d.isoformat() for d in self.nights if d not in self.measured],
        }


def _plan(days: int, repeat: int) -> Plan:
    """Nights walk back from LAST_DAY until ``repeat`` of them are measurable (no weekly snapshot expiry of
    ``facts`` nor ``facts__keys`` that night); the warm-up night is the day before the first of them."""
    from mozart_luigi.tasks.load import maintenance_due

    nights: list[dt.date] = []
    day = LAST_DAY
    while sum(1 for d in nights if _measurable(d, maintenance_due)) < repeat:
        nights.insert(0, day)
        day -= dt.timedelta(days=1)
    return Plan(
        first_day=LAST_DAY - dt.timedelta(days=days - 1),
        warm_up=day,
        nights=nights,
        measured=[d for d in nights if _measurable(d, maintenance_due)],
    )


def _measurable(day: dt.date, due: Any) -> bool:
    return not (due(TABLE, day) or due(KEYS, day))


# ------------------------------------------------------------------------------------------ one dialect
@dataclass
class _Setup:
    dialect: str
    source_table: str
    tenants: dict[str, str]  # variant -> tenant id
    config_dirs: dict[str, Path]
    env: dict[str, str]
    timings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def bench_dialect(run: str, dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    short, kind, url_var = DIALECTS[dialect]
    url = sa.make_url(_need_env(url_var))
    plan = _plan(args.days, args.repeat)
    source_table = f"late_{run}"
    with tempfile.TemporaryDirectory(prefix="bench_late_") as tmp:
        setup = _write_configs(Path(tmp), run, short, kind, url, source_table)
        try:
            built = _build_source(url, dialect, source_table, args.rows, plan.first_day, args.days, args)
            return _measure(setup, plan, args, built)
        finally:
            _clean_up(setup, url)


def _need_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f'benchmarks: {name} not set; run: eval "$(scripts/stack env)"')
    return value


def _write_configs(tmp: Path, run: str, short: str, kind: str, url: sa.URL, source_table: str) -> _Setup:
    """One config folder per variant (the table is ``facts`` in each), one tenant each; the source URL goes
    through the environment (``${MOZART_BENCH_LATE_URL}``), never into a file."""
    env = dict(os.environ)
    env.update(
        MOZART_PROFILE="stack",
        MOZART_LAKE_URL=f"s3://raw/_bench/{run}",
        MOZART_DATA_DIR=str(tmp / "data"),
        MOZART_BENCH_LATE_URL=url.render_as_string(hide_password=False),
    )
    env.pop("LUIGI_CONFIG_PATH", None)
    tenants, dirs = {}, {}
    for variant, options in VARIANTS.items():
        tenant = f"blr_{run}_{short}_{variant}"
        config = tmp / f"config_{variant}"
        config.mkdir()
        body = {"source": {"kind": kind, "url": "${MOZART_BENCH_LATE_URL}"}}
        (config / "tenants.yaml").write_text(yaml.safe_dump({"tenants": {tenant: body}}))
        table = {
            "source_name": source_table,
            "mode": "incremental",
            "cursor": "updated_at",
            "primary_key": ["id"],
            **options,
        }
        (config / "tables.yaml").write_text(yaml.safe_dump({"tables": {TABLE: table}}, sort_keys=False))
        tenants[variant], dirs[variant] = tenant, config
    return _Setup(short, source_table, tenants, dirs, env)


def _build_source(
    url: sa.URL, dialect: str, name: str, rows: int, first: dt.date, days: int, args: argparse.Namespace
) -> dict[str, Any]:
    step_us = days * 86_400_000_000 // rows  # whole microseconds: the last cursor falls on the last day
    engine = sa.create_engine(url)
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            if dialect == "postgres":
                conn.exec_driver_sql(_PG_DDL.format(name=name))
                conn.execute(sa.text(_PG_FILL.format(name=name, rows=int(rows), first=first, step_us=step_us)))
            else:
                conn.exec_driver_sql("SET time_zone = '+00:00'")
                conn.exec_driver_sql(_MYSQL_DDL.format(name=name))
                conn.execute(sa.text(_MYSQL_FILL.format(name=name, rows=int(rows), first=first, step_us=step_us)))
            if not args.no_cursor_index:
                conn.exec_driver_sql(f"CREATE INDEX {name}_updated_at ON {name} (updated_at)")
        if dialect == "postgres":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"VACUUM ANALYZE {name}")
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ANALYZE TABLE {name}")
        seconds = time.monotonic() - started
        with engine.begin() as conn:
            if dialect == "mysql":
                conn.exec_driver_sql("SET time_zone = '+00:00'")
            low, high, count = conn.exec_driver_sql(
                f"SELECT min(updated_at), max(updated_at), count(*) FROM {name}"
            ).one()
    finally:
        engine.dispose()
    print(f"{dialect}: built {name} ({rows:,} rows, cursor {low} .. {high}) in {seconds:.1f} s", file=sys.stderr)
    return {"table": name, "rows": int(count), "build_seconds": round(seconds, 1), "cursor": [str(low), str(high)]}


def _measure(setup: _Setup, plan: Plan, args: argparse.Namespace, built: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    backfill = [plan.first_day + dt.timedelta(days=n) for n in range((plan.warm_up - plan.first_day).days)]
    for variant in VARIANTS:
        night = _night(setup, variant, backfill, workers=2, backfill=True)
        print(
            f"{setup.dialect} {variant}: backfilled {len(backfill)} days in {night['seconds']:.1f} s", file=sys.stderr
        )
    for variant in VARIANTS:
        night = _night(setup, variant, [plan.warm_up], workers=args.workers)
        print(f"{setup.dialect} {variant}: warm-up night {plan.warm_up} {night['seconds']:.2f} s", file=sys.stderr)
    prepared = time.monotonic() - started
    timings: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    measured = 0
    for day in plan.nights:
        is_measured = day in plan.measured
        variants = order if measured % 2 == 0 else order[::-1]
        for variant in variants:
            night = _night(setup, variant, [day], workers=args.workers)
            if is_measured:
                night["round"] = measured + 1
                timings[variant].append(night)
        summary = ", ".join(f"{v} {timings[v][-1]['seconds']:.2f} s" for v in variants) if is_measured else "filler"
        print(f"{setup.dialect} night {day}: {summary}", file=sys.stderr)
        measured += is_measured
    staging = _staging_cost(setup, plan.nights[-1], args.repeat, args.rows)
    return {
        "source": built,
        "backfill_and_warm_up_seconds": round(prepared, 1),
        "variants": {v: _summary(v, timings) for v in VARIANTS},
        "staging_deletes": staging,
        "nights": timings,
    }


def _night(setup: _Setup, variant: str, days: list[dt.date], *, workers: int, backfill: bool = False) -> dict[str, Any]:
    """One night (or a backfill of days) of one variant in a fresh child process, with the services' CPU."""
    env = {**setup.env, "MOZART_CONFIG_DIR": str(setup.config_dirs[variant])}
    spec = {
        "tenant": setup.tenants[variant],
        "days": [d.isoformat() for d in days],
        "workers": workers,
        "backfill": backfill,
    }
    load, before = _load(), _service_cpu()
    with tempfile.TemporaryFile() as err:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            check=False,
        )
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    after = _service_cpu()
    if done.returncode != 0 or not done.stdout.strip():
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{variant} {days[0]}: the night failed (exit {done.returncode}):\n{tail}")
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    if not report["ok"]:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{variant} {days[0]}: luigi.build did not succeed ({report['status']}):\n{tail}")
    report["date"] = days[0].isoformat() if len(days) == 1 else f"{days[0]}..{days[-1]}"
    report["load_average"] = load
    report["service_cpu_s"] = {k: round(after[k] - before[k], 2) for k in after if k in before}
    return report


# ---------------------------------------------------------------------------------------------- child
def _child(spec: dict[str, Any]) -> None:
    """In a fresh process from the project folder: ``luigi.build`` of one night (``DbtRun.requires()``: the
    tasks ``mozart run`` would run before dbt) or of a backfill (each day's own ``LoadIceberg``); prints one
    JSON line: seconds, CPU, and what the night extracted (from the manifests it published)."""
    import luigi

    from mozart_luigi.config import get_config
    from mozart_luigi.lake import Lake
    from mozart_luigi.tasks.dbt import DbtRun
    from mozart_luigi.tasks.load import LoadIceberg

    tenant, workers = spec["tenant"], int(spec["workers"])
    days = [dt.date.fromisoformat(d) for d in spec["days"]]
    config = get_config()
    if spec["backfill"]:
        tasks = [LoadIceberg(tenant=tenant, table=TABLE, date=d) for d in days]
    else:
        tasks = list(DbtRun(tenant=tenant, date=days[0]).requires())
    wall = dt.datetime.now(dt.UTC)
    cpu, started = _own_cpu(), time.perf_counter()
    result = luigi.build(tasks, local_scheduler=True, workers=workers, detailed_summary=True)
    seconds, cpu = time.perf_counter() - started, _own_cpu() - cpu
    status = result.status.name
    report: dict[str, Any] = {
        "ok": bool(result.scheduling_succeeded) and status in ("SUCCESS", "SUCCESS_WITH_RETRY"),
        "status": status,
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "tasks": len(tasks),
    }
    if not spec["backfill"]:
        lake = Lake.from_settings(config.settings)
        extracts: list[dict[str, Any]] = []
        for task in tasks:
            manifest = lake.read_manifest(task.tenant, task.table, task.date)
            extracts.append(
                {
                    "table": task.table,
                    "date": task.date.isoformat(),
                    "refresh": task.refresh is not None,
                    "rows": manifest.row_count,
                    "bytes": sum(f.bytes for f in manifest.files),
                    "extract_s": float(manifest.details.get("seconds", 0.0)),
                    "this_night": manifest.extracted_at >= wall,
                }
            )
        report |= {
            "extracts": extracts,
            "rows_read": sum(e["rows"] for e in extracts),
            "keys_rows": sum(e["rows"] for e in extracts if e["table"] == KEYS),
            "bytes": sum(e["bytes"] for e in extracts),
            "extract_s": round(sum(e["extract_s"] for e in extracts), 3),
            "all_extracted_this_night": all(e["this_night"] for e in extracts),
        }
    print(json.dumps(report))


def _own_cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -------------------------------------------------------------------------------------------- staging
def _staging_sql(catalog: str, tenant: str, run_date: dt.date, *, deletes: bool) -> str:
    """``count(*)`` over ``mozart_current_state('facts')`` (dbt/macros/current_state.sql, incremental), as
    dbt renders it for the run date, with the ``deletes: keys`` condition or without it."""
    raw, keys = f'{catalog}."{tenant}"."{TABLE}"', f'{catalog}."{tenant}"."{KEYS}"'
    day = f"DATE '{run_date.isoformat()}'"
    present = (
        f"""
  and exists (
    select 1 from (
      select id from {keys} where _mozart_date = {day}
      union all
      select id from {raw} where _mozart_date <= {day}
        and _mozart_extracted_at > (select max(_mozart_extracted_at) from {keys} where _mozart_date = {day})
    ) as present_keys
    where present_keys.id = versions.id
  )"""
        if deletes
        else ""
    )
    return f"""select count(*) from (
select * from (
  select raw_rows.*,
    row_number() over (
      partition by id order by updated_at desc, _mozart_date desc, _mozart_extracted_at desc
    ) as _mozart_version_rank
  from {raw} as raw_rows
  where _mozart_date <= {day}
) as versions
where _mozart_version_rank = 1{present}
) as current_rows"""


def _staging_cost(setup: _Setup, run_date: dt.date, repeat: int, rows: int) -> dict[str, Any]:
    """The staging query of the ``keys`` variant's raw table (its whole history, and its keys snapshot of the
    run date) with and without the deletes condition, alternating; both must count every source row."""
    from mozart_luigi.config import load_config
    from mozart_luigi.warehouse.trino import TrinoWarehouse

    tenant = setup.tenants["keys"]
    settings = load_config(setup.config_dirs["keys"], env=setup.env).settings
    timings: dict[str, list[float]] = {"without": [], "with": []}
    counts: dict[str, int] = {}
    warehouse = TrinoWarehouse.from_settings(settings, tenant=tenant)
    with warehouse:
        for n in range(repeat + 1):  # the first pair warms Trino's metadata caches, not counted
            sides = ["without", "with"] if n % 2 == 0 else ["with", "without"]
            for side in sides:
                statement = _staging_sql(settings.trino_catalog, tenant, run_date, deletes=side == "with")
                started = time.perf_counter()
                counts[side] = int(warehouse.query(statement, tenant=tenant)[0][0])
                if n:
                    timings[side].append(time.perf_counter() - started)
    without, with_ = statistics.median(timings["without"]), statistics.median(timings["with"])
    return {
        "run_date": run_date.isoformat(),
        "counted_rows": counts,
        "ok": counts == {"without": rows, "with": rows},
        "seconds_without_deletes": [round(s, 2) for s in timings["without"]],
        "seconds_with_deletes": [round(s, 2) for s in timings["with"]],
        "median_without": round(without, 2),
        "median_with": round(with_, 2),
        "median_ratio": round(
            statistics.median(w / o for w, o in zip(timings["with"], timings["without"], strict=True)), 2
        ),
        "load_average": _load(),
    }


# -------------------------------------------------------------------------------------------- results
def _summary(variant: str, timings: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    nights, base = timings[variant], timings["base"]
    ratios = [n["seconds"] / b["seconds"] for n, b in zip(nights, base, strict=True)]
    cpu_ratios = [n["cpu_s"] / b["cpu_s"] for n, b in zip(nights, base, strict=True)]
    services = sorted({k for n in nights for k in n["service_cpu_s"]})
    return {
        "label": LABELS[variant],
        "seconds": [n["seconds"] for n in nights],
        "median_seconds": _median(n["seconds"] for n in nights),
        "median_ratio_to_base": _median(ratios, 2),
        "ratios_to_base": [round(r, 2) for r in ratios],
        "median_cpu_s": _median(n["cpu_s"] for n in nights),
        "median_cpu_ratio_to_base": _median(cpu_ratios, 2),
        "median_extract_s": _median(n["extract_s"] for n in nights),
        "median_service_cpu_s": {s: _median(n["service_cpu_s"].get(s, 0.0) for n in nights) for s in services},
        "extracts_per_night": len(nights[0]["extracts"]),
        "rows_read": nights[0]["rows_read"],
        "keys_rows": nights[0]["keys_rows"],
        "bytes": nights[0]["bytes"],
        "all_extracted_this_night": all(n["all_extracted_this_night"] for n in nights),
        "load_average": [n["load_average"] for n in nights],
    }


def _median(values: Any, digits: int = 3) -> float:
    return round(float(statistics.median(list(values))), digits)


def _print_table(dialect: str, result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"\n{dialect}: FAILED: {result['error']}", file=sys.stderr)
        return
    print(f"\n{dialect}: one night, extract + load (no dbt), medians of {len(result['nights']['base'])} round(s)")
    print("| variant | extracts | rows read | seconds | vs (a) | client CPU s | CPU vs (a) | extract s | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for summary in result["variants"].values():
        loads = "–".join(f"{x:.1f}" for x in (min(summary["load_average"]), max(summary["load_average"])))
        print(
            f"| {summary['label']} | {summary['extracts_per_night']} | {summary['rows_read']:,} "
            f"| {summary['median_seconds']:.2f} | {summary['median_ratio_to_base']:.2f}x "
            f"| {summary['median_cpu_s']:.2f} | {summary['median_cpu_ratio_to_base']:.2f}x "
            f"| {summary['median_extract_s']:.2f} | {loads} |"
        )
    staging = result["staging_deletes"]
    print(
        f"staging count(*) at {staging['run_date']}: {staging['median_without']:.2f} s without deletes, "
        f"{staging['median_with']:.2f} s with (ratio {staging['median_ratio']:.2f}; rows {staging['counted_rows']})"
    )


# ------------------------------------------------------------------------------------------- clean-up
def _clean_up(setup: _Setup, url: sa.URL) -> None:
    """Drop the tenants (Iceberg schemas, markers), the lake prefix and the source table; each step on its
    own, so one failing does not leave the others."""
    from mozart_luigi.config import load_config
    from mozart_luigi.lake import Lake
    from mozart_luigi.retry import retrying
    from mozart_luigi.warehouse.trino import TrinoWarehouse

    settings = load_config(setup.config_dirs["base"], env=setup.env).settings

    def drop(tenant: str) -> None:
        try:
            with TrinoWarehouse.from_settings(settings, tenant=tenant) as warehouse:
                retrying(lambda: warehouse.drop_tenant(tenant), what=f"drop tenant {tenant}", attempts=6)
        except Exception:  # noqa: BLE001 - reported; the other tenants are still dropped
            traceback.print_exc()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(drop, setup.tenants.values()))
    steps: list[Callable[[], None]] = [
        lambda: _drop_prefix(Lake.from_settings(settings)),
        lambda: _drop_source(url, setup.source_table),
    ]
    for step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - reported; the next step still runs
            traceback.print_exc()
    print(f"{setup.dialect}: cleaned up {', '.join(setup.tenants.values())}, {settings.lake_url}", file=sys.stderr)


def _drop_prefix(lake: Any) -> None:
    lake.filesystem.delete_dir_contents(lake.fs_path(lake.url), missing_dir_ok=True)
    with contextlib.suppress(FileNotFoundError):
        lake.filesystem.delete_dir(lake.fs_path(lake.url))


def _drop_source(url: sa.URL, name: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------- machine
def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _service_cpu() -> dict[str, float]:
    """CPU seconds used so far by each stack service whose pid file ``scripts/stack`` wrote (``.stack/<svc>/
    pid``), reaped children included (PostgreSQL's backends). Shared: other jobs' queries count too."""
    found: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in SERVICES:
        try:
            pid = int((REPO / ".stack" / name / "pid").read_text().split()[0])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        found[name] = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
    return found


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=REPO).stdout.strip()

    changed = git("status", "--porcelain", "--", "mozart_luigi").replace("\n", ", ")
    return git("rev-parse", "--short", "HEAD") + (f" + uncommitted: {changed}" if changed else "")


if __name__ == "__main__":
    main()
