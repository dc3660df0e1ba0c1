"""Load benchmark (issue #4): LoadIceberg end to end vs the bare Trino INSERT, and bulk completeness checks.

Needs the stack (``eval "$(scripts/stack env)"``). Everything it creates lives under unique names
(tenant ``bench_<hex>``, lake prefix ``s3://raw/_bench/<hex>``) and is dropped at the end.

1. **Load**: ``--rows`` rows (8 typical columns, written with pyarrow, manifests as ExtractTable writes them)
   published for ``--repeat`` + 1 dates. Each round loads a new date (a date's first load, as in daily
   production), alternating, median and min reported:
   - ``LoadIceberg`` through ``luigi.build`` (completeness check; the columns and the date's count in one
     query; INSERT ... SELECT; the verified marker), the extract being complete. No per-process cache helps
     it (a Luigi worker runs each task in a fresh process);
   - the limit: a bare ``INSERT INTO iceberg... SELECT * FROM raw...`` of the same date folder into a table
     of the same layout (the raw table already exists; nothing else happens).
2. **Completeness of 2,000 LoadIceberg tasks** (``--tenants`` x ``--tables``, one date): ``--single`` markers
   written one by one by ``--writers`` threads exactly as LoadIceberg writes them (one Iceberg append each,
   with its periodic compaction), the rest in bulk INSERTs of 100 (a shortcut: 2,000 appends take ~20 min
   on a 2-core box). Then, from a cold cache, as written and after ``compact_markers``: ``complete()`` on
   every task (one query: a miss fetches the date for all configured tenants), ``prefetch_markers`` +
   ``complete()`` (the ``bulk_complete`` path), and ``luigi.build`` of a wrapper over all of them.

Usage: ``.venv/bin/python benchmarks/load.py [--rows 1500000] [--repeat 9] [--tenants 20 --tables 100]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import luigi
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, PartFile
from mozart_luigi.targets import clear_marker_cache
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse import Marker
from mozart_luigi.warehouse.common import marker_row
from mozart_luigi.warehouse.trino import TrinoWarehouse

DAY = dt.date(2026, 11, 25)
PART_ROWS = 1_000_000


def main() -> None:
    args = _args()
    run = uuid.uuid4().hex[:8]
    with _environment(run, args.tenants, args.tables) as tenants:
        results = {"rows": args.rows}
        if args.rows:
            results["load"] = bench_load(tenants[0], args.rows, args.repeat)
        if args.tenants and args.tables:
            results["completeness"] = bench_completeness(tenants, args.tables, args.writers, args.single)
    print(json.dumps(results, indent=2))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="rows of the load benchmark (0: skip)")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--tenants", type=int, default=20, help="tenants of the completeness check (0: skip)")
    parser.add_argument("--tables", type=int, default=100)
    parser.add_argument("--writers", type=int, default=4, help="threads writing markers one by one")
    parser.add_argument(
        "--single", type=int, default=128, help="markers written one by one (the rest in bulk)"
    )
    return parser.parse_args()


# ------------------------------------------------------------------------------------------ set-up
@contextmanager
def _environment(run: str, tenants: int, tables: int) -> Iterator[list[str]]:
    """A config dir with bench tenants (never contacted: their extracts are complete) and a bench lake."""
    import os
    import tempfile

    names = [f"bench_{run}_{i:02d}" for i in range(max(tenants, 1))]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp)
        tenant_body = {"source": {"kind": "sqlite", "path": str(config / "none.sqlite")}}
        (config / "tenants.yaml").write_text(yaml.safe_dump({"tenants": dict.fromkeys(names, tenant_body)}))
        table_names = ["facts"] + [f"t{i:03d}" for i in range(tables)]
        (config / "tables.yaml").write_text(
            yaml.safe_dump({"tables": {t: {"mode": "full"} for t in table_names}})
        )
        os.environ.update(MOZART_CONFIG_DIR=str(config), MOZART_LAKE_URL=f"s3://raw/_bench/{run}")
        reset_config_cache()
        settings = get_config().settings
        try:
            yield names
        finally:
            warehouse = TrinoWarehouse.from_settings(settings)
            marks = ", ".join("?" * len(names))
            warehouse.query(f"DELETE FROM iceberg.mozart_meta.task_markers WHERE tenant IN ({marks})", names)
            for tenant in names:
                warehouse.drop_tenant(tenant)
            warehouse.compact_markers(DAY)  # leave the shared markers table compact
            lake = Lake.from_settings(settings)
            lake.filesystem.delete_dir_contents(lake.fs_path(lake.url), missing_dir_ok=True)
            with contextlib.suppress(FileNotFoundError):
                lake.filesystem.delete_dir(lake.fs_path(lake.url))


def bench_data(rows: int) -> pa.Table:
    ids = pa.array(range(1, rows + 1), pa.int64())
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    micros = pc.multiply(ids, 500_000)
    return pa.table({
        "id": ids,
        "qty": pc.cast(pc.bit_wise_and(pc.multiply(ids, 7919), 0xFFFF), pa.int32()),
        "price": pc.cast(pc.divide(pc.cast(pc.bit_wise_and(pc.multiply(ids, 31), 0xFFFFF), pa.float64()),
                                   100),
                         pa.decimal128(12, 2)),
        "score": pc.divide(pc.cast(ids, pa.float64()), 7.0),
        "label": pc.binary_join_element_wise("item-", pc.cast(pc.bit_wise_and(ids, 0xFFF), pa.string()), ""),
        "created_at": pc.cast(pc.add(pc.cast(micros, pa.int64()), 1_577_836_800_000_000), pa.timestamp("us")),
        "updated_at": pc.cast(pc.add(micros, int(base.timestamp() * 1e6)), pa.timestamp("us", tz="UTC")),
        "active": pc.equal(pc.bit_wise_and(ids, 1), 0),
    })  # fmt: skip


def publish(lake: Lake, tenant: str, table: str, data: pa.Table, day: dt.date = DAY) -> Manifest:
    folder = lake.date_url(tenant, table, day)
    run_id = uuid.uuid4().hex[:8]
    files = []
    for n, start in enumerate(range(0, data.num_rows, PART_ROWS)):
        name = f"part-{run_id}-{n:05d}.parquet"
        with lake.open_output(f"{folder}/{name}") as out:
            pq.write_table(data.slice(start, PART_ROWS), out, compression="zstd")
        size = lake.filesystem.get_file_info(lake.fs_path(f"{folder}/{name}")).size
        files.append(PartFile(name, min(PART_ROWS, data.num_rows - start), size))
    manifest = Manifest(tenant=tenant, table=table, date=day, mode="full", row_count=data.num_rows,
                        source_count=data.num_rows, files=tuple(files), schema=data.schema,
                        extracted_at=dt.datetime.now(dt.UTC), run_id=run_id)  # fmt: skip
    lake.write_manifest(manifest)
    return manifest


def _build(*tasks: luigi.Task) -> luigi.execution_summary.LuigiRunResult:
    luigi.task_register.Register.clear_instance_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, log_level="WARNING")


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------- load
def bench_load(tenant: str, rows: int, repeat: int) -> dict[str, object]:
    """Each round loads a new date (a day's first load, as in production) from the same Parquet rows."""
    settings = get_config().settings
    lake = Lake.from_settings(settings)
    data = bench_data(rows)
    days = [DAY + dt.timedelta(days=i) for i in range(repeat + 1)]
    manifests = [publish(lake, tenant, "facts", data, day) for day in days]
    warehouse = TrinoWarehouse.from_settings(settings, tenant=tenant)

    def ours(day: dt.date) -> float:
        clear_marker_cache()
        started = time.perf_counter()
        result = _build(LoadIceberg(tenant=tenant, table="facts", date=day))
        seconds = time.perf_counter() - started
        if not result.scheduling_succeeded:
            raise SystemExit(result.summary_text)
        return seconds

    ours(days[0])  # warm-up: creates the schemas, the table and the raw table
    for day in days:
        # the shared markers table holds these dates' markers of earlier tests and benchmarks (and delete
        # files from their clean-up); compacted, a date looks as it does to its first load in production
        warehouse.compact_markers(day)
    raw = _bare_table(warehouse, tenant)
    timings: dict[str, list[float]] = {"LoadIceberg (luigi.build)": [], "bare INSERT ... SELECT": []}
    for n, day in enumerate(days[1:]):
        # alternate which side goes first: the second reader of a date folder finds its Parquet in the
        # S3 server's page cache, which would favour whichever side always ran second
        sides = [("LoadIceberg (luigi.build)", lambda d=day: ours(d)),
                 ("bare INSERT ... SELECT", lambda d=day: _timed(lambda: warehouse.query(_bare_sql(tenant, raw, d))))]
        for name, side in sides if n % 2 == 0 else sides[::-1]:
            timings[name].append(side())
    medians = {name: round(statistics.median(values), 2) for name, values in timings.items()}
    best = {name: round(min(values), 2) for name, values in timings.items()}
    (ours_s, bare_s), (ours_min, bare_min) = medians.values(), best.values()
    pairs = list(zip(*timings.values(), strict=True))  # (ours, bare) of each round
    ratios = [o / b - 1 for o, b in pairs]
    return {"rows": rows, "files": len(manifests[0].files), "bytes": sum(f.bytes for f in manifests[0].files),
            "seconds_median": medians, "seconds_min": best,
            "all_seconds": {name: [round(v, 2) for v in values] for name, values in timings.items()},
            "overhead_pct_median": round(100 * (ours_s - bare_s) / bare_s, 1),
            "overhead_pct_min": round(100 * (ours_min - bare_min) / bare_min, 1),
            "overhead_seconds_median_of_pairs": round(statistics.median(o - b for o, b in pairs), 2),
            # each round's two sides ran back to back (order alternating), so a round's ratio cancels the
            # machine's drift between rounds: the headline figure on a shared box
            "overhead_pct_median_of_pairs": round(100 * statistics.median(ratios), 1),
            "overhead_pct_pairs_quartiles": [round(100 * q, 1) for q in statistics.quantiles(ratios, n=4)]}  # fmt: skip


def _bare_table(warehouse: TrinoWarehouse, tenant: str) -> str:
    """An Iceberg table of the same layout as ``facts``; returns the raw table LoadIceberg created."""
    warehouse.query(f'CREATE TABLE iceberg."{tenant}"."bare" (LIKE iceberg."{tenant}"."facts")'
                    " WITH (partitioning = ARRAY['_mozart_date'])")  # fmt: skip
    listing = ("SELECT table_name FROM raw.information_schema.tables "
               "WHERE table_schema = ? AND table_name LIKE 'facts\\_\\_%' ESCAPE '\\'")  # fmt: skip
    (raw,) = [r[0] for r in warehouse.query(listing, [tenant])]
    return raw


def _bare_sql(tenant: str, raw: str, day: dt.date) -> str:
    """The limit: INSERT ... SELECT * of one date folder (no checks, no marker)."""
    return (f'INSERT INTO iceberg."{tenant}"."bare" SELECT id, qty, price, score, label, created_at, '
            f"with_timezone(updated_at, 'UTC'), active, DATE '{day}', current_timestamp "
            f"FROM raw.\"{tenant}\".\"{raw}\" WHERE \"_mozart_folder\" = '{day}'")  # fmt: skip


# ------------------------------------------------------------------------------------- completeness
def bench_completeness(tenants: list[str], tables: int, writers: int, single: int) -> dict[str, object]:
    """Markers for tenants x tables: ``single`` written one by one as LoadIceberg does, the rest in bulk."""
    settings = get_config().settings
    tasks = [LoadIceberg(tenant=t, table=f"t{i:03d}", date=DAY) for t in tenants for i in range(tables)]
    warehouse = TrinoWarehouse.from_settings(settings)
    bulk_s = _timed(lambda: _write_in_bulk(warehouse, tasks[single:]))
    single_s = _timed(lambda: _write_one_by_one(settings, tasks[:single], writers))
    result: dict[str, object] = {
        "tasks": len(tasks),
        f"markers written in bulk ({len(tasks) - single}), seconds": round(bulk_s, 1),
        f"markers written one by one ({single}, {writers} threads), seconds": round(single_s, 1),
        "marker files for the date, as written": _marker_files(warehouse),
    }
    result.update(_check_all(tasks, "as written"))
    result["compact_markers seconds"] = round(_timed(lambda: warehouse.compact_markers(DAY)), 1)
    result["marker files for the date, compacted"] = _marker_files(warehouse)
    result.update(_check_all(tasks, "compacted"))
    return result


def _write_in_bulk(warehouse: TrinoWarehouse, tasks: list[LoadIceberg]) -> None:
    """One INSERT per 100 markers (the benchmark's shortcut; LoadIceberg writes one marker per task)."""
    for start in range(0, len(tasks), 100):
        chunk = tasks[start : start + 100]
        rows = [
            marker_row(Marker(t.task_family, t.task_id, t.tenant, DAY, table=t.table, rows=1)) for t in chunk
        ]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        warehouse.query(f"INSERT INTO iceberg.mozart_meta.task_markers VALUES {values}",
                        [v for row in rows for v in row])  # fmt: skip


def _write_one_by_one(settings: object, tasks: list[LoadIceberg], writers: int) -> None:
    local = threading.local()

    def write(task: LoadIceberg) -> None:
        if not hasattr(local, "warehouse"):
            local.warehouse = TrinoWarehouse.from_settings(settings)
        marker = Marker(task.task_family, task.task_id, task.tenant, DAY, table=task.table, rows=1)
        local.warehouse.write_marker(marker)

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, tasks))


def _marker_files(warehouse: TrinoWarehouse) -> int:
    return warehouse.query('SELECT count(*) FROM iceberg.mozart_meta."task_markers$files" '
                           "WHERE partition.run_date = ?", [DAY])[0][0]  # fmt: skip


def _check_all(tasks: list[LoadIceberg], label: str) -> dict[str, float]:
    clear_marker_cache()
    per_task = _timed(lambda: _assert_all(t.complete() for t in tasks))
    clear_marker_cache()
    pairs_bulk = _timed(lambda: _assert_all(_bulk_all(tasks)))
    clear_marker_cache()
    scheduling = _timed(lambda: _build(_All(ids=tuple((t.tenant, t.table) for t in tasks))))
    return {f"{label}: complete() x{len(tasks)}": round(per_task, 2),
            f"{label}: prefetch all + complete() x{len(tasks)} (1 query)": round(pairs_bulk, 2),
            f"{label}: luigi.build of a wrapper over all": round(scheduling, 2)}  # fmt: skip


def _bulk_all(tasks: list[LoadIceberg]) -> Iterator[bool]:
    from mozart_luigi.targets import prefetch_markers

    prefetch_markers("LoadIceberg", {(t.tenant, t.date) for t in tasks})
    return (t.complete() for t in tasks)


def _assert_all(values: Iterator[bool]) -> None:
    if not all(values):
        raise SystemExit("a task with a marker was reported incomplete")


class _All(luigi.WrapperTask):
    ids = luigi.ListParameter()

    def requires(self) -> list[LoadIceberg]:
        return [LoadIceberg(tenant=tenant, table=table, date=DAY) for tenant, table in self.ids]


if __name__ == "__main__":
    sys.exit(main())
