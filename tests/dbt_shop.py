"""A tiny, deterministic shop in the raw-table layout LoadIceberg produces, and the marts it must give.

Used by the dbt tests on DuckDB (tests/contract/test_dbt_duckdb.py) and Trino
(tests/integration/test_dbt_trino.py). Three `_mozart_date` partitions:

- customers, products (mode full): a complete snapshot per day; on the last day a customer changes e-mail
  and a product its price (customer 6 never orders, product 4 never sells);
- orders, order_items (mode incremental): each day's changed rows; order 1 is placed, then shipped, then
  delivered (a row updated on later days), order 2 is cancelled on day 3, item 4 changes quantity on day 2,
  order 9 has no lines.

`expected_marts` computes the marts in plain Python from the same rows, independently of the dbt models.
"""

from __future__ import annotations

import datetime as dt
import shutil
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import luigi
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

__all__ = [
    "DAYS",
    "MART_KEYS",
    "TABLES",
    "KeysSnapshot",
    "ShopData",
    "build",
    "create_duckdb_keys",
    "create_duckdb_raw",
    "expected_marts",
    "keys_snapshots",
    "luigi_events",
    "mark_loads_done",
    "shop",
    "trino_raw_statements",
    "write_config",
]

DAYS = (dt.date(2026, 11, 26), dt.date(2026, 11, 27), dt.date(2026, 11, 28))
UTC = dt.UTC

# table -> ordered (column, DuckDB type, Trino type)
TABLES: dict[str, list[tuple[str, str, str]]] = {
    "customers": [
        ("customer_id", "INTEGER", "integer"),
        ("email", "VARCHAR", "varchar"),
        ("full_name", "VARCHAR", "varchar"),
        ("country", "VARCHAR", "varchar"),
        ("created_at", "TIMESTAMP", "timestamp(6)"),
        ("updated_at", "TIMESTAMP", "timestamp(6)"),
    ],
    "products": [
        ("product_id", "INTEGER", "integer"),
        ("sku", "VARCHAR", "varchar"),
        ("name", "VARCHAR", "varchar"),
        ("category", "VARCHAR", "varchar"),
        ("unit_price", "DECIMAL(12,2)", "decimal(12,2)"),
        ("updated_at", "TIMESTAMP", "timestamp(6)"),
    ],
    "orders": [
        ("order_id", "INTEGER", "integer"),
        ("customer_id", "INTEGER", "integer"),
        ("status", "VARCHAR", "varchar"),
        ("ordered_at", "TIMESTAMP", "timestamp(6)"),
        ("updated_at", "TIMESTAMP", "timestamp(6)"),
    ],
    "order_items": [
        ("order_item_id", "INTEGER", "integer"),
        ("order_id", "INTEGER", "integer"),
        ("product_id", "INTEGER", "integer"),
        ("quantity", "INTEGER", "integer"),
        ("unit_price", "DECIMAL(12,2)", "decimal(12,2)"),
        ("updated_at", "TIMESTAMP", "timestamp(6)"),
    ],
}
META_COLUMNS = [
    ("_mozart_date", "DATE", "date"),
    ("_mozart_extracted_at", "TIMESTAMPTZ", "timestamp(6) with time zone"),
]
MART_KEYS = {
    "daily_revenue": "order_date",
    "customer_lifetime_value": "customer_id",
    "product_performance": "product_id",
}


@dataclass(frozen=True)
class ShopData:
    """Raw rows per table; each row is a dict with the source columns plus the two _mozart columns."""

    tables: dict[str, list[dict[str, Any]]]

    def columns(self, table: str) -> list[str]:
        return [c for c, _, _ in TABLES[table] + META_COLUMNS]

    def tuples(self, table: str) -> list[tuple[Any, ...]]:
        cols = self.columns(table)
        return [tuple(row[c] for c in cols) for row in self.tables[table]]


def _at(day: int, hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAYS[day], dt.time(hh, mm, ss, us))


def _meta(day: int) -> dict[str, Any]:
    extracted = dt.datetime.combine(DAYS[day] + dt.timedelta(days=1), dt.time(1, 0, 0, 250), UTC)
    return {"_mozart_date": DAYS[day], "_mozart_extracted_at": extracted}


def _customers(variant: int) -> list[dict[str, Any]]:
    rows = []
    for day, ids in enumerate(((1, 2, 3, 4, 5), (1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 5, 6))):
        for i in ids:
            changed = day == 2 and i == 2
            rows.append(
                {
                    "customer_id": i,
                    "email": f"c{i}{'-new' if changed else ''}@v{variant}.example",
                    "full_name": f"Customer {i}",
                    "country": ("US", "DE", "FR")[i % 3],
                    "created_at": dt.datetime(2026, 1, i, 12, 0, 0, 123456),
                    "updated_at": _at(2, 9) if changed else dt.datetime(2026, 1, i, 12, 0, 0, 123456),
                    **_meta(day),
                }
            )
    return rows


def _price(product_id: int, variant: int, day: int) -> Decimal:
    base = Decimal("9.99") + Decimal(product_id * 5) + Decimal(variant)
    return base + Decimal("1.50") if (day == 2 and product_id == 3) else base


def _products(variant: int) -> list[dict[str, Any]]:
    rows = []
    for day in range(3):
        for i in (1, 2, 3, 4):
            rows.append(
                {
                    "product_id": i,
                    "sku": f"P-{i:04d}",
                    "name": f"Product {i}",
                    "category": ("tools", "toys")[i % 2],
                    "unit_price": _price(i, variant, day),
                    "updated_at": _at(2, 6) if (day == 2 and i == 3) else dt.datetime(2026, 1, 1),
                    **_meta(day),
                }
            )
    return rows


# (partition day, order_id, customer_id, status, ordered_at, updated_at)
_ORDERS = [
    (0, 1, 1, "placed", _at(0, 9, 0, 0, 123456), _at(0, 9, 0, 0, 123456)),
    (0, 2, 2, "placed", _at(0, 10), _at(0, 10)),
    (0, 3, 3, "placed", _at(0, 11), _at(0, 11)),
    (0, 4, 1, "placed", _at(0, 23, 59, 59, 999999), _at(0, 23, 59, 59, 999999)),
    (1, 1, 1, "shipped", _at(0, 9, 0, 0, 123456), _at(1, 8)),
    (1, 5, 4, "placed", _at(1, 12), _at(1, 12)),
    (1, 6, 5, "placed", _at(1, 13), _at(1, 13)),
    (1, 7, 2, "placed", _at(1, 14), _at(1, 14)),
    (2, 1, 1, "delivered", _at(0, 9, 0, 0, 123456), _at(2, 7)),
    (2, 2, 2, "cancelled", _at(0, 10), _at(2, 8)),
    (2, 8, 3, "placed", _at(2, 15), _at(2, 15)),
    (2, 9, 5, "placed", _at(2, 16), _at(2, 16)),
]
# (partition day, order_item_id, order_id, product_id, quantity, price day)
_ITEMS = [
    (0, 1, 1, 1, 2, 0),
    (0, 2, 1, 2, 1, 0),
    (0, 3, 2, 3, 1, 0),
    (0, 4, 3, 1, 3, 0),
    (0, 5, 4, 2, 1, 0),
    (1, 4, 3, 1, 4, 0),
    (1, 6, 5, 3, 2, 1),
    (1, 7, 6, 1, 1, 1),
    (1, 8, 7, 2, 5, 1),
    (2, 9, 8, 3, 1, 2),
]


def shop(variant: int = 0, *, bad_status: bool = False) -> ShopData:
    """The shop for one tenant; ``variant`` shifts prices and e-mails, ``bad_status`` breaks a dbt test."""
    orders = [
        {"order_id": oid, "customer_id": cid, "status": status, "ordered_at": ordered, "updated_at": upd, **_meta(day)}
        for day, oid, cid, status, ordered, upd in _ORDERS
    ]
    if bad_status:
        orders[-1]["status"] = "returned"
    items = []
    for day, iid, oid, pid, qty, price_day in _ITEMS:
        ordered_at = next(o["ordered_at"] for o in orders if o["order_id"] == oid)
        updated = ordered_at if day == 0 or iid != 4 else _at(1, 10)
        items.append(
            {
                "order_item_id": iid,
                "order_id": oid,
                "product_id": pid,
                "quantity": qty,
                "unit_price": _price(pid, variant, price_day),
                "updated_at": updated,
                **_meta(day),
            }
        )
    return ShopData(
        {"customers": _customers(variant), "products": _products(variant), "orders": orders, "order_items": items}
    )


# ------------------------------------------------------------------------------- independent computation


def _snapshot(rows: list[dict[str, Any]], run_date: dt.date, key: str) -> dict[int, dict[str, Any]]:
    return {r[key]: r for r in rows if r["_mozart_date"] == run_date}


def _latest(rows: list[dict[str, Any]], run_date: dt.date, key: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    order = lambda r: (r["updated_at"], r["_mozart_date"], r["_mozart_extracted_at"])  # noqa: E731
    for row in rows:
        if row["_mozart_date"] <= run_date and (row[key] not in out or order(row) > order(out[row[key]])):
            out[row[key]] = row
    return out


def current_state(data: ShopData, run_date: dt.date) -> dict[str, dict[int, dict[str, Any]]]:
    return {
        "customers": _snapshot(data.tables["customers"], run_date, "customer_id"),
        "products": _snapshot(data.tables["products"], run_date, "product_id"),
        "orders": _latest(data.tables["orders"], run_date, "order_id"),
        "order_items": _latest(data.tables["order_items"], run_date, "order_item_id"),
    }


# ------------------------------------------------------------------------------------ deletes: keys

KEYED = {"orders": "order_id", "order_items": "order_item_id"}  # the incremental tables, by primary key


@dataclass(frozen=True)
class KeysSnapshot:
    """The keys stream of one table for one run date: the source's keys, read at ``read_at``."""

    table: str
    date: dt.date
    read_at: dt.datetime
    keys: frozenset[int]


def keys_snapshots(
    data: ShopData, deleted: dict[str, set[int]], *, day: int = 2, unseen: dict[str, set[int]] | None = None
) -> list[KeysSnapshot]:
    """A keys snapshot per incremental table and date: every key seen up to the date; on ``DAYS[day]`` minus
    ``deleted`` (gone from the source) and minus ``unseen`` (inserted after the keys were read: the snapshot is
    read at 00:30, before that day's data at 01:00)."""
    out = []
    for table, key in KEYED.items():
        for n, date in enumerate(DAYS):
            seen = {r[key] for r in data.tables[table] if r["_mozart_date"] <= date}
            if n == day:
                seen -= deleted.get(table, set()) | (unseen or {}).get(table, set())
            read_at = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(0, 30), UTC)
            out.append(KeysSnapshot(table, date, read_at, frozenset(seen)))
    return out


def _drop_deleted(
    state: dict[str, dict[int, dict[str, Any]]], data: ShopData, run_date: dt.date, keys: list[KeysSnapshot]
) -> None:
    """Staging's rule, in Python: a key absent from the run date's keys snapshot is dropped unless a version
    of it was read after that snapshot."""
    for snap in keys:
        if snap.date != run_date:
            continue
        key = KEYED[snap.table]
        last_read: dict[int, dt.datetime] = {}
        for row in data.tables[snap.table]:
            if row["_mozart_date"] <= run_date:
                last_read[row[key]] = max(
                    last_read.get(row[key], row["_mozart_extracted_at"]), row["_mozart_extracted_at"]
                )
        state[snap.table] = {
            k: r for k, r in state[snap.table].items() if k in snap.keys or last_read[k] > snap.read_at
        }


def create_duckdb_keys(path: Path, tenant: str, keys: list[KeysSnapshot]) -> None:
    """The keys streams ``{tenant}.{table}__keys`` as LoadIceberg's DuckDB warehouse lays them out."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        for table in sorted({k.table for k in keys}):
            key = KEYED[table]
            con.execute(
                f"CREATE OR REPLACE TABLE {tenant}.{table}__keys ({key} INTEGER, _mozart_date DATE, "
                "_mozart_extracted_at TIMESTAMPTZ)"
            )
            rows = [(k, snap.date, snap.read_at) for snap in keys if snap.table == table for k in sorted(snap.keys)]
            if rows:
                con.executemany(f"INSERT INTO {tenant}.{table}__keys VALUES (?, ?, ?)", rows)


def expected_marts(
    data: ShopData, run_date: dt.date, keys: list[KeysSnapshot] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """The three marts, rows sorted by key, computed in plain Python (``keys``: with ``deletes: keys``)."""
    state = current_state(data, run_date)
    if keys is not None:
        _drop_deleted(state, data, run_date, keys)
    orders = state["orders"]
    amount: dict[int, Decimal] = defaultdict(Decimal)
    units: dict[int, int] = defaultdict(int)
    for item in state["order_items"].values():
        if item["order_id"] in orders:
            amount[item["order_id"]] += item["quantity"] * item["unit_price"]
            units[item["order_id"]] += item["quantity"]
    live = {oid: o for oid, o in orders.items() if o["status"] != "cancelled"}
    return {
        "daily_revenue": _daily_revenue(orders, live, amount, units),
        "customer_lifetime_value": _clv(state["customers"], live, amount),
        "product_performance": _products_perf(state, live),
    }


def _daily_revenue(orders, live, amount, units) -> list[tuple[Any, ...]]:
    days = sorted({o["ordered_at"].date() for o in orders.values()})
    out = []
    for day in days:
        on_day = [oid for oid, o in live.items() if o["ordered_at"].date() == day]
        cancelled = sum(1 for o in orders.values() if o["ordered_at"].date() == day and o["status"] == "cancelled")
        customers = {live[oid]["customer_id"] for oid in on_day}
        out.append(
            (
                day,
                len(on_day),
                cancelled,
                len(customers),
                sum(units[o] for o in on_day),
                sum((amount[o] for o in on_day), Decimal("0.00")),
            )
        )
    return out


def _clv(customers, live, amount) -> list[tuple[Any, ...]]:
    out = []
    for cid in sorted(customers):
        c = customers[cid]
        mine = [oid for oid, o in live.items() if o["customer_id"] == cid]
        dates = sorted(live[oid]["ordered_at"].date() for oid in mine)
        first, last = (dates[0], dates[-1]) if dates else (None, None)
        out.append(
            (
                cid,
                c["email"],
                c["full_name"],
                c["country"],
                len(mine),
                sum((amount[o] for o in mine), Decimal("0.00")),
                first,
                last,
                (last - first).days if dates else None,
            )
        )
    return out


def _products_perf(state, live) -> list[tuple[Any, ...]]:
    out = []
    for pid in sorted(state["products"]):
        p = state["products"][pid]
        lines = [i for i in state["order_items"].values() if i["product_id"] == pid and i["order_id"] in live]
        dates = sorted(live[i["order_id"]]["ordered_at"].date() for i in lines)
        out.append(
            (
                pid,
                p["sku"],
                p["name"],
                p["category"],
                p["unit_price"],
                sum(i["quantity"] for i in lines),
                sum((i["quantity"] * i["unit_price"] for i in lines), Decimal("0.00")),
                len({i["order_id"] for i in lines}),
                dates[0] if dates else None,
                dates[-1] if dates else None,
            )
        )
    return out


# ---------------------------------------------------------------------------------------- writing it


def create_duckdb_raw(path: Path, tenant: str, data: ShopData) -> None:
    """The raw tables of ``tenant`` in the DuckDB file, laid out as LoadIceberg's DuckDB warehouse does."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {tenant}")
        for table, cols in TABLES.items():
            defs = ", ".join(f"{c} {t}" for c, t, _ in cols + META_COLUMNS)
            con.execute(f"CREATE OR REPLACE TABLE {tenant}.{table} ({defs})")
            marks = ", ".join("?" for _ in cols + META_COLUMNS)
            con.executemany(f"INSERT INTO {tenant}.{table} VALUES ({marks})", data.tuples(table))


def trino_raw_statements(catalog: str, tenant: str, data: ShopData) -> list[tuple[str, list[Any]]]:
    """(SQL, bound values) creating the raw Iceberg tables of ``tenant``, partitioned by _mozart_date."""
    out: list[tuple[str, list[Any]]] = [(f"CREATE SCHEMA IF NOT EXISTS {catalog}.{tenant}", [])]
    for table, cols in TABLES.items():
        defs = ", ".join(f"{c} {t}" for c, _, t in cols + META_COLUMNS)
        out.append(
            (f"CREATE TABLE {catalog}.{tenant}.{table} ({defs}) WITH (partitioning = ARRAY['_mozart_date'])", [])
        )
        rows = data.tuples(table)
        marks = "(" + ", ".join("?" for _ in cols + META_COLUMNS) + ")"
        out.append(
            (
                f"INSERT INTO {catalog}.{tenant}.{table} VALUES {', '.join(marks for _ in rows)}",
                [value for row in rows for value in row],
            )
        )
    return out


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tenants: list[str], *, profile: str) -> Path:
    """A config dir with the repo's tables.yaml and ``tenants`` (dummy SQLite sources), selected by env."""
    from mozart_luigi.config import reset_config_cache
    from mozart_luigi.targets import clear_marker_cache

    config_dir = tmp_path / "config"
    config_dir.mkdir(exist_ok=True)
    shutil.copy(REPO / "config" / "tables.yaml", config_dir / "tables.yaml")
    body = {t: {"source": {"kind": "sqlite", "path": str(tmp_path / f"{t}.sqlite")}} for t in tenants}
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump({"tenants": body}), encoding="utf-8")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOZART_PROFILE", profile)
    for name in ("MOZART_DUCKDB_PATH", "MOZART_REPORT_DIR"):
        monkeypatch.delenv(name, raising=False)
    if profile == "local":
        monkeypatch.delenv("MOZART_LAKE_URL", raising=False)
    reset_config_cache()
    clear_marker_cache()
    return config_dir


def mark_loads_done(tenant: str, date: dt.date) -> None:
    """Record LoadIceberg markers for the tenant's tables (their raw tables were written by the test)."""
    from mozart_luigi.config import get_config
    from mozart_luigi.tasks.load import LoadIceberg
    from mozart_luigi.warehouse import Marker, open_warehouse

    config = get_config()
    with open_warehouse(config.settings, tenant=tenant) as warehouse:
        for table in config.tables_for(tenant):
            task = LoadIceberg(tenant=tenant, table=table.name, date=date)
            warehouse.write_marker(
                Marker(
                    task_family="LoadIceberg",
                    task_id=task.task_id,
                    tenant=tenant,
                    date=date,
                    table=table.name,
                    rows=0,
                    details={"test": True},
                )
            )


def build(*tasks: luigi.Task, workers: int = 1) -> luigi.execution_summary.LuigiRunResult:
    """``luigi.build`` with the local scheduler (luigi warns about a luigi.cfg alias key; ignore that)."""
    luigi.task_register.Register.clear_instance_cache()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=luigi.parameter.UnconsumedParameterWarning)
        return luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, workers=workers)


@dataclass
class Events:
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)


@contextmanager
def luigi_events(task_class: type[luigi.Task]) -> Iterator[Events]:
    """Collect SUCCESS / FAILURE events of ``task_class`` (in-process: use workers=1)."""
    events = Events()

    def on_success(task: luigi.Task) -> None:
        events.succeeded.append(task.task_id)

    def on_failure(task: luigi.Task, exc: BaseException) -> None:
        events.failed[task.task_id] = exc

    callbacks = luigi.Task._event_callbacks.setdefault(task_class, {})
    callbacks.setdefault(luigi.Event.SUCCESS, set()).add(on_success)
    callbacks.setdefault(luigi.Event.FAILURE, set()).add(on_failure)
    try:
        yield events
    finally:
        callbacks[luigi.Event.SUCCESS].discard(on_success)
        callbacks[luigi.Event.FAILURE].discard(on_failure)
