"""The embedded default: deterministic SQLite shops for the ``local`` tenants, then the whole pipeline.

``mozart demo`` (and ``make demo``):

1. writes ``{MOZART_DATA_DIR}/sources/{tenant}.sqlite`` for each SQLite tenant of the ``local`` profile
   (``demo_north``, ``demo_south``, ``demo_west``) — the shop schema of the stack's samples, with every
   ``updated_at`` on the four days ending at the demo date, sizes differing per tenant, a seeded RNG, so the
   same date always gives the same bytes of data. A source that already holds the right data is kept;
   a new file is written next to it and renamed into place. The demo only ever writes a path where no file
   is, or a file it generated itself (any version, tenant or date: it carries the ``mozart_demo_meta``
   table). Any other file there (a user's own SQLite database, a text file, a damaged file) is left
   untouched: the demo refuses with a :class:`~mozart_luigi.errors.ConfigError` naming the tenant and the
   file, before anything is written or run (``mozart demo`` exits 2);
2. runs ``AllTenants`` for those four days with the local scheduler (lake folder, DuckDB, dbt ``local``);
3. prints one line per tenant and day as they finish, the run report of the demo date and one compact mart
   table (each tenant's ``daily_revenue`` of the demo date).

The demo date is fixed (:data:`DEMO_DATE`, 2026-11-28, the day the stack samples end) so that the demo is
the same on every machine and every day; ``mozart demo --date`` or ``MOZART_DEMO_DATE`` picks another.
A second ``mozart demo`` finds every date complete (one warehouse query) and says so.
"""

from __future__ import annotations

__all__ = [
    "DEMO_DATE",
    "DEMO_DAYS",
    "DemoSize",
    "check_writable",
    "demo_dates",
    "generate_source",
    "run_demo",
    "source_is_current",
]

import datetime as dt
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mozart_luigi.config import Config, get_config, reset_config_cache
from mozart_luigi.errors import ConfigError, ConfigProblem, MozartError
from mozart_luigi.report import build_report, report_path, write_report
from mozart_luigi.runner import RunOutcome, run_tasks
from mozart_luigi.tasks.pipeline import AllTenants
from mozart_luigi.warehouse import open_warehouse
from mozart_luigi.warehouse.common import qualified

if TYPE_CHECKING:
    from _typeshed import SupportsWrite  # what print(file=...) needs: the terminal's line writer is one

DEMO_DATE = dt.date(2026, 11, 28)
DEMO_DAYS = 4
SCHEMA_VERSION = 1
_META_TABLE = "mozart_demo_meta"
_META_DDL = "CREATE TABLE mozart_demo_meta (version INTEGER, tenant TEXT, end_date TEXT)"
_META_INSERT = "INSERT INTO mozart_demo_meta VALUES (?, ?, ?)"
_MART_TABLE = "daily_revenue"
_MART_HEADER = ("orders", "cancelled", "customers", "units", "revenue")
_MART_COLUMNS = "order_count, cancelled_order_count, customer_count, units_sold, revenue"

_SCHEMA = """
CREATE TABLE customers (
  customer_id INTEGER PRIMARY KEY,
  email       VARCHAR(255) NOT NULL,
  full_name   VARCHAR(200) NOT NULL,
  country     CHAR(2) NOT NULL,
  created_at  TIMESTAMP NOT NULL,
  updated_at  TIMESTAMP NOT NULL
);
CREATE TABLE products (
  product_id  INTEGER PRIMARY KEY,
  sku         VARCHAR(32) NOT NULL UNIQUE,
  name        VARCHAR(200) NOT NULL,
  category    VARCHAR(64) NOT NULL,
  unit_price  NUMERIC(12, 2) NOT NULL,
  updated_at  TIMESTAMP NOT NULL
);
CREATE TABLE orders (
  order_id    INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
  status      VARCHAR(16) NOT NULL CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
  ordered_at  TIMESTAMP NOT NULL,
  updated_at  TIMESTAMP NOT NULL
);
CREATE TABLE order_items (
  order_item_id INTEGER PRIMARY KEY,
  order_id      INTEGER NOT NULL REFERENCES orders (order_id),
  product_id    INTEGER NOT NULL REFERENCES products (product_id),
  quantity      INTEGER NOT NULL CHECK (quantity > 0),
  unit_price    NUMERIC(12, 2) NOT NULL,
  updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX orders_updated_at ON orders (updated_at);
CREATE INDEX order_items_updated_at ON order_items (updated_at);
"""

_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "John")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Allen")
_COUNTRIES = ("DE", "FR", "NL", "SE", "ES", "IT", "US", "GB")
_CATEGORIES = {
    "books": (8, 60),
    "games": (15, 80),
    "kitchen": (5, 120),
    "garden": (10, 300),
    "audio": (20, 450),
}
_STATUSES = (("delivered", 55), ("shipped", 20), ("placed", 15), ("cancelled", 10))


@dataclass(frozen=True)
class DemoSize:
    customers: int
    products: int
    orders: int


SIZES = {
    "demo_north": DemoSize(customers=150, products=40, orders=600),
    "demo_south": DemoSize(customers=80, products=25, orders=300),
    "demo_west": DemoSize(customers=30, products=12, orders=90),
}
_DEFAULT_SIZE = DemoSize(customers=50, products=15, orders=150)


def demo_dates(end: dt.date = DEMO_DATE, days: int = DEMO_DAYS) -> list[dt.date]:
    """The ``days`` days ending at ``end``, oldest first."""
    return [end - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]


def size_of(tenant: str) -> DemoSize:
    return SIZES.get(tenant, _DEFAULT_SIZE)


def source_is_current(path: Path, tenant: str, end: dt.date) -> bool:
    """True when ``path`` holds the demo data this version generates for ``tenant`` and ``end``."""
    return _demo_meta(path) == (SCHEMA_VERSION, tenant, end.isoformat())


def check_writable(path: Path, tenant: str) -> None:
    """Raise :class:`ConfigError` unless the demo may (re)write ``path``: no file is there, or the file is one
    the demo generated (it has the ``mozart_demo_meta`` table, of any version, tenant or end date)."""
    why = _not_ours(path)
    if why is not None:
        raise ConfigError([refusal(path, tenant, why)])


def refusal(path: Path, tenant: str, why: str) -> ConfigProblem:
    """The problem that says the demo leaves ``path`` (tenant ``tenant``'s source) untouched, and why."""
    return ConfigProblem(
        "tenants.yaml",
        f"tenants.{tenant}.source.path",
        f"tenant '{tenant}': the demo did not generate '{path}' ({why}); the demo leaves it untouched and "
        "writes nothing: point the tenant's source.path at another file, or move that file away to let the "
        "demo write its shop there",
    )


def generate_source(path: Path, tenant: str, end: dt.date = DEMO_DATE) -> bool:
    """Write the demo shop of ``tenant`` to ``path`` unless it is already there. Returns True if written.

    Raises :class:`ConfigError` (nothing written) when another file than a demo source is at ``path``."""
    if source_is_current(path, tenant, end):
        return False
    check_writable(path, tenant)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a new file of its own next to the target (never a name some other file may have), renamed into place
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    tmp.chmod(0o644)  # mkstemp's 0600 would make the shop unreadable to others, unlike a file sqlite creates
    try:
        with _connect(tmp) as conn:
            conn.executescript(_SCHEMA)
            _fill(conn, tenant, end)
            conn.execute(_META_DDL)
            conn.execute(_META_INSERT, (SCHEMA_VERSION, tenant, end.isoformat()))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


_SQLITE_HEADER = b"SQLite format 3\x00"


def _not_ours(path: Path) -> str | None:
    """Why the file at ``path`` is not the demo's (None: no file there, or a demo source)."""
    if not os.path.lexists(path):
        return None
    if not path.is_file():
        return "not a regular file" if path.exists() else "a dangling symbolic link"
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if header != _SQLITE_HEADER:
        return "not a SQLite database" if header else "an empty file"
    if _demo_meta(path) is None:
        return f"a SQLite database without the demo's {_META_TABLE} table"
    return None


def _demo_meta(path: Path) -> tuple[object, ...] | None:
    """The demo's meta row of the SQLite file at ``path``, read-only; None when it has none (or is no file,
    or no SQLite database)."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(f"SELECT version, tenant, end_date FROM {_META_TABLE}").fetchone()  # noqa: S608
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return tuple(row) if row is not None else None


class _connect:
    """A ``sqlite3`` connection that commits and *closes* on exit (sqlite3's own one only commits)."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path)

    def __enter__(self) -> sqlite3.Connection:
        return self._conn

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self._conn.commit()
        self._conn.close()


# ------------------------------------------------------------------------------------------- the data


def _fill(conn: sqlite3.Connection, tenant: str, end: dt.date) -> None:
    rng = random.Random(f"mozart-demo:{tenant}:{end.isoformat()}")
    size = size_of(tenant)
    days = demo_dates(end)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", _customers(rng, tenant, size, days))
    products = list(_products(rng, size, days))
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)", products)
    prices = {p[0]: Decimal(p[4]) for p in products}
    orders, items = _orders(rng, size, days, prices)
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", orders)
    conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)", items)


def _moment(rng: random.Random, day: dt.date) -> dt.datetime:
    """A random instant of ``day`` with microseconds (stored as SQLAlchemy's SQLite text format)."""
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(microseconds=rng.randrange(86_400 * 10**6))


def _ts(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _customers(rng: random.Random, tenant: str, size: DemoSize, days: list[dt.date]) -> Iterator[tuple[Any, ...]]:
    for i in range(1, size.customers + 1):
        updated = _moment(rng, rng.choice(days))
        created = updated - dt.timedelta(days=rng.randrange(0, 900), seconds=rng.randrange(86_400))
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        yield (
            i,
            f"customer{i}@{tenant.replace('_', '-')}.example",
            name,
            rng.choice(_COUNTRIES),
            _ts(created),
            _ts(updated),
        )


def _products(rng: random.Random, size: DemoSize, days: list[dt.date]) -> Iterator[tuple[Any, ...]]:
    categories = sorted(_CATEGORIES)
    for i in range(1, size.products + 1):
        category = categories[i % len(categories)]
        low, high = _CATEGORIES[category]
        price = Decimal(rng.randrange(low * 100, high * 100)) / 100
        yield (
            i,
            f"SKU-{category[:3].upper()}-{i:04d}",
            f"{category.title()} item {i}",
            category,
            str(price),
            _ts(_moment(rng, rng.choice(days))),
        )


def _orders(
    rng: random.Random, size: DemoSize, days: list[dt.date], prices: dict[int, Decimal]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    statuses = [s for s, _ in _STATUSES]
    weights = [w for _, w in _STATUSES]
    orders: list[tuple[Any, ...]] = []
    items: list[tuple[Any, ...]] = []
    for order_id in range(1, size.orders + 1):
        updated = _moment(rng, rng.choice(days))
        ordered = updated - dt.timedelta(seconds=rng.randrange(0, 3 * 86_400))
        customer = rng.randrange(1, size.customers + 1)
        orders.append((order_id, customer, rng.choices(statuses, weights)[0], _ts(ordered), _ts(updated)))
        for product in rng.sample(sorted(prices), k=rng.randint(1, min(3, len(prices)))):
            items.append((len(items) + 1, order_id, product, rng.randint(1, 4), str(prices[product]), _ts(updated)))
    return orders, items


# ------------------------------------------------------------------------------------------- the run


def run_demo(
    end: dt.date | None = None,
    *,
    workers: int = 1,
    out: SupportsWrite[str] | None = None,
    outcomes: list[RunOutcome] | None = None,
) -> int:
    """Generate the sources, run the four demo days, print the report. Returns the exit code; the run's
    outcome is appended to ``outcomes`` when given (for the run record)."""
    out = out or sys.stdout
    started = time.monotonic()
    if os.environ.get("MOZART_PROFILE", "local") != "local":
        print(f"note: the demo runs the local profile (MOZART_PROFILE was {os.environ['MOZART_PROFILE']!r})", file=out)
    os.environ["MOZART_PROFILE"] = "local"
    reset_config_cache()
    config = get_config()
    end = end or _env_date() or DEMO_DATE
    _generate_all(config, end, out)
    code = _run_missing_days(config, demo_dates(end), workers, out, outcomes)
    report = build_report(config, end)
    print(report.to_text(), file=out)
    print(f"report: {report_path(config.settings, end)}", file=out)
    _print_marts(config, end, out)
    print(f"demo finished in {time.monotonic() - started:.1f} s (exit code {code})", file=out)
    return code


def _run_missing_days(
    config: Config,
    dates: list[dt.date],
    workers: int,
    out: SupportsWrite[str],
    outcomes: list[RunOutcome] | None = None,
) -> int:
    """``AllTenants`` for the days not complete yet (one bulk check); a report per day run."""
    span = f"{dates[0].isoformat()}..{dates[-1].isoformat()}"
    done = set(AllTenants.bulk_complete(dates))
    missing = [d for d in dates if d not in done]
    if not missing:
        print(f"Everything is already done for {span}: nothing to run.", file=out)
        return 0
    print(f"Running AllTenants for {len(missing)} day(s) of {span} (local scheduler)...", file=out)
    outcome = run_tasks([AllTenants(date=d) for d in missing], workers=workers, local_scheduler=True)
    if outcomes is not None:
        outcomes.append(outcome)
    _write_reports(config, missing, outcome)
    return outcome.exit_code


def _env_date() -> dt.date | None:
    raw = os.environ.get("MOZART_DEMO_DATE")
    return dt.date.fromisoformat(raw) if raw else None


def _generate_all(config: Config, end: dt.date, out: SupportsWrite[str]) -> None:
    """Write each SQLite tenant's demo source. Every path is checked first: when any holds a file the demo
    did not generate, nothing is written and a :class:`ConfigError` names every such tenant and file."""
    sources = [
        (tenant.id, Path(tenant.source.path).resolve())
        for tenant in config.tenants.values()
        if tenant.source.kind == "sqlite" and tenant.source.path
    ]
    refused = [refusal(path, tenant, why) for tenant, path in sources if (why := _not_ours(path)) is not None]
    if refused:
        raise ConfigError(refused)
    for tenant, path in sources:
        size = size_of(tenant)
        written = generate_source(path, tenant, end)
        state = "generated" if written else "up to date"
        print(
            f"source {tenant}: {state} ({size.customers} customers, {size.products} products, "
            f"{size.orders} orders) {path}",
            file=out,
        )


def _write_reports(config: Config, dates: list[dt.date], outcome: RunOutcome) -> None:
    for date in dates:
        report = build_report(config, date, failures=outcome.failures_for(date), run=outcome.as_dict())
        write_report(report, config.settings)


def _print_marts(config: Config, date: dt.date, out: SupportsWrite[str]) -> None:
    """One compact table: each tenant's ``{tenant}_mart.daily_revenue`` row of ``date`` (DuckDB, profile local)."""
    rows: list[tuple[str, ...]] = []
    with open_warehouse(config.settings) as warehouse:
        for tenant in config.tenants:
            table = qualified(f"{tenant}_mart", _MART_TABLE)
            select = f"SELECT {_MART_COLUMNS} FROM {table} WHERE order_date = ?"  # noqa: S608
            try:
                found = warehouse.query(select, [date])
            except MozartError:  # no mart yet (the tenant's dbt build failed)
                found = []
            values = found[0] if found else ("-",) * len(_MART_HEADER)
            rows.append((f"{tenant}_mart.{_MART_TABLE}", *(_cell(v) for v in values)))
    header = (f"mart preview, {date.isoformat()}", *_MART_HEADER)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("", file=out)
    for row in [header, *rows]:
        print(
            "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]),
            file=out,
        )


def _cell(value: object) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Decimal | float):
        return f"{value:,.2f}"
    return "-" if value is None else str(value)
