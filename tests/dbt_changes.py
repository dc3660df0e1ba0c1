"""A shop whose history grows day by day and whose raw partitions get replaced, for the incremental dbt tests.

`History` holds the raw partitions of the four shop tables (the layout LoadIceberg produces) and changes them
the way the pipeline does: a night adds the day's partition of every table (`full` tables: a whole snapshot;
`incremental` tables: the day's new and updated rows); a lookback refresh or a rerun REPLACES an earlier
partition with a later extract (late rows added, a row gone, `_mozart_extracted_at` later); a partition can
also be removed. It records which partitions changed, so a test writes only those (DuckDB: delete + insert of
the date; Trino: the same on Iceberg, so unchanged partitions keep their files).

`data()` gives a `dbt_shop.ShopData`, whose `expected_marts` is the independent computation of the marts.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from dbt_shop import META_COLUMNS, TABLES, ShopData

__all__ = ["START", "History", "write_duckdb", "trino_statements"]

START = dt.date(2026, 10, 1)
UTC = dt.UTC
NEVER_ORDERS = 99  # a customer present on some days only (a mart row that comes and goes)
NEVER_SOLD = 7  # a product present on some days only


class History:
    """Raw partitions by table and date; deterministic for a seed."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.parts: dict[str, dict[dt.date, list[dict[str, Any]]]] = {t: {} for t in TABLES}
        self.dirty: set[tuple[str, dt.date]] = set()
        self.days = 0
        self.next_order = 1
        self.next_item = 1
        self.extracts = 0
        self.emails: dict[int, int] = {}
        self.prices = {p: Decimal("5.00") + p for p in range(1, 8)}

    # ------------------------------------------------------------------------------------ reading
    def date(self, index: int) -> dt.date:
        return START + dt.timedelta(days=index)

    @property
    def last(self) -> dt.date:
        return self.date(self.days - 1)

    def data(self) -> ShopData:
        return ShopData({t: [r for d in sorted(parts) for r in parts[d]] for t, parts in self.parts.items()})

    def take_dirty(self) -> set[tuple[str, dt.date]]:
        out, self.dirty = self.dirty, set()
        return out

    # ------------------------------------------------------------------------------------ changes
    def night(self) -> dt.date:
        """The next day's partitions of every table."""
        day = self.date(self.days)
        self.days += 1
        meta = self._meta(day)
        self._set("customers", day, self._customers(day, meta))
        self._set("products", day, self._products(day, meta))
        orders, items = self._orders(day, meta)
        self._set("orders", day, orders)
        self._set("order_items", day, items)
        return day

    def reload(self, day: dt.date, *, late: int = 1, drop_update: bool = True) -> None:
        """A later extract of `day` for both incremental tables: ``late`` orders committed late into the day
        (with a line each), and (``drop_update``) one update version gone from the day (its earlier version
        becomes the latest again)."""
        meta = self._meta(day)
        orders = [{**r, **meta} for r in self.parts["orders"].get(day, [])]
        items = [{**r, **meta} for r in self.parts["order_items"].get(day, [])]
        if drop_update:
            updates = [r for r in orders if r["updated_at"] != r["ordered_at"]]
            if updates:
                orders.remove(self.rng.choice(updates))
            item_updates = [r for r in items if self._is_item_update(r)]
            if item_updates:
                items.remove(self.rng.choice(item_updates))
        for _ in range(late):
            order = self._new_order(day, meta, hour=23)
            orders.append(order)
            items.append(self._new_item(order, day, meta))
        self._set("orders", day, orders)
        self._set("order_items", day, items)

    def reload_snapshot(self, table: str, day: dt.date) -> None:
        """A later extract of a `full` table's snapshot of `day`, with one value changed."""
        meta = self._meta(day)
        rows = [{**r, **meta} for r in self.parts[table][day]]
        row = rows[0]
        if table == "customers":
            row["email"] = row["email"].replace("@", "+re@")
        else:
            row["unit_price"] = row["unit_price"] + Decimal("0.25")
        self._set(table, day, rows)

    def remove(self, table: str, day: dt.date) -> None:
        """The partition is gone (its rows were removed from the table)."""
        self.parts[table].pop(day)
        self.dirty.add((table, day))

    # ------------------------------------------------------------------------------------ rows
    def _set(self, table: str, day: dt.date, rows: list[dict[str, Any]]) -> None:
        self.parts[table][day] = rows
        self.dirty.add((table, day))

    def _meta(self, day: dt.date) -> dict[str, Any]:
        self.extracts += 1
        at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(1), UTC) + dt.timedelta(
            hours=self.extracts % 20, microseconds=self.extracts
        )
        return {"_mozart_date": day, "_mozart_extracted_at": at}

    def _at(self, day: dt.date, hour: int) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, self.rng.randrange(60), self.rng.randrange(60)))

    def _customers(self, day: dt.date, meta: dict[str, Any]) -> list[dict[str, Any]]:
        ids = list(range(1, min(4 + self.days // 2, 12) + 1))
        if self.days % 3:
            ids.append(NEVER_ORDERS)
        changed = self.rng.choice(ids)
        self.emails[changed] = self.emails.get(changed, 0) + 1
        return [
            {
                "customer_id": i,
                "email": f"c{i}.{self.emails.get(i, 0)}@example.com",
                "full_name": f"Customer {i}",
                "country": ("US", "DE", "FR")[i % 3],
                "created_at": dt.datetime(2026, 1, 1, 12),
                "updated_at": dt.datetime(2026, 1, 1, 12),
                **meta,
            }
            for i in ids
        ]

    def _products(self, day: dt.date, meta: dict[str, Any]) -> list[dict[str, Any]]:
        changed = self.rng.randrange(1, 7)
        self.prices[changed] += Decimal("0.50")
        ids = list(range(1, 7)) + ([NEVER_SOLD] if self.days % 2 else [])
        return [
            {
                "product_id": p,
                "sku": f"P-{p:04d}",
                "name": f"Product {p}",
                "category": ("tools", "toys")[p % 2],
                "unit_price": self.prices[p],
                "updated_at": dt.datetime(2026, 1, 1),
                **meta,
            }
            for p in ids
        ]

    def _latest(self, table: str, key: str) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for day in sorted(self.parts[table]):
            for row in self.parts[table][day]:
                if row[key] not in out or row["updated_at"] >= out[row[key]]["updated_at"]:
                    out[row[key]] = row
        return out

    def _new_order(self, day: dt.date, meta: dict[str, Any], hour: int | None = None) -> dict[str, Any]:
        at = self._at(day, self.rng.randrange(0, 22) if hour is None else hour)
        order = {
            "order_id": self.next_order,
            "customer_id": self.rng.randrange(1, 5),
            "status": "placed",
            "ordered_at": at,
            "updated_at": at,
            **meta,
        }
        self.next_order += 1
        return order

    def _new_item(self, order: dict[str, Any], day: dt.date, meta: dict[str, Any]) -> dict[str, Any]:
        product = self.rng.randrange(1, 7)
        item = {
            "order_item_id": self.next_item,
            "order_id": order["order_id"],
            "product_id": product,
            "quantity": self.rng.randrange(1, 4),
            "unit_price": self.prices[product],
            "updated_at": order["ordered_at"],
            **meta,
        }
        self.next_item += 1
        return item

    def _is_item_update(self, item: dict[str, Any]) -> bool:
        return item["updated_at"].date() != min(
            r["updated_at"].date()
            for d in self.parts["order_items"].values()
            for r in d
            if r["order_item_id"] == item["order_item_id"]
        )

    def _orders(self, day: dt.date, meta: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        latest = self._latest("orders", "order_id")
        orders: list[dict[str, Any]] = []
        for order_id in self.rng.sample(sorted(latest), min(2, len(latest))):
            status = self.rng.choice(["shipped", "delivered", "cancelled"])
            orders.append({**latest[order_id], "status": status, "updated_at": self._at(day, 23), **meta})
        new = [self._new_order(day, meta) for _ in range(3)]
        orders += new
        items = [self._new_item(order, day, meta) for order in new for _ in range(self.rng.randrange(1, 3))]
        lines = self._latest("order_items", "order_item_id")
        if lines:
            line = lines[self.rng.choice(sorted(lines))]
            items.append({**line, "quantity": line["quantity"] + 1, "updated_at": self._at(day, 23), **meta})
        return orders, items


# ------------------------------------------------------------------------------------------- writing


def _tuples(table: str, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    columns = [c for c, _, _ in TABLES[table] + META_COLUMNS]
    return [tuple(row[c] for c in columns) for row in rows]


def write_duckdb(path: Path, tenant: str, history: History, dirty: set[tuple[str, dt.date]]) -> None:
    """Replace the ``dirty`` partitions (delete the date, insert its rows), one transaction each."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {tenant}")
        for table, cols in TABLES.items():
            defs = ", ".join(f"{c} {t}" for c, t, _ in cols + META_COLUMNS)
            con.execute(f"CREATE TABLE IF NOT EXISTS {tenant}.{table} ({defs})")
        for table, day in sorted(dirty):
            con.execute("BEGIN")
            con.execute(f"DELETE FROM {tenant}.{table} WHERE _mozart_date = ?", [day])
            rows = _tuples(table, history.parts[table].get(day, []))
            if rows:
                marks = ", ".join("?" for _ in rows[0])
                con.executemany(f"INSERT INTO {tenant}.{table} VALUES ({marks})", rows)
            con.execute("COMMIT")


def trino_statements(
    catalog: str, tenant: str, history: History, dirty: set[tuple[str, dt.date]], *, create: bool
) -> list[tuple[str, list[Any]]]:
    """(SQL, bound values) replacing the ``dirty`` partitions on Iceberg (``create``: the tables first)."""
    out: list[tuple[str, list[Any]]] = []
    if create:
        out.append((f"CREATE SCHEMA IF NOT EXISTS {catalog}.{tenant}", []))
        for table, cols in TABLES.items():
            defs = ", ".join(f"{c} {t}" for c, _, t in cols + META_COLUMNS)
            out.append(
                (f"CREATE TABLE {catalog}.{tenant}.{table} ({defs}) WITH (partitioning = ARRAY['_mozart_date'])", [])
            )
    for table, day in sorted(dirty):
        out.append((f"DELETE FROM {catalog}.{tenant}.{table} WHERE _mozart_date = ?", [day]))
        rows = _tuples(table, history.parts[table].get(day, []))
        if rows:
            marks = "(" + ", ".join("?" for _ in rows[0]) + ")"
            out.append(
                (
                    f"INSERT INTO {catalog}.{tenant}.{table} VALUES {', '.join(marks for _ in rows)}",
                    [v for row in rows for v in row],
                )
            )
    return out
