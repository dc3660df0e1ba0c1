"""Extract benchmark (issue #3): our ExtractTable next to pandas, dlt, connectorx and the limit.

Needs the stack (``eval "$(scripts/stack env)"``). Builds ``bench_extract_<rows>`` (8 mixed-type columns,
NULLs in four of them) server-side in the ``mozart_test`` databases of PostgreSQL and MariaDB, once (kept for
later runs; ``--rebuild`` recreates it), then runs every contender once, each in a fresh child process:

* ``limit``: PostgreSQL ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` into /dev/null (psql); MariaDB
  ``mariadb --quick --batch`` into /dev/null;
* ``ours``: ``ExtractTable`` through ``luigi.build`` (snapshot + count, native reader, zstd Parquet parts on a
  local ``file://`` lake, manifest last); ``ours-rows``: the same with ``native: false`` (the SQLAlchemy row
  path); ``ours-read``: the snapshot and native reader without Parquet;
* ``pandas``: ``pandas.read_sql`` + ``DataFrame.to_parquet``;
* ``dlt-pyarrow`` / ``dlt-connectorx``: dlt ``sql_table`` with that backend to a local filesystem
  destination (Parquet);
* ``connectorx``: ``connectorx.read_sql(return_type="arrow")`` alone (whole table in memory, no Parquet).

Rows/s use the time the child reports for the extraction (its imports are done before the clock starts);
the CLI limits are timed as whole processes. Peak MB is the child's ``ru_maxrss`` from ``os.wait4``. Ratios
are rows/s against the fastest dlt backend of the same database, in both modes.
The 1-minute load average before each contender is shown: the machine is shared. ``--memcheck`` runs
``ours`` on 1M- and 5M-row tables.

``--mode incremental`` extracts one day, ``updated_at`` in ``[2024-01-01, 2024-01-02)`` UTC (about a third
of a 500k-row table; no index on the cursor: each contender scans the table), as ``ExtractTable`` with
``mode: incremental`` does; ``limit``, ``pandas`` and ``connectorx`` run the same ``WHERE``, dlt its own incremental
loading (``dlt.sources.incremental`` on the cursor with ``initial_value`` and ``end_value``: the same day).

``--parallel 1,2,4`` runs only ``ours`` on the full table, read in 1, 2 and 4 streams of one snapshot
(tables.yaml ``parallel: N``, ``parallel_min_rows: 0``, ``max_connections: N + 1``; 1: no ``parallel``),
``--repeat`` times each (default 3), the stream counts interleaved; it reports the median of each and its
speed-up over one stream.

Usage: ``.venv/bin/python benchmarks/extract.py [--rows 2000000] [--dialect pg|mysql|both]
[--mode full|incremental] [--only ours,dlt-connectorx,...] [--memcheck] [--parallel 1,2,4 [--repeat 3]]
[--json out.json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Measured, ensure_table, run_measured, stack_urls  # noqa: E402

CONTENDERS = ("limit", "ours", "ours-rows", "ours-read", "pandas", "dlt-pyarrow", "dlt-connectorx", "connectorx")
INCREMENTAL = CONTENDERS  # dlt: its own incremental loading (dlt.sources.incremental) over the same day
DATE = "2026-11-25"
WINDOW_DATE = "2024-01-01"  # the incremental day: the bench table's updated_at starts there (common.py)
CURSOR = "updated_at"
PARALLEL_PREFIX = "ours-p"  # ours-p1, ours-p2, ...: ours with tables.yaml parallel: N (--parallel)


# ------------------------------------------------------------------------------------- child processes
def _worker(name: str, dialect: str, table: str, tmp: str) -> dict[str, float]:
    import importlib

    url = stack_urls()[dialect]  # the contenders read MOZART_BENCH_MODE (full | incremental)
    name = "ours" if name.startswith(PARALLEL_PREFIX) else name  # ours-pN: ours, config with parallel: N
    for module in WARM[name]:  # imports are not what we measure
        importlib.import_module(module)
    started = time.monotonic()
    rows = WORKERS[name](url, dialect, table, Path(tmp))
    return {"rows": rows, "seconds": time.monotonic() - started}


def _ours(url, dialect: str, table: str, tmp: Path) -> int:
    import warnings

    import luigi

    from mozart_luigi.config import get_config
    from mozart_luigi.lake import Lake
    from mozart_luigi.tasks.extract import ExtractTable

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok = luigi.build(
            [ExtractTable(tenant="bench", table=table, date=_date())], local_scheduler=True, log_level="WARNING"
        )
    if not ok:
        raise SystemExit("ExtractTable failed")
    manifest = Lake.from_settings(get_config().settings).read_manifest("bench", table, _date())
    print(f"reader={manifest.details.get('reader')}", file=sys.stderr)
    return manifest.row_count


def _ours_read(url, dialect: str, table: str, tmp: Path) -> int:
    from mozart_luigi.config import get_config
    from mozart_luigi.connectors import Window, connector_for

    config = get_config()
    connector = connector_for(config.tenant("bench"))
    window = Window.for_date(_date()) if _incremental() else None
    with connector.snapshot(config.table("bench", table), window) as snap:
        count = snap.count()
        rows = sum(b.num_rows for b in snap.batches(config.settings.batch_rows))
        print(f"reader={snap.reader.name}", file=sys.stderr)
    assert rows == count
    return rows


def _select(table: str, dialect: str) -> str:
    """The contenders' query: the whole table, or the incremental day (UTC) on the cursor column."""
    if not _incremental():
        return f"SELECT * FROM {table}"
    start, end = _date().isoformat(), (_date() + dt.timedelta(days=1)).isoformat()
    zone = "+00" if dialect == "pg" else ""  # MariaDB: the session is set to +00:00 (see _utc_session)
    return f"SELECT * FROM {table} WHERE {CURSOR} >= '{start} 00:00:00{zone}' AND {CURSOR} < '{end} 00:00:00{zone}'"


def _utc_session(dialect: str) -> list[str]:
    return ["SET time_zone = '+00:00'"] if dialect == "mysql" else []


def _pandas(url, dialect: str, table: str, tmp: Path) -> int:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        for statement in _utc_session(dialect):
            conn.exec_driver_sql(statement)
        frame = pd.read_sql(sa.text(_select(table, dialect)), conn)
    frame.to_parquet(tmp / "pandas.parquet")
    return len(frame)


def _dlt(backend: str):
    def run(url, dialect: str, table: str, tmp: Path) -> int:
        import dlt
        from dlt.sources.sql_database import sql_table

        os.environ["DESTINATION__FILESYSTEM__BUCKET_URL"] = (tmp / "dlt").as_uri()
        os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
        kwargs: dict = {"backend_kwargs": {"conn": _plain(url)}} if backend == "connectorx" else {}
        if _incremental():
            kwargs["incremental"] = _dlt_window(dialect)
        credentials = url.render_as_string(hide_password=False)
        source = sql_table(
            credentials=credentials,
            table=table,
            backend=backend,
            chunk_size=50_000,
            type_adapter_callback=_plain_floats,
            **kwargs,
        )
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{backend}",
            destination="filesystem",
            dataset_name="bench",
            pipelines_dir=str(tmp / "pipelines"),
        )
        pipeline.run(source, loader_file_format="parquet")
        return int(pipeline.last_trace.last_normalize_info.row_counts[table])

    return run


def _dlt_window(dialect: str):
    """dlt's own incremental loading over the bench day: ``CURSOR`` in ``[initial_value, end_value)`` (dlt's
    default closed start, open end), bound as SQLAlchemy values; MariaDB's ``TIMESTAMP`` reflects as naive
    datetimes (the server's time zone is UTC), PostgreSQL's ``timestamptz`` as aware ones."""
    import dlt

    start = dt.datetime.combine(_date(), dt.time(), tzinfo=dt.UTC if dialect == "pg" else None)
    return dlt.sources.incremental(CURSOR, initial_value=start, end_value=start + dt.timedelta(days=1))


def _plain_floats(sql_type):
    """MySQL ``DOUBLE`` reflects as ``asdecimal=True``: the rows then hold Decimals that dlt's double
    column refuses; read doubles as floats (what the column is)."""
    import sqlalchemy as sa

    return sa.Float(asdecimal=False) if isinstance(sql_type, sa.Float) else sql_type


def _connectorx(url, dialect: str, table: str, tmp: Path) -> int:
    import connectorx

    session = {"pre_execution_queries": _utc_session(dialect)} if _utc_session(dialect) else {}
    return connectorx.read_sql(_plain(url), _select(table, dialect), return_type="arrow", **session).num_rows


def _plain(url) -> str:
    """The URL connectorx understands: ``postgresql://`` / ``mysql://`` (no SQLAlchemy driver suffix)."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)


def _incremental() -> bool:
    return os.environ.get("MOZART_BENCH_MODE") == "incremental"


def _date() -> dt.date:
    return dt.date.fromisoformat(WINDOW_DATE if _incremental() else DATE)


WORKERS = {
    "ours": _ours,
    "ours-rows": _ours,
    "ours-read": _ours_read,
    "pandas": _pandas,
    "dlt-pyarrow": _dlt("pyarrow"),
    "dlt-connectorx": _dlt("connectorx"),
    "connectorx": _connectorx,
}
_OURS = (
    "luigi",
    "mozart_luigi.tasks.extract",
    "mozart_luigi.connectors.native",
    "adbc_driver_postgresql.dbapi",
    "connectorx",
    "pyarrow.parquet",
    "psycopg2",
    "pymysql",
)
_DLT = ("dlt", "dlt.sources.sql_database", "pyarrow.parquet", "connectorx", "psycopg2", "pymysql")
WARM = {
    "ours": _OURS,
    "ours-rows": _OURS,
    "ours-read": _OURS,
    "pandas": ("pandas", "pyarrow.parquet", "psycopg2", "pymysql"),
    "dlt-pyarrow": _DLT,
    "dlt-connectorx": _DLT,
    "connectorx": ("connectorx", "pyarrow"),
}


# ------------------------------------------------------------------------------------------ the parent
def _config_env(name: str, dialect: str, table: str, tmp: Path, mode: str) -> dict[str, str]:
    """A config dir for ``ours``: one tenant on the test database, the bench table, a local file lake."""
    config = tmp / "config"
    config.mkdir(exist_ok=True)
    kind, var = ("postgresql", "MOZART_TEST_PG") if dialect == "pg" else ("mysql", "MOZART_TEST_MYSQL")
    native = "false" if name == "ours-rows" else "true"
    source = f"{{kind: {kind}, url: '${{{var}_URL}}', native: {native}}}"  # the URL (a secret) stays in the env
    streams = int(name[len(PARALLEL_PREFIX) :]) if name.startswith(PARALLEL_PREFIX) else 1
    (config / "tenants.yaml").write_text(
        f"tenants:\n  bench:\n    source: {source}\n    max_connections: {max(2, streams + 1)}\n"
    )
    spec = f"{{mode: incremental, cursor: {CURSOR}}}" if mode == "incremental" else "{mode: full}"
    if streams > 1:
        spec = f"{{mode: full, primary_key: id, parallel: {streams}, parallel_min_rows: 0}}"
    (config / "tables.yaml").write_text(f"tables:\n  {table}: {spec}\n")
    return {
        **os.environ,
        "MOZART_CONFIG_DIR": str(config),
        "MOZART_DATA_DIR": str(tmp / "data"),
        "MOZART_LAKE_URL": (tmp / "lake").as_uri(),
        "MOZART_BENCH_MODE": mode,
    }


def _limit(dialect: str, table: str, rows: int, tmp: Path) -> Measured:
    url = stack_urls()[dialect]
    sql = ";".join([*_utc_session(dialect), _select(table, dialect)])
    if dialect == "pg":
        argv = [
            "psql",
            "-X",
            "-q",
            "-h",
            url.host,
            "-p",
            str(url.port),
            "-U",
            url.username,
            "-d",
            url.database,
            "-o",
            "/dev/null",
            "-c",
            f"COPY ({sql}) TO STDOUT (FORMAT binary)",
        ]
        env = {**os.environ, "PGPASSWORD": url.password or ""}
    else:
        secrets = tmp / "my.cnf"
        secrets.write_text(f"[client]\npassword={url.password}\n")
        secrets.chmod(0o600)
        argv = [
            "sh",
            "-c",
            'exec mariadb --defaults-extra-file="$0" -h "$1" -P "$2" -u "$3" --quick --batch -e "$4" "$5" > /dev/null',
            str(secrets),
            url.host,
            str(url.port),
            url.username,
            sql,
            url.database,
        ]
        env = dict(os.environ)
    return run_measured("limit", dialect, rows, argv, env=env, json_report=False)


def _contender(name: str, dialect: str, table: str, rows: int, mode: str = "full") -> Measured:
    with tempfile.TemporaryDirectory(prefix="mozart-bench-") as tmp:
        env = _config_env(name, dialect, table, Path(tmp), mode)
        if name == "limit":
            os.environ["MOZART_BENCH_MODE"] = mode  # the parent renders the limit's SQL
            return _limit(dialect, table, rows, Path(tmp))
        argv = [sys.executable, __file__, "--worker", name, "--dialect", dialect, "--table", table, "--tmp", tmp]
        return run_measured(name, dialect, rows, argv, env=env)


def _window_rows(dialect: str, table: str) -> int:
    """Rows the incremental day holds (the CLI limit reports none itself)."""
    import sqlalchemy as sa

    engine = sa.create_engine(stack_urls()[dialect])
    try:
        with engine.connect() as conn:
            for statement in _utc_session(dialect):
                conn.exec_driver_sql(statement)
            return int(
                conn.exec_driver_sql(_select(table, dialect).replace("SELECT *", "SELECT count(*)", 1)).scalar_one()
            )
    finally:
        engine.dispose()


def _report(results: list[Measured]) -> str:
    lines = [
        "| db | contender | rows | seconds | rows/s | peak MB | vs fastest dlt | client CPU s | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dialect in ("pg", "mysql"):
        mine = [r for r in results if r.dialect == dialect]
        base = [r.rows_per_s for r in mine if not r.error and r.name.startswith("dlt")]
        best = max(base) if base else 0.0
        for r in mine:
            if r.error:
                failed = f"failed: {r.error[:80]}"
                lines.append(f"| {dialect} | {r.name} | - | - | - | - | {failed} | - | {r.load:.1f} |")
                continue
            ratio = f"{r.rows_per_s / best:.2f}x" if best else "-"
            lines.append(
                f"| {dialect} | {r.name} | {r.rows:,} | {r.seconds:.2f} | {r.rows_per_s:,.0f} | "
                f"{r.peak_mb:,.0f} | {ratio} | {r.cpu_s:.1f} | {r.load:.1f} |"
            )
    return "\n".join(lines)


def _memcheck(dialects: list[str]) -> str:
    lines = ["| db | ours at 1M rows: peak MB | at 5M rows: peak MB | growth |", "|---|---:|---:|---:|"]
    for dialect in dialects:
        peaks = []
        for rows in (1_000_000, 5_000_000):
            table = ensure_table(stack_urls()[dialect], dialect, rows)
            result = _contender("ours", dialect, table, rows)
            print(f"memcheck {dialect} {rows:,}: {result}", file=sys.stderr)
            peaks.append(result.peak_mb)
        lines.append(f"| {dialect} | {peaks[0]:,.0f} | {peaks[1]:,.0f} | {peaks[1] / peaks[0] - 1:+.1%} |")
    return "\n".join(lines)


def _parallel(dialects: list[str], rows: int, streams: list[int], repeat: int, rebuild: bool) -> tuple[str, list]:
    """``ours`` in each number of streams, ``repeat`` rounds interleaved; medians and speed-up over one."""
    results: list[Measured] = []
    lines = [
        "| db | streams | rows | median s | rows/s | vs 1 stream | runs (s) | peak MB | client CPU s | load |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for dialect in dialects:
        table = ensure_table(stack_urls()[dialect], dialect, rows, rebuild=rebuild)
        runs: dict[int, list[Measured]] = {n: [] for n in streams}
        for _round in range(repeat):
            for n in streams:
                result = _contender(f"{PARALLEL_PREFIX}{n}", dialect, table, rows)
                print(f"{dialect} {n} stream(s): {result}", file=sys.stderr)
                runs[n].append(result)
                results.append(result)
        base = None
        for n in streams:
            good = sorted((r for r in runs[n] if not r.error), key=lambda r: r.seconds)
            if not good:
                lines.append(f"| {dialect} | {n} | - | failed: {runs[n][0].error[:80]} | | | | | | |")
                continue
            mid = good[len(good) // 2]
            base = base or (mid.seconds if n == streams[0] else None)
            speedup = f"{base / mid.seconds:.2f}x" if base else "-"
            each = ", ".join(f"{r.seconds:.2f}" for r in runs[n] if not r.error)
            lines.append(
                f"| {dialect} | {n} | {mid.rows:,} | {mid.seconds:.2f} | {mid.rows / mid.seconds:,.0f} | {speedup} | "
                f"{each} | {max(r.peak_mb for r in good):,.0f} | {mid.cpu_s:.1f} | {mid.load:.1f} |"
            )
    return "\n".join(lines), results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dialect", choices=("pg", "mysql", "both"), default="both")
    parser.add_argument(
        "--mode",
        choices=("full", "incremental"),
        default="full",
        help=f"incremental: the day {WINDOW_DATE} on {CURSOR} (dlt: its own incremental loading)",
    )
    parser.add_argument("--only", help="comma-separated contenders (default: all of the mode's)")
    parser.add_argument("--memcheck", action="store_true", help="ours at 1M vs 5M rows (peak RSS)")
    parser.add_argument("--rebuild", action="store_true", help="recreate the bench tables")
    parser.add_argument("--parallel", help="ours only, in these numbers of streams (e.g. 1,2,4)")
    parser.add_argument("--repeat", type=int, default=3, help="--parallel: runs of each (median reported)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.dialect, args.table, args.tmp)))
        return 0
    dialects = ["pg", "mysql"] if args.dialect == "both" else [args.dialect]
    if args.parallel:
        streams = [int(n) for n in args.parallel.split(",") if n]
        table_md, measured = _parallel(dialects, args.rows, streams, max(1, args.repeat), args.rebuild)
        print(table_md)
        if args.json:
            args.json.write_text(json.dumps({"results": [asdict(r) for r in measured]}, indent=2))
        return 0
    allowed = INCREMENTAL if args.mode == "incremental" else CONTENDERS
    names = [n for n in (args.only or ",".join(allowed)).split(",") if n]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        parser.error(f"unknown contender(s) {unknown} in {args.mode} mode; choose from {', '.join(allowed)}")
    os.environ["MOZART_BENCH_MODE"] = args.mode
    results = []
    for dialect in dialects:
        table = ensure_table(stack_urls()[dialect], dialect, args.rows, rebuild=args.rebuild)
        rows = _window_rows(dialect, table) if args.mode == "incremental" else args.rows
        for name in names:
            result = _contender(name, dialect, table, rows, args.mode)
            print(f"{dialect} {name}: {result}", file=sys.stderr)
            results.append(result)
    print(_report(results))
    memcheck = _memcheck(dialects) if args.memcheck else ""
    print(memcheck)
    if args.json:
        body = {"results": [asdict(r) for r in results], "memcheck": memcheck}
        args.json.write_text(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
