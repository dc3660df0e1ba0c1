"""dbt's fixed cost per tenant (issue #15 item 3): the wall time of ``DbtRun`` on Trino for the sample shop.

Needs the stack (``eval "$(scripts/stack env)"``). Two tenants are configured on the stack's sample sources
(``bdbt_<hex>_acme`` on PostgreSQL database ``acme``, ``bdbt_<hex>_globex`` on MariaDB database ``globex``,
as ``tests/integration/test_dbt_trino.py`` does), in a temporary config and data folder. Their loads
(``LoadIceberg`` of every table for ``--days`` days up to the first round's date, and for each later round's
date) are built once through ``luigi.build``. Then round ``r`` runs ``DbtRun(tenant, date_r).run()`` (one run
date per round, ascending from ``--date``: the date moves on as nightly runs do; the sample data ends on
2026-11-28, so earlier first dates fail the weekly relationships tests, an order's later update not being
loaded yet, and later dates load no new rows) for each variant
and tenant, each in a fresh child process started from the project folder (so every measured DbtRun is the
first of its process, as in a forked Luigi worker of a new ``mozart run``); the variants' order alternates
by round. The clock starts after the child's imports, right before ``run()`` (``_as_of``'s marker lookup,
dbt, the copy of ``run_results.json``, the marker write).

Variants (``--variants``, each with its own data folder, hence its own dbt target folders and saved parse;
round 1 is each one's first build, with a full parse, rounds 2+ the steady state):

- ``nightly``: this tree, the ``nightly`` selector (``MOZART_DBT_WEEKLY_TESTS`` set to the weekday before
  the first date, which no round falls on);
- ``full``: this tree, every data test (``MOZART_DBT_WEEKLY_TESTS=daily``), as on the weekly day;
- ``before``: the dbt project of ``--before-rev`` (``git archive``; ``MOZART_DBT_PROJECT_DIR``) with every
  data test: what DbtRun did before issue #15 item 3.

Split, from the child's clock and the ``run_results.json`` that run kept:

- ``start+parse``: ``run()`` start to the start of dbt's execution phase (``generated_at - elapsed_time``):
  the marker lookup, dbt's process start and imports, reading the project and parsing (or partial parsing);
- ``exec``: dbt's ``elapsed_time``: connections, relation cache, schemas, models and tests;
- ``models`` / ``tests``: the wall span of the model / test nodes (first start to last end) and, for tests,
  the sum of their statement times (they run in dbt's threads, so the sum exceeds the span);
- ``post``: what is left of the wall (dbt's exit, the copy, the marker write).

The ``selection`` column is what the marker recorded (``nightly`` or ``full`` once the selectors exist).
The 1-minute load average is printed next to every row (2 shared cores).

Usage: ``.venv/bin/python benchmarks/dbt_cost.py [--rounds 3] [--days 4] [--date 2026-11-28]
[--variants nightly,full,before] [--before-rev REV] [--json FILE]``.
Everything it creates is dropped at the end: the tenants' Iceberg schemas (raw, staging, intermediate,
mart), markers and lake files, the temporary folders.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
LAST_DAY = dt.date(2026, 11, 28)
LAYERS = ("staging", "intermediate", "mart")


def main() -> None:
    args = _args()
    if args.child:
        _child(json.loads(args.child))
        return
    run = uuid.uuid4().hex[:6]
    tenants = {"acme": f"bdbt_{run}_acme", "globex": f"bdbt_{run}_globex"}
    dates = [args.date + dt.timedelta(days=i) for i in range(args.rounds)]
    with tempfile.TemporaryDirectory(prefix="mozart-dbt-cost-") as tmp:
        env = _environment(Path(tmp), tenants)
        os.environ.update(env)
        off = (dates[0] - dt.timedelta(days=1)).strftime("%A").lower()  # a weekday no round falls on
        variants = {name: _variant(name, Path(tmp), args.before_rev, off) for name in args.variants.split(",")}
        try:
            days = [dates[0] - dt.timedelta(days=i) for i in reversed(range(args.days))] + dates[1:]
            started = time.monotonic()
            _build_loads(list(tenants.values()), days)
            print(f"loads of {len(days)} days built in {time.monotonic() - started:.1f}s", file=sys.stderr)
            rows = []
            for round_no, date in enumerate(dates, start=1):
                order = list(variants) if round_no % 2 else list(reversed(variants))
                rows += [
                    _measure(tenant, date, round_no, name, variants[name])
                    for name in order
                    for tenant in tenants.values()
                ]
        finally:
            _clean_up(list(tenants.values()))
    _print(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "commit": _commit()}, indent=2), encoding="utf-8")


def _variant(name: str, tmp: Path, before_rev: str, off_day: str) -> dict[str, str]:
    """Env overrides of a contender; each has its own data folder, so its dbt target folders (and saved
    parse) are its own. ``before``: the dbt project of ``before_rev`` (plus a ``full`` selector selecting
    everything, which is what a bare ``dbt build`` did) with the full test set."""
    env = {"MOZART_DATA_DIR": str(tmp / f"data-{name}"), "MOZART_REPORT_DIR": str(tmp / f"data-{name}" / "reports")}
    if name == "nightly":
        return {**env, "MOZART_DBT_WEEKLY_TESTS": off_day}
    if name == "full":
        return {**env, "MOZART_DBT_WEEKLY_TESTS": "daily"}
    if name == "before":
        folder = tmp / "before"
        folder.mkdir()
        archive = subprocess.run(["git", "archive", before_rev, "dbt"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        selectors = "selectors:\n  - name: full\n    definition: {method: fqn, value: '*'}\n"
        if not (folder / "dbt" / "selectors.yml").exists():
            (folder / "dbt" / "selectors.yml").write_text(selectors, encoding="utf-8")
        return {**env, "MOZART_DBT_WEEKLY_TESTS": "daily", "MOZART_DBT_PROJECT_DIR": str(folder / "dbt")}
    sys.exit(f"unknown variant {name!r}: nightly, full or before")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="one run date per round, the first on --date")
    parser.add_argument("--days", type=int, default=4, help="days of loads up to the first round's date")
    parser.add_argument("--variants", default="nightly", help="comma-separated: nightly, full, before")
    parser.add_argument("--before-rev", default="ad686b7", help="the commit whose dbt project 'before' runs")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=LAST_DAY)
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def _environment(tmp: Path, tenants: dict[str, str]) -> dict[str, str]:
    """A config folder with the repo's tables.yaml and the two sample tenants; data under ``tmp``."""
    for name in ("MOZART_TRINO_HOST", "MOZART_PG_PORT", "MOZART_MYSQL_PORT", "ACME_DB_PASSWORD"):
        if not os.environ.get(name):
            sys.exit(f'{name} is not set: run eval "$(scripts/stack env)" first')
    config = tmp / "config"
    config.mkdir()
    (config / "tables.yaml").write_text((REPO / "config" / "tables.yaml").read_text(encoding="utf-8"))
    pg = {"kind": "postgresql", "host": "${MOZART_PG_HOST:127.0.0.1}", "port": "${MOZART_PG_PORT}"}
    my = {"kind": "mysql", "host": "${MOZART_MYSQL_HOST:127.0.0.1}", "port": "${MOZART_MYSQL_PORT}"}
    body = {
        tenants["acme"]: {
            "source": {**pg, "database": "acme", "user": "acme_reader", "password": "${ACME_DB_PASSWORD}"}
        },
        tenants["globex"]: {
            "source": {**my, "database": "globex", "user": "globex_reader", "password": "${GLOBEX_DB_PASSWORD}"}
        },
    }
    (config / "tenants.yaml").write_text(yaml.safe_dump({"tenants": body}), encoding="utf-8")
    return {
        "MOZART_CONFIG_DIR": str(config),
        "MOZART_DATA_DIR": str(tmp / "data"),
        "MOZART_PROFILE": "stack",
        "MOZART_REPORT_DIR": str(tmp / "data" / "reports"),
    }


def _build_loads(tenants: list[str], days: list[dt.date]) -> None:
    import luigi

    from mozart_luigi.config import get_config
    from mozart_luigi.tasks.load import LoadIceberg

    loads = [
        LoadIceberg(tenant=t, table=table.name, date=day)
        for t in tenants
        for table in get_config().tables_for(t)
        for day in days
    ]
    result = luigi.build(loads, local_scheduler=True, detailed_summary=True, workers=2)
    if not result.scheduling_succeeded:
        sys.exit(f"loads failed:\n{result.summary_text}")


def _measure(tenant: str, date: dt.date, round_no: int, variant: str, env: dict[str, str]) -> dict[str, Any]:
    spec = {"tenant": tenant, "date": date.isoformat()}
    load = round(os.getloadavg()[0], 2)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"DbtRun {tenant} failed:\n{proc.stderr[-4000:]}")
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(round=round_no, date=date.isoformat(), variant=variant, load=load)
    print(_line(row), file=sys.stderr)
    return row


def _child(spec: dict[str, Any]) -> None:
    """In a fresh process: one ``DbtRun.run()``, timed; print the split as one JSON line."""
    import logging

    from mozart_luigi.config import get_config
    from mozart_luigi.tasks.dbt import DbtRun
    from mozart_luigi.warehouse import open_warehouse

    logging.basicConfig(level=logging.WARNING)
    task = DbtRun(tenant=spec["tenant"], date=dt.date.fromisoformat(spec["date"]))
    get_config()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_wall, started = time.time(), time.monotonic()
    task.run()
    wall = time.monotonic() - started
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    dbt_cpu = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    report = get_config().settings.report_dir / "dbt" / task.tenant / spec["date"] / "run_results.json"
    results = json.loads(report.read_text(encoding="utf-8"))
    with open_warehouse(get_config().settings, tenant=task.tenant) as warehouse:
        markers = [m for m in warehouse.markers(task.tenant, task.date) if m.task_id == task.task_id]
    selection = (markers[0].details.get("selection") if markers else None) or "-"
    row = {"tenant": task.tenant, "wall": round(wall, 2), "selection": selection, "dbt_cpu": round(dbt_cpu, 2)}
    print(json.dumps({**row, **_split(results, started_wall, wall)}))


def _split(results: dict[str, Any], started_wall: float, wall: float) -> dict[str, Any]:
    generated = _epoch(results["metadata"]["generated_at"])
    exec_seconds = float(results["elapsed_time"])
    exec_start = generated - exec_seconds
    spans: dict[str, list[float]] = {"model": [], "test": []}
    test_sum = 0.0
    for node in results["results"]:
        kind = node["unique_id"].split(".", 1)[0]
        timing = {t["name"]: t for t in node.get("timing") or []}
        first = timing.get("compile") or timing.get("execute")
        last = timing.get("execute") or first
        if kind in spans and first and last and first.get("started_at") and last.get("completed_at"):
            spans[kind] += [_epoch(first["started_at"]), _epoch(last["completed_at"])]
        if kind == "test":
            test_sum += float(node.get("execution_time") or 0.0)
    start_parse = exec_start - started_wall
    return {
        "start_parse": round(start_parse, 2),
        "exec": round(exec_seconds, 2),
        "models": round(max(spans["model"]) - min(spans["model"]), 2) if spans["model"] else 0.0,
        "tests": round(max(spans["test"]) - min(spans["test"]), 2) if spans["test"] else 0.0,
        "test_sum": round(test_sum, 2),
        "n_tests": sum(1 for n in results["results"] if n["unique_id"].startswith("test.")),
        "post": round(wall - start_parse - exec_seconds, 2),
    }


def _epoch(stamp: str) -> float:
    value = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()


HEADER = (
    "round date       variant tenant               sel      wall  start+parse  exec  models  tests (sum, n)"
    "     post  dbt CPU  load"
)


def _line(row: dict[str, Any]) -> str:
    r = row
    return (
        f"{r['round']:>5} {r['date']} {r['variant']:<7} {r['tenant']:<20} {r['selection']:<8}{r['wall']:>5.2f}"
        f"  {r['start_parse']:>11.2f}  {r['exec']:>4.2f}  {r['models']:>6.2f}  {r['tests']:>5.2f}"
        f" ({r['test_sum']:>5.2f}, {r['n_tests']:>2})  {r['post']:>6.2f}  {r['dbt_cpu']:>7.2f}  {r['load']:>4.2f}"
    )


def _print(rows: list[dict[str, Any]]) -> None:
    print(HEADER)
    for row in rows:
        print(_line(row))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        for label, subset in (("round 1", [1]), ("rounds 2+", None)):
            walls = [
                r for r in rows if r["variant"] == variant and (r["round"] in subset if subset else r["round"] > 1)
            ]
            if walls:
                print(
                    f"{variant:<8} {label:<9}: wall median {statistics.median(r['wall'] for r in walls):.2f}s"
                    f" max {max(r['wall'] for r in walls):.2f}s, start+parse median"
                    f" {statistics.median(r['start_parse'] for r in walls):.2f}s, exec median"
                    f" {statistics.median(r['exec'] for r in walls):.2f}s, dbt CPU median"
                    f" {statistics.median(r['dbt_cpu'] for r in walls):.2f}s, load"
                    f" {min(r['load'] for r in walls):.1f}-{max(r['load'] for r in walls):.1f} ({len(walls)} runs)"
                )


def _clean_up(tenants: list[str]) -> None:
    """Drop the dbt schemas (views, tables), the raw schema, the markers and the lake files of each tenant."""
    from mozart_luigi.config import get_config
    from mozart_luigi.lake import Lake
    from mozart_luigi.warehouse import open_warehouse

    settings = get_config().settings
    for tenant in tenants:
        try:
            with open_warehouse(settings, tenant=tenant) as wh:
                for layer in LAYERS:
                    wh.drop_schema(f"{tenant}_{layer}", tenant=tenant)
                wh.drop_tenant(tenant)
            lake = Lake.from_settings(settings)
            for table in get_config().tables:
                lake.clear_dir(lake.table_url(tenant, table))
        except Exception:  # noqa: BLE001 - reported; the other tenant is still dropped
            traceback.print_exc()
    print(f"cleaned up {', '.join(tenants)}", file=sys.stderr)


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False)
    return out.stdout.strip()


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    main()
