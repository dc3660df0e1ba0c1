"""Load benchmark (issue #4): ``LoadIceberg`` end to end vs a bare Trino INSERT, size flatness, throughput.

Needs the stack (``eval "$(scripts/stack env)"``). Everything it creates lives under a unique lake prefix
(``s3://raw/_bench/<hex>``, markers included) and in tenants ``bench_<hex>`` / ``bench_tp_<n>``, all dropped
at the end (``TrinoWarehouse.drop_tenant`` and a prefix delete).

**Load mode** (default). Rows of 8 typical columns, made with numpy/pyarrow one part at a time and written
by the package's own ``PartWriter`` (``MOZART_PART_ROWS`` rows per part, ``MOZART_BATCH_ROWS`` per batch,
as ``ExtractTable`` writes them) + ``Lake.write_manifest``, for one date per round. Each round, per size:

- (a) ``luigi.build([LoadIceberg(...)], local_scheduler=True)`` of a fresh date: completeness checks (the
  marker listing, the extract's ``_SUCCESS``), then the load (manifest, HEADs, the prestaged copies' checks and
  footers, one Iceberg commit, the marker object). The date is checked afterwards (``count_partition`` = rows).
  Each round's date is written as ``ExtractTable`` writes it on the stack, prestaged into the table (timed,
  side by side with a control date written without the prestage: ``extract_write_seconds_median``);
- (b) the bare Trino baseline: ``INSERT INTO iceberg.<t>.bare SELECT * FROM iceberg.<t>.src WHERE
  _mozart_date = <day>`` of the same rows (``src`` loaded once at set-up), through the trino client.

The two sides run back to back, in alternating order; with several sizes the sizes alternate too. Dates on
which ``LoadIceberg`` would also run its weekly snapshot expiry are skipped (their load is not comparable).

**Throughput mode** (``--throughput``): ``--workers`` spawned processes (Luigi's workers are processes)
finish ``--loads`` small loads (``--tp-rows`` rows each) of different tables of ``--tenants`` tenants, each as
``LoadIceberg.run`` does it: a new ``Lake`` and warehouse (the package keeps one S3 client and one catalog
client per process), ``read_manifest``, ``TrinoWarehouse.load_day(DayLoad(...))``. ``--fork`` runs each load
in a forked child of its worker, as Luigi's ``TaskProcess`` does (the child builds its own clients).
Reported: loads/s, retries by cause (``mozart_luigi.retry``'s "failed (attempt" warnings), ``complete()`` of
every task (``prefetch_markers`` + ``exists()``), and that nothing was lost or duplicated (every marker
exactly once; every table's date holds exactly its rows, one UNION ALL query per tenant).

Usage: ``.venv/bin/python benchmarks/load.py [--rows 1500000[,10000000]] [--repeat 5] [--json FILE]``
       ``.venv/bin/python benchmarks/load.py --throughput [--loads 2000 --workers 16] [--json FILE]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import luigi
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, new_run_id
from mozart_luigi.parquet import PartWriter
from mozart_luigi.settings import Settings
from mozart_luigi.targets import clear_marker_cache, prefetch_markers
from mozart_luigi.tasks.load import LoadIceberg, maintenance_due
from mozart_luigi.warehouse import Marker, open_warehouse, prestage_for
from mozart_luigi.warehouse.base import DayLoad
from mozart_luigi.warehouse.common import qualified
from mozart_luigi.warehouse.iceberg import IcebergLoader
from mozart_luigi.warehouse.trino import TrinoWarehouse

DAY = dt.date(2026, 11, 25)
TP_DAY = dt.date(2026, 12, 1)
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("qty", pa.int32()),
        ("price", pa.decimal128(12, 2)),
        ("score", pa.float64()),
        ("label", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("active", pa.bool_()),
    ]
)


def main() -> None:
    args = _args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still runs the clean-up
    run = uuid.uuid4().hex[:8]
    tp_tenants = [f"bench_tp_{n}" for n in range(args.tenants)] if args.throughput else []
    tables = _table_names(args)
    with _environment(run, [f"bench_{run}", *tp_tenants], tables) as settings:
        if args.throughput:
            results = bench_throughput(settings, tp_tenants, args)
        else:
            results = bench_load(settings, f"bench_{run}", args.rows, args.repeat, args.fork)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    parser.add_argument(
        "--rows",
        "--sizes",
        dest="rows",
        type=sizes,
        default=[1_500_000],
        help="rows per load; a comma list measures each size (flatness)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds (load mode)")
    parser.add_argument("--throughput", action="store_true", help="completion-throughput mode")
    parser.add_argument("--loads", type=int, default=2000, help="loads in throughput mode")
    parser.add_argument("--tenants", type=int, default=20, help="tenants in throughput mode")
    parser.add_argument("--workers", type=int, default=16, help="concurrent worker processes")
    parser.add_argument("--threads", action="store_true", help="threads instead of processes")
    parser.add_argument(
        "--fork", action="store_true", help="each LoadIceberg in a forked child, as Luigi's TaskProcess"
    )
    parser.add_argument("--days", type=int, default=1, help="throughput: dates loaded one after the other")
    parser.add_argument("--tp-rows", type=int, default=10, help="rows per load in throughput mode")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--stack-dir",
        default=str(Path(__file__).resolve().parents[1] / ".stack"),
        help="throughput: where scripts/stack keeps the services' pid files (their CPU is read "
        "from /proc; skipped when absent)",
    )
    return parser.parse_args()


def _table_names(args: argparse.Namespace) -> list[str]:
    if args.throughput:
        return [f"t{i:03d}" for i in range(_per_tenant(args.loads, args.tenants))]
    return [f"{kind}_{rows}" for rows in args.rows for kind in ("facts", "src", "bare")]


def _per_tenant(loads: int, tenants: int) -> int:
    if loads % tenants:
        raise SystemExit(f"--loads {loads} must be a multiple of --tenants {tenants}")
    return loads // tenants


# ------------------------------------------------------------------------------------------ set-up
@contextlib.contextmanager
def _environment(run: str, tenants: list[str], tables: list[str]) -> Iterator[Settings]:
    """A config dir with the bench tenants (never contacted: their extracts exist) and a bench lake."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp)
        body = {"source": {"kind": "sqlite", "path": str(config / "none.sqlite")}}
        (config / "tenants.yaml").write_text(yaml.safe_dump({"tenants": dict.fromkeys(tenants, body)}))
        (config / "tables.yaml").write_text(yaml.safe_dump({"tables": {t: {"mode": "full"} for t in tables}}))
        os.environ.update(MOZART_CONFIG_DIR=str(config), MOZART_LAKE_URL=f"s3://raw/_bench/{run}")
        reset_config_cache()
        settings = get_config().settings
        _drop_tenants(settings, tenants)  # leftovers of an interrupted run (bench_tp_<n> are fixed names)
        try:
            yield settings
        finally:
            _drop_tenants(settings, tenants)
            lake = Lake.from_settings(settings)
            lake.filesystem.delete_dir_contents(lake.fs_path(lake.url), missing_dir_ok=True)
            with contextlib.suppress(FileNotFoundError):
                lake.filesystem.delete_dir(lake.fs_path(lake.url))


def _drop_tenants(settings: Settings, tenants: list[str]) -> None:
    def drop(tenant: str) -> None:
        with TrinoWarehouse.from_settings(settings, tenant=tenant) as warehouse:
            warehouse.drop_tenant(tenant)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(drop, tenants))


def bench_chunk(start: int, rows: int) -> pa.RecordBatch:
    """Rows ``start+1 .. start+rows`` of the bench table, vectorised (no per-row Python)."""
    ids = np.arange(start + 1, start + rows + 1, dtype=np.int64)
    cents = (ids * 31) % 10_000_000
    words = np.column_stack([cents, np.zeros_like(cents)])  # decimal128: little-endian (low, high) int64 words
    price = pa.Array.from_buffers(pa.decimal128(12, 2), rows, [None, pa.py_buffer(words.tobytes())])
    label = pc.binary_join_element_wise("item-", pc.cast(pa.array(ids & 0xFFFFF), pa.string()), "")
    return pa.record_batch(
        [
            pa.array(ids),
            pa.array(((ids * 7919) % 100_000).astype(np.int32), mask=ids % 101 == 0),
            price,
            pa.array(ids / 7.0),
            pc.if_else(pa.array(ids % 97 == 0), pa.scalar(None, pa.string()), label),
            pa.array(1_577_836_800_000_000 + ids * 1_234_567, pa.timestamp("us")),
            pa.array(1_704_067_200_000_000 + ids * 500_000, pa.timestamp("us", tz="UTC")),
            pa.array(ids % 3 == 0),
        ],
        schema=SCHEMA,
    )


def write_extracts(
    settings: Settings, slices: list[tuple[str, str, dt.date]], rows: int, *, prestage: bool = False
) -> list[Manifest]:
    """One complete extract (parts + ``_SUCCESS``) per (tenant, table, date), all of the same rows: each
    1M-row chunk is generated once and fed, in ``batch_rows`` batches, to every slice's ``PartWriter``.
    ``prestage``: as ``ExtractTable`` does in the stack profile, each finished part is copied into the
    (existing) Iceberg table's location on a background thread while the next one is written."""
    lake = Lake.from_settings(settings)
    now = dt.datetime.now(dt.UTC)
    run_ids = [new_run_id() for _ in slices]
    stages = [
        prestage_for(settings, lake, tenant=t, table=tb, date=d, run_id=r) if prestage else None
        for (t, tb, d), r in zip(slices, run_ids, strict=True)
    ]
    if prestage and None in stages:
        raise SystemExit("prestage asked for, but a table does not exist yet or MOZART_PRESTAGE is off")
    writers = [
        PartWriter(
            lake,
            lake.date_url(t, tb, d),
            r,
            SCHEMA,
            date=d,
            extracted_at=now,
            compression=settings.compression,
            part_rows=settings.part_rows,
            on_part=None if stage is None else stage.submit,
        )
        for (t, tb, d), r, stage in zip(slices, run_ids, stages, strict=True)
    ]
    chunk_rows = max(settings.part_rows, settings.batch_rows)
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, rows, chunk_rows):
            chunk = bench_chunk(start, min(chunk_rows, rows - start))
            for offset in range(0, chunk.num_rows, settings.batch_rows):
                batch = chunk.slice(offset, settings.batch_rows)
                list(pool.map(lambda w, b=batch: w.write(b), writers))
        files = list(pool.map(lambda w: w.close(), writers))
    for stage in stages:
        if stage is not None:
            stage.finish()
    manifests = [
        Manifest(
            tenant=t,
            table=tb,
            date=d,
            mode="full",
            row_count=rows,
            source_count=rows,
            files=f,
            schema=SCHEMA,
            extracted_at=now,
            run_id=r,
        )
        for (t, tb, d), r, f in zip(slices, run_ids, files, strict=True)
    ]
    for manifest in manifests:
        lake.write_manifest(manifest)
    return manifests


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


_LOAD_PATH = (
    "mozart_luigi/warehouse",
    "mozart_luigi/objectstore.py",
    "mozart_luigi/lake.py",
    "mozart_luigi/parquet.py",
    "mozart_luigi/tasks/load.py",
    "mozart_luigi/targets.py",
    "mozart_luigi/verify.py",
    "mozart_luigi/retry.py",
)


def _commit() -> str:
    """The code measured: HEAD, and any uncommitted change to the load path (others' edits included)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent
        ).stdout.strip()

    changed = git("status", "--porcelain", "--", *_LOAD_PATH).replace("\n", ", ")
    return git("rev-parse", "--short", "HEAD") + (f" + uncommitted: {changed}" if changed else "")


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------------------- load mode
@dataclass
class _Size:
    """One size's tables and dates: ``facts_<rows>`` loaded by LoadIceberg, ``src``/``bare`` for (b)."""

    rows: int
    tenant: str
    days: list[dt.date]
    fork: bool = False
    manifest: Manifest | None = None
    writes: dict[str, list[float]] = field(default_factory=lambda: {"prestaged": [], "plain": []})

    @property
    def facts(self) -> str:
        return f"facts_{self.rows}"

    def bare_sql(self, catalog: str) -> str:
        def table(kind: str) -> str:
            return qualified(catalog, self.tenant, f"{kind}_{self.rows}")

        return f"INSERT INTO {table('bare')} SELECT * FROM {table('src')} WHERE _mozart_date = DATE '{DAY}'"


def _load_days(table: str, count: int) -> list[dt.date]:
    """``count`` dates after DAY on which LoadIceberg runs no snapshot expiry (comparable rounds)."""
    days, day = [], DAY
    while len(days) < count:
        day += dt.timedelta(days=1)
        if not maintenance_due(table, day):
            days.append(day)
    return days


def bench_load(settings: Settings, tenant: str, sizes: list[int], repeat: int, fork: bool) -> dict[str, Any]:
    warehouse = TrinoWarehouse.from_settings(settings, tenant=tenant)
    started_load = _load_average()
    runs = [
        _set_up_size(settings, warehouse, _Size(rows, tenant, _load_days(f"facts_{rows}", repeat + 1), fork))
        for rows in sorted(sizes)
    ]
    timings: dict[int, dict[str, list[float]]] = {s.rows: {"LoadIceberg": [], "bare": [], "copy": []} for s in runs}
    for n in range(repeat):
        for size in runs if n % 2 == 0 else runs[::-1]:
            sides = [
                ("LoadIceberg", lambda s=size, d=n + 1: _ours(settings, s, s.days[d])),
                ("bare", lambda s=size: _bare(warehouse, settings, s)),
                ("copy", lambda s=size: _copy_only(settings, s)),
            ]
            for name, side in sides if n % 2 == 0 else sides[::-1]:
                timings[size.rows][name].append(side())
        print(
            f"round {n + 1}/{repeat}: "
            + ", ".join(
                f"{rows:,}: {t['LoadIceberg'][-1]:.2f} s vs {t['bare'][-1]:.2f} s" for rows, t in timings.items()
            ),
            file=sys.stderr,
        )
    results: dict[str, Any] = {
        "mode": "load",
        "commit": _commit(),
        "repeat": repeat,
        "LoadIceberg_forked": fork,
        "load_average": [started_load, _load_average()],
        "sizes": [_size_result(s, timings[s.rows]) for s in runs],
    }
    if len(runs) > 1:
        results["flatness"] = _flatness(runs, timings)
    return results


def _set_up_size(settings: Settings, warehouse: TrinoWarehouse, size: _Size) -> _Size:
    """The extracts (``src`` on DAY, ``facts`` on a warm-up date + one per round), ``src`` loaded, the
    ``facts`` table created by a warm-up LoadIceberg, ``bare`` created LIKE ``src`` and warmed up."""
    rows, tenant = size.rows, size.tenant
    slices = [(tenant, f"src_{rows}", DAY), (tenant, size.facts, size.days[0])]
    started = time.perf_counter()
    manifests = write_extracts(settings, slices, rows)
    print(f"{rows:,} rows: {len(slices)} extracts written in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    lake = Lake.from_settings(settings)
    marker = Marker("LoadIceberg", f"bench-src-{rows}", tenant, DAY, table=f"src_{rows}", rows=rows)
    warehouse.load_day(DayLoad(manifests[0], lake, marker))
    _ours(settings, size, size.days[0])  # creates facts: the rounds' extracts are prestaged into it
    _write_round_days(settings, size)
    src, bare = (qualified(settings.trino_catalog, tenant, f"{k}_{rows}") for k in ("src", "bare"))
    warehouse.query(f"CREATE TABLE {bare} (LIKE {src}) WITH (partitioning = ARRAY['_mozart_date'])")
    _bare(warehouse, settings, size)
    return size


def _write_round_days(settings: Settings, size: _Size) -> None:
    """Each round's day written as ``ExtractTable`` writes it on the stack (prestaged), timed; side by side, in
    alternating order, as many control days written without the prestage (never loaded): the prestage's
    cost on the extract side, where it runs on a thread while the next part is written."""
    for n, day in enumerate(size.days[1:]):
        control = day + dt.timedelta(days=4000)
        for prestaged in (True, False) if n % 2 == 0 else (False, True):
            started = time.perf_counter()
            slices = [(size.tenant, size.facts, day if prestaged else control)]
            (manifest,) = write_extracts(settings, slices, size.rows, prestage=prestaged)
            size.writes["prestaged" if prestaged else "plain"].append(time.perf_counter() - started)
            if prestaged and size.manifest is None:
                size.manifest = manifest
    print(
        f"{size.rows:,} rows: extract writes {[_r(v) for v in size.writes['prestaged']]} s prestaged, "
        f"{[_r(v) for v in size.writes['plain']]} s plain",
        file=sys.stderr,
    )


def _ours(settings: Settings, size: _Size, day: dt.date) -> float:
    """(a): LoadIceberg through luigi.build, as a user runs it (``size.fork``: in a forked child, as Luigi's
    ``TaskProcess`` runs a task when workers > 1: no client of this process is reused); the date is checked."""
    clear_marker_cache()
    luigi.task_register.Register.clear_instance_cache()
    task = LoadIceberg(tenant=size.tenant, table=size.facts, date=day)
    started = time.perf_counter()
    succeeded = _in_child(lambda: _build(task)) if size.fork else _build(task)
    seconds = time.perf_counter() - started
    if not succeeded:
        raise SystemExit(f"LoadIceberg {size.facts} {day} failed (see the log above)")
    with TrinoWarehouse.from_settings(settings, tenant=size.tenant) as warehouse:
        found = warehouse.count_partition(size.tenant, size.facts, day)
    if found != size.rows:
        raise SystemExit(f"LoadIceberg {size.facts} {day}: {found} rows, expected {size.rows}")
    return seconds


def _copy_only(settings: Settings, size: _Size) -> float:
    """(c) the storage server's share of a load: a bare server-side copy of the same day's parts into the
    table's location, on 8 threads as the load makes them (deleted afterwards, untimed)."""
    lake = Lake.from_settings(settings)
    m = size.manifest
    assert m is not None  # noqa: S101
    found = IcebergLoader(settings).table(size.tenant, size.facts)
    assert found is not None  # noqa: S101
    folder = lake.date_url(m.tenant, m.table, m.date)
    scratch = f"{found.location().rstrip('/')}/_bench_copy/{uuid.uuid4().hex}"
    pairs = [(f"{folder}/{p.name}", f"{scratch}/{p.name}", p.etag or "") for p in m.files]
    started = time.perf_counter()
    with ThreadPoolExecutor(max(1, min(8, len(pairs)))) as pool:
        list(pool.map(lambda pair: lake.objects.copy_if_match(*pair), pairs))
    seconds = time.perf_counter() - started
    for _, target, _ in pairs:
        lake.objects.delete(target)
    return seconds


def _build(task: LoadIceberg) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = luigi.build([task], local_scheduler=True, detailed_summary=True)
    for name in ("luigi", "luigi-interface", "mozart_luigi"):  # the first build configured logging (luigi.cfg)
        logging.getLogger(name).setLevel(logging.WARNING)
    if not result.scheduling_succeeded:
        print(result.summary_text, file=sys.stderr)
    return result.scheduling_succeeded


def _in_child(fn: Callable[[], bool]) -> bool:
    """``fn()`` in a forked child; True when it returned True."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if fn() else 1
        except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
            traceback.print_exc()
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _bare(warehouse: TrinoWarehouse, settings: Settings, size: _Size) -> float:
    """(b): the bare Iceberg-to-Iceberg INSERT ... SELECT of the same rows (no checks, no marker)."""
    started = time.perf_counter()
    inserted = warehouse.query(size.bare_sql(settings.trino_catalog))
    seconds = time.perf_counter() - started
    if inserted[0][0] != size.rows:
        raise SystemExit(f"bare INSERT {size.rows}: inserted {inserted}")
    return seconds


def _size_result(size: _Size, timings: dict[str, list[float]]) -> dict[str, Any]:
    ours, bare, copy = timings["LoadIceberg"], timings["bare"], timings["copy"]
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    assert size.manifest is not None  # noqa: S101
    return {
        "rows": size.rows,
        "parts": len(size.manifest.files),
        "bytes": sum(f.bytes for f in size.manifest.files),
        "seconds_median": {"LoadIceberg": _r(statistics.median(ours)), "bare": _r(statistics.median(bare))},
        "seconds_min": {"LoadIceberg": _r(min(ours)), "bare": _r(min(bare))},
        "all_seconds": {"LoadIceberg": [_r(v) for v in ours], "bare": [_r(v) for v in bare]},
        "ratio_per_round": [_r(v, 3) for v in ratios],
        "ratio_median": _r(statistics.median(ratios), 3),
        "ratio_quartiles": _quartiles(ratios),
        "ratio_of_medians": _r(statistics.median(ours) / statistics.median(bare), 3),
        "bare_copy_seconds_median": _r(statistics.median(copy)),
        # the copy moved into the extract: its writes of the same day with and without the prestage
        "extract_write_seconds_median": {k: _r(statistics.median(v)) for k, v in size.writes.items() if v},
        "LoadIceberg_minus_copy_median": _r(statistics.median([o - c for o, c in zip(ours, copy, strict=True)])),
    }


def _flatness(runs: list[_Size], timings: dict[int, dict[str, list[float]]]) -> dict[str, Any]:
    """LoadIceberg median per size, and largest/smallest (of the medians, and per round: sizes alternate
    within a round, so a round's ratio cancels the box's drift)."""
    small, large = timings[runs[0].rows]["LoadIceberg"], timings[runs[-1].rows]["LoadIceberg"]
    per_round = [b / a for a, b in zip(small, large, strict=True)]
    return {
        "LoadIceberg_median_by_rows": {s.rows: _r(statistics.median(timings[s.rows]["LoadIceberg"])) for s in runs},
        "largest_over_smallest_of_medians": _r(statistics.median(large) / statistics.median(small), 3),
        "largest_over_smallest_per_round": [_r(v, 3) for v in per_round],
        "largest_over_smallest_median_of_rounds": _r(statistics.median(per_round), 3),
        # what is left when the storage server's byte copy (timed alone, same parts, same round) is taken out
        "without_the_copy_largest_over_smallest": _r(
            _without_copy(timings[runs[-1].rows]) / _without_copy(timings[runs[0].rows]), 3
        ),
    }


def _without_copy(timing: dict[str, list[float]]) -> float:
    return max(0.001, statistics.median([o - c for o, c in zip(timing["LoadIceberg"], timing["copy"], strict=True)]))


def _r(value: float, digits: int = 2) -> float:
    return round(value, digits)


def _quartiles(values: list[float]) -> list[float]:
    return [_r(q, 3) for q in statistics.quantiles(values, n=4)] if len(values) > 1 else []


# --------------------------------------------------------------------------------- throughput mode
@dataclass(frozen=True)
class _Job:
    tenant: str
    table: str
    date: dt.date
    task_id: str


class _RetryCounter(logging.Handler):
    """Counts ``mozart_luigi.retry``'s "failed (attempt" warnings by cause."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.causes: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "failed (attempt" in message:
            self.causes[_cause(message)] += 1


def _cause(message: str) -> str:
    if "commit conflict" in message:
        return "Iceberg commit conflict"
    detail = message.split("s: ", 1)[-1]
    return detail[:100]


def _load_one(settings: Settings, job: _Job) -> float:
    """One load as ``LoadIceberg.run`` does it: manifest, ``load_day`` (commit, then the marker)."""
    started = time.perf_counter()
    lake = Lake.from_settings(settings)
    manifest = lake.read_manifest(job.tenant, job.table, job.date)
    marker = Marker(
        "LoadIceberg",
        job.task_id,
        job.tenant,
        job.date,
        table=job.table,
        rows=manifest.row_count,
        details={"run_id": manifest.run_id},
    )
    with open_warehouse(settings, tenant=job.tenant) as warehouse:
        warehouse.load_day(DayLoad(manifest, lake, marker))
    return time.perf_counter() - started


def _outcome(settings: Settings, job: _Job, counter: _RetryCounter) -> tuple[str, Any, Any]:
    try:
        return "done", job, _load_one(settings, job)
    except Exception as exc:  # noqa: BLE001 - reported and counted as a failed load by the parent
        return "error", job, f"{type(exc).__name__}: {exc}"[:300]


def _forked(settings: Settings, job: _Job, counter: _RetryCounter) -> tuple[str, Any, Any]:
    """The load in a forked child, as Luigi's ``TaskProcess`` runs a task; its retries are added here."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, report (outcome, retries) through the pipe, exit without clean-up
        os.close(read)
        counter.causes.clear()
        kind, _, value = _outcome(settings, job, counter)
        os.write(write, json.dumps([kind, value, dict(counter.causes)]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        return "error", job, "the forked load died without reporting"
    kind, value, causes = json.loads(data)
    counter.causes.update(causes)
    return kind, job, value


def _worker(jobs: Any, results: Any, go: Any, fork: bool) -> None:
    """A worker process: signal ready, wait for ``go``, load jobs until the sentinel, report retries."""
    counter = _RetryCounter()
    logging.getLogger("mozart_luigi.retry").addHandler(counter)
    logging.getLogger("mozart_luigi.retry").propagate = False
    settings = get_config().settings
    with TrinoWarehouse.from_settings(settings) as warehouse:  # as a Luigi worker's completeness checks do
        warehouse.completed_rows("LoadIceberg", [("bench_tp_0", TP_DAY)])
    results.put(("ready", None, 0.0))
    go.wait()
    cpu = _own_cpu()
    while (job := jobs.get()) is not None:
        results.put((_forked if fork else _outcome)(settings, job, counter))
    results.put(("retries", dict(counter.causes), _own_cpu() - cpu))


def bench_throughput(settings: Settings, tenants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """``--days`` runs of ``--loads`` loads: the first creates every table (a first load), later days load
    tables that exist (the daily steady state)."""
    tables = [f"t{i:03d}" for i in range(_per_tenant(args.loads, len(tenants)))]
    kind = "threads" if args.threads else "processes, a forked child per load" if args.fork else "processes"
    result: dict[str, Any] = {
        "mode": "throughput",
        "commit": _commit(),
        "loads_per_day": args.loads,
        "workers": args.workers,
        "kind": kind,
        "rows_per_load": args.tp_rows,
        "days": [],
    }
    for n in range(args.days):
        day = TP_DAY + dt.timedelta(days=n)
        jobs = [_Job(t, tb, day, LoadIceberg(tenant=t, table=tb, date=day).task_id) for t in tenants for tb in tables]
        result["days"].append(_throughput_day(settings, jobs, tenants, tables, args))
        print(json.dumps(result["days"][-1]), file=sys.stderr)  # kept even if a later day fails
    return result


def _throughput_day(
    settings: Settings, jobs: list[_Job], tenants: list[str], tables: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    started = time.perf_counter()
    _write_small_extracts(settings, jobs, args.tp_rows)
    print(f"{jobs[0].date}: {len(jobs)} extracts written in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    load_before, cpu_before = _load_average(), _service_cpu(args.stack_dir)
    run = _run_threads(settings, jobs, args.workers) if args.threads else _run_processes(jobs, args.workers, args.fork)
    result: dict[str, Any] = {
        "date": jobs[0].date.isoformat(),
        "loads": len(jobs),
        "load_average": [load_before, _load_average()],
        **run,
    }
    result["cpu_per_load"] = _cpu_per_load(cpu_before, _service_cpu(args.stack_dir), run)
    result["complete"] = _time_complete(jobs)
    result["check"] = _check_throughput(settings, jobs, tenants, tables, args.tp_rows)
    return result


def _write_small_extracts(settings: Settings, jobs: list[_Job], rows: int) -> None:
    batch = bench_chunk(0, rows)
    lake = Lake.from_settings(settings)
    now = dt.datetime.now(dt.UTC)

    def write(job: _Job) -> None:
        run_id = new_run_id()
        writer = PartWriter(
            lake,
            lake.date_url(job.tenant, job.table, job.date),
            run_id,
            SCHEMA,
            date=job.date,
            extracted_at=now,
            compression=settings.compression,
        )
        writer.write(batch)
        lake.write_manifest(
            Manifest(
                tenant=job.tenant,
                table=job.table,
                date=job.date,
                mode="full",
                row_count=rows,
                source_count=rows,
                files=writer.close(),
                schema=SCHEMA,
                extracted_at=now,
                run_id=run_id,
            )
        )

    write(jobs[0])  # creates the clients before the threads share them
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, jobs[1:]))


def _run_processes(jobs: list[_Job], workers: int, fork: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    job_queue, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    for job in jobs:
        job_queue.put(job)
    for _ in range(workers):
        job_queue.put(None)
    procs = [ctx.Process(target=_worker, args=(job_queue, results, go, fork), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()
    _await_ready(results, procs)
    started = time.perf_counter()
    go.set()
    collected = _collect(results, len(jobs), workers, started)
    for proc in procs:
        proc.join(timeout=60)
    return collected


def _await_ready(results: Any, procs: list[Any]) -> None:
    """Every worker imported and configured; a worker that died meanwhile stops the benchmark."""
    ready = 0
    while ready < len(procs):
        try:
            ready += results.get(timeout=5)[0] == "ready"
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise SystemExit("a worker process failed to start (see its traceback above)") from None


def _run_threads(settings: Settings, jobs: list[_Job], workers: int) -> dict[str, Any]:
    counter = _RetryCounter()
    logging.getLogger("mozart_luigi.retry").addHandler(counter)
    logging.getLogger("mozart_luigi.retry").propagate = False
    results: Any = queue.Queue()
    started, cpu = time.perf_counter(), _own_cpu()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: results.put(_outcome(settings, job, counter)), jobs))
    results.put(("retries", dict(counter.causes), _own_cpu() - cpu))
    return _collect(results, len(jobs), 1, started)


def _collect(results: Any, loads: int, workers: int, started: float) -> dict[str, Any]:
    """Gather every load's outcome and every worker's retry counts; the clock stops at the last load."""
    latencies: list[float] = []
    errors: list[str] = []
    retries: Counter[str] = Counter()
    finished, reports, worker_cpu = started, 0, 0.0
    while len(latencies) + len(errors) < loads or reports < workers:
        kind, payload, value = results.get(timeout=900)
        if kind == "done":
            latencies.append(value)
            finished = time.perf_counter()
        elif kind == "error":
            errors.append(f"{payload.tenant}.{payload.table}: {value}")
        else:
            retries.update(payload)
            worker_cpu += value
            reports += 1
        if kind != "retries" and (len(latencies) + len(errors)) % 250 == 0:
            print(f"{len(latencies) + len(errors)}/{loads} loads", file=sys.stderr)
    seconds = finished - started
    return {
        "seconds": _r(seconds),
        "loads_ok": len(latencies),
        "loads_failed": len(errors),
        "loads_per_second": _r(len(latencies) / seconds),
        "errors": errors[:10],
        "latency_s": {
            "median": _r(statistics.median(latencies)),
            "p90": _r(_p90(latencies)),
            "max": _r(max(latencies)),
        },
        "retries": sum(retries.values()),
        "retries_by_cause": dict(retries),
        "retry_rate": _r(sum(retries.values()) / loads, 4),
        "worker_cpu_s": _r(worker_cpu),
    }


def _own_cpu() -> float:
    """CPU seconds of this process and of its reaped children (the forked loads)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


_SERVICES = ("s3", "iceberg-rest")


def _service_cpu(stack_dir: str) -> dict[str, float]:
    """CPU seconds used so far by each local stack service whose pid file ``scripts/stack`` wrote."""
    found: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in _SERVICES:
        try:
            pid = int((Path(stack_dir) / name / "pid").read_text().split()[0])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        found[name] = (int(fields[11]) + int(fields[12])) / tick
    return found


def _cpu_per_load(before: dict[str, float], after: dict[str, float], run: dict[str, Any]) -> dict[str, Any]:
    """CPU milliseconds per load, by who spent it, and the loads/s this machine's cores could sustain if CPU
    were the only limit: a figure that other jobs on a shared box do not distort the way wall time is."""
    loads = max(1, run["loads_ok"])
    per = {"workers": 1000 * run["worker_cpu_s"] / loads}
    per |= {name: 1000 * (after[name] - before[name]) / loads for name in after if name in before}
    total = sum(per.values())
    cores = os.cpu_count() or 1
    return {
        "ms": {k: _r(v) for k, v in per.items()},
        "total_ms": _r(total),
        "cores": cores,
        "cpu_bound_loads_per_s": _r(1000 * cores / total) if total else None,
    }


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def _time_complete(jobs: list[_Job]) -> dict[str, float]:
    """complete() of every task from a cold cache: prefetch + exists(), and exists() alone (one listing)."""
    tasks = [LoadIceberg(tenant=j.tenant, table=j.table, date=j.date) for j in jobs]
    clear_marker_cache()
    pairs = {(t.tenant, t.date) for t in tasks}
    prefetched = _timed(lambda: (prefetch_markers("LoadIceberg", pairs), _all_exist(tasks)))
    clear_marker_cache()
    alone = _timed(lambda: _all_exist(tasks))
    return {
        f"prefetch_markers + exists() x{len(tasks)}, s": _r(prefetched, 3),
        f"exists() x{len(tasks)} (cold cache), s": _r(alone, 3),
    }


def _all_exist(tasks: list[LoadIceberg]) -> bool:
    missing = [t.task_id for t in tasks if not t.output().exists()]
    if missing:
        raise SystemExit(f"{len(missing)} task(s) reported incomplete, e.g. {missing[:3]}")
    return True


def _check_throughput(
    settings: Settings, jobs: list[_Job], tenants: list[str], tables: list[str], rows: int
) -> dict[str, Any]:
    """Nothing lost or duplicated: every marker exactly once, every table's date holds exactly its rows."""
    day = jobs[0].date
    expected = {(j.task_id, j.tenant, day) for j in jobs}
    with TrinoWarehouse.from_settings(settings) as warehouse:
        found = warehouse.completed_rows("LoadIceberg", {(t, day) for t in tenants})
        keys = [i.key for i in Lake.from_settings(settings).objects.list(f"{settings.markers_root}/{day}/")]
        counts = {t: _partition_counts(warehouse, settings, t, tables, day) for t in tenants}
    wrong = [f"{t}.{tb}: {n}" for t, by in counts.items() for tb, n in by.items() if n != rows]
    return {
        "markers_missing": len(expected - found),
        "markers_unexpected": len(found - expected),
        "marker_objects": len(keys),
        "marker_objects_duplicated": len(keys) - len(set(keys)),
        "tables_checked": sum(len(by) for by in counts.values()),
        "tables_with_wrong_count": len(wrong),
        "wrong_counts": wrong[:10],
        "ok": not (expected ^ found) and len(keys) == len(set(keys)) == len(jobs) and not wrong,
    }


def _partition_counts(
    warehouse: TrinoWarehouse, settings: Settings, tenant: str, tables: list[str], day: dt.date
) -> dict[str, int]:
    """The date's row count of each table of a tenant, in one UNION ALL query (0 when a table is missing)."""
    listed = {
        r[0]
        for r in warehouse.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [tenant])
    }
    present = [t for t in tables if t in listed]
    counts = dict.fromkeys(tables, 0)
    if not present:
        return counts
    union = " UNION ALL ".join(
        f"SELECT '{t}', count(*) FROM {qualified(settings.trino_catalog, tenant, t)} WHERE _mozart_date = DATE '{day}'"
        for t in present
    )
    counts.update({name: int(n) for name, n in warehouse.query(union)})
    return counts


if __name__ == "__main__":
    sys.exit(main())
