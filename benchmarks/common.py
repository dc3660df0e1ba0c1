"""Shared benchmark helpers: stack URLs, bench tables built server-side, and a measured child process.

Every contender runs in a fresh child process; its peak RSS comes from ``os.wait4`` (the kernel's
``ru_maxrss`` of that one child), its rows/s from the time the child reports for the extraction itself
(imports and interpreter start-up excluded; for the CLI limits the whole process is timed).
"""

from __future__ import annotations

__all__ = [
    "BENCH_COLUMNS",
    "Measured",
    "bench_table",
    "ensure_table",
    "run_measured",
    "stack_urls",
]

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import sqlalchemy as sa

#: the bench table's columns (one per common type family); NULLs in label, qty and updated_at
BENCH_COLUMNS = ("id", "qty", "price", "score", "label", "created_at", "updated_at", "active")

_PG_DDL = """
CREATE TABLE {name} (
    id bigint PRIMARY KEY,
    qty integer,
    price numeric(12,2),
    score double precision,
    label varchar(64),
    created_at timestamp(6),
    updated_at timestamptz(6),
    active boolean
)"""

_PG_FILL = """
INSERT INTO {name}
SELECT g,
       CASE WHEN g % 101 = 0 THEN NULL ELSE (g * 7919) % 100000 END,
       ((g * 31) % 10000000) / 100.0,
       g / 7.0::float8,
       CASE WHEN g % 97 = 0 THEN NULL ELSE 'item-' || substr(md5(g::text), 1, 8 + (g % 24)::int) END,
       timestamp '2020-01-01' + g * interval '1.234567 second',
       CASE WHEN g % 89 = 0 THEN NULL
            ELSE timestamptz '2024-01-01 00:00:00+00' + g * interval '0.5 second' END,
       g % 3 = 0
FROM generate_series(1::bigint, CAST(:rows AS bigint)) AS g"""

_MYSQL_DDL = """
CREATE TABLE {name} (
    id BIGINT PRIMARY KEY,
    qty INT,
    price DECIMAL(12,2),
    score DOUBLE,
    label VARCHAR(64),
    created_at DATETIME(6),
    updated_at TIMESTAMP(6) NULL,
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
       IF(seq % 89 = 0, NULL, TIMESTAMP('2024-01-01') + INTERVAL seq * 500000 MICROSECOND),
       seq % 3 = 0
FROM seq_1_to_{rows}"""


@dataclass(frozen=True)
class Measured:
    """One contender's result. ``seconds`` is the extraction time; ``peak_mb`` the child's max RSS."""

    name: str
    dialect: str
    rows: int
    seconds: float
    peak_mb: float
    error: str | None = None
    load: float = 0.0  # 1-minute load average when it started (the machine is shared)
    cpu_s: float = 0.0  # the child's user + system CPU seconds (whole process, imports included)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def stack_urls() -> dict[str, sa.URL]:
    """The test databases of the running stack (``eval "$(scripts/stack env)"`` first)."""
    missing = [k for k in ("MOZART_TEST_PG_URL", "MOZART_TEST_MYSQL_URL") if not os.environ.get(k)]
    if missing:
        sys.exit(f'benchmarks: {", ".join(missing)} not set; run: eval "$(scripts/stack env)"')
    return {
        "pg": sa.make_url(os.environ["MOZART_TEST_PG_URL"]),
        "mysql": sa.make_url(os.environ["MOZART_TEST_MYSQL_URL"]),
    }


def bench_table(rows: int) -> str:
    return f"bench_extract_{rows}"


def ensure_table(url: sa.URL, dialect: str, rows: int, *, rebuild: bool = False) -> str:
    """Create and fill the bench table server-side unless it already holds ``rows`` rows."""
    name = bench_table(rows)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if not rebuild and _has_rows(conn, name, rows):
                return name
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
            ddl, fill = (_PG_DDL, _PG_FILL) if dialect == "pg" else (_MYSQL_DDL, _MYSQL_FILL)
            conn.execute(sa.text(ddl.format(name=name)))
            started = time.monotonic()
            if dialect == "pg":
                conn.execute(sa.text(fill.format(name=name)), {"rows": rows})
            else:  # the Sequence engine's table name carries the bound; rows is an int
                conn.execute(sa.text(fill.format(name=name, rows=int(rows))))
            print(f"built {dialect} {name} in {time.monotonic() - started:.1f}s", file=sys.stderr)
        if dialect == "pg":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f"VACUUM ANALYZE {name}"))
        return name
    finally:
        engine.dispose()


def _has_rows(conn: sa.Connection, name: str, rows: int) -> bool:
    if not sa.inspect(conn).has_table(name):
        return False
    return conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() == rows


def run_measured(
    name: str, dialect: str, rows: int, argv: list[str], *, env: dict[str, str] | None = None, json_report: bool = True
) -> Measured:
    """Run ``argv`` as a fresh child; peak RSS from ``wait4``, seconds from its last JSON line (or wall time).

    Output goes to temporary files (a CLI limit writes its rows to /dev/null itself), so the parent never
    buffers data, and ``os.wait4`` reaps exactly this child, giving its own ``ru_maxrss``.
    """
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out if json_report else subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    peak_mb = usage.ru_maxrss / 1024.0
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-3:]) or f"exit {proc.returncode}"
        return Measured(name, dialect, rows, wall, peak_mb, error=tail, load=load, cpu_s=cpu)
    if not json_report:
        return Measured(name, dialect, rows, wall, peak_mb, load=load, cpu_s=cpu)
    report = json.loads(stdout.strip().splitlines()[-1])
    seconds = float(report["seconds"])
    return Measured(name, dialect, int(report["rows"]), seconds, peak_mb, load=load, cpu_s=cpu)
