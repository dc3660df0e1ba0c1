"""The night benchmark's sources, generated server-side: the shop's four tables per tenant, small rows.

PostgreSQL tenants (``nt{run}_p...``) are schemas of the stack's ``mozart_test`` database (``generate_series``);
MariaDB tenants (``nt{run}_m...``) are databases of their own (the Sequence engine's ``seq_1_to_N``). Per
tenant: 20 customers and 8 products (updated the day before the first date), and on each of the ``dates``
12 orders with 2 lines each, every row's ``updated_at`` on its day, so each night's incremental extract
reads that day only. Statuses, keys and quantities satisfy the dbt project's data tests.
"""

from __future__ import annotations

__all__ = ["CUSTOMERS", "ORDERS_PER_DAY", "PRODUCTS", "build_sources", "drop_sources"]

import datetime as dt
from typing import Any

import sqlalchemy as sa

CUSTOMERS, PRODUCTS, ORDERS_PER_DAY = 20, 8, 12

_PG = """
CREATE SCHEMA {s};
CREATE TABLE {s}.customers (customer_id integer PRIMARY KEY, email varchar(255) NOT NULL,
  full_name varchar(200) NOT NULL, country char(2) NOT NULL, created_at timestamp(6) NOT NULL,
  updated_at timestamp(6) NOT NULL);
CREATE TABLE {s}.products (product_id integer PRIMARY KEY, sku varchar(32) NOT NULL UNIQUE,
  name varchar(200) NOT NULL, category varchar(64) NOT NULL, unit_price decimal(12, 2) NOT NULL,
  updated_at timestamp(6) NOT NULL);
CREATE TABLE {s}.orders (order_id integer PRIMARY KEY, customer_id integer NOT NULL, status varchar(16) NOT NULL,
  ordered_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL);
CREATE TABLE {s}.order_items (order_item_id integer PRIMARY KEY, order_id integer NOT NULL,
  product_id integer NOT NULL, quantity integer NOT NULL, unit_price decimal(12, 2) NOT NULL,
  updated_at timestamp(6) NOT NULL);
INSERT INTO {s}.customers SELECT i, 'c' || i || '@night.example', 'Customer ' || i,
  (ARRAY['US', 'DE', 'FR'])[1 + i % 3], timestamp '{before}' - i * interval '1 day',
  timestamp '{before}' + i * interval '1 minute' FROM generate_series(1, {customers}) i;
INSERT INTO {s}.products SELECT i, 'SKU-' || i, 'Product ' || i, (ARRAY['toys', 'garden'])[1 + i % 2],
  1.5 + i, timestamp '{before}' + i * interval '1 minute' FROM generate_series(1, {products}) i;
INSERT INTO {s}.orders SELECT i, 1 + i % {customers}, (ARRAY['placed', 'shipped', 'delivered', 'cancelled'])[1 + i % 4],
  timestamp '{first}' + ((i - 1) / {per_day}) * interval '1 day' + i * interval '1 minute',
  timestamp '{first}' + ((i - 1) / {per_day}) * interval '1 day' + i * interval '1 minute'
  FROM generate_series(1, {orders}) i;
INSERT INTO {s}.order_items SELECT j, (j + 1) / 2, 1 + j % {products}, 1 + j % 3, 1.5 + j % {products},
  timestamp '{first}' + (((j + 1) / 2 - 1) / {per_day}) * interval '1 day' + ((j + 1) / 2) * interval '1 minute'
  FROM generate_series(1, 2 * {orders}) j;
"""

_MY = """
CREATE DATABASE {s};
CREATE TABLE {s}.customers (customer_id INT PRIMARY KEY, email VARCHAR(255) NOT NULL,
  full_name VARCHAR(200) NOT NULL, country CHAR(2) NOT NULL, created_at DATETIME(6) NOT NULL,
  updated_at DATETIME(6) NOT NULL) ENGINE = InnoDB;
CREATE TABLE {s}.products (product_id INT PRIMARY KEY, sku VARCHAR(32) NOT NULL UNIQUE,
  name VARCHAR(200) NOT NULL, category VARCHAR(64) NOT NULL, unit_price DECIMAL(12, 2) NOT NULL,
  updated_at DATETIME(6) NOT NULL) ENGINE = InnoDB;
CREATE TABLE {s}.orders (order_id INT PRIMARY KEY, customer_id INT NOT NULL, status VARCHAR(16) NOT NULL,
  ordered_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL) ENGINE = InnoDB;
CREATE TABLE {s}.order_items (order_item_id INT PRIMARY KEY, order_id INT NOT NULL, product_id INT NOT NULL,
  quantity INT NOT NULL, unit_price DECIMAL(12, 2) NOT NULL, updated_at DATETIME(6) NOT NULL) ENGINE = InnoDB;
INSERT INTO {s}.customers SELECT seq, CONCAT('c', seq, '@night.example'), CONCAT('Customer ', seq),
  ELT(1 + seq % 3, 'US', 'DE', 'FR'), TIMESTAMP('{before}') - INTERVAL seq DAY,
  TIMESTAMP('{before}') + INTERVAL seq MINUTE FROM seq_1_to_{customers};
INSERT INTO {s}.products SELECT seq, CONCAT('SKU-', seq), CONCAT('Product ', seq), ELT(1 + seq % 2, 'toys', 'garden'),
  1.5 + seq, TIMESTAMP('{before}') + INTERVAL seq MINUTE FROM seq_1_to_{products};
INSERT INTO {s}.orders SELECT seq, 1 + seq % {customers},
  ELT(1 + seq % 4, 'placed', 'shipped', 'delivered', 'cancelled'),
  TIMESTAMP('{first}') + INTERVAL ((seq - 1) DIV {per_day}) DAY + INTERVAL seq MINUTE,
  TIMESTAMP('{first}') + INTERVAL ((seq - 1) DIV {per_day}) DAY + INTERVAL seq MINUTE FROM seq_1_to_{orders};
INSERT INTO {s}.order_items SELECT seq, (seq + 1) DIV 2, 1 + seq % {products}, 1 + seq % 3, 1.5 + seq % {products},
  TIMESTAMP('{first}') + INTERVAL (((seq + 1) DIV 2 - 1) DIV {per_day}) DAY + INTERVAL ((seq + 1) DIV 2) MINUTE
  FROM seq_1_to_{items};
"""


def _values(schema: str, dates: list[dt.date]) -> dict[str, Any]:
    orders = ORDERS_PER_DAY * len(dates)
    return {
        "s": schema,
        "first": dates[0].isoformat(),
        "before": (dates[0] - dt.timedelta(days=1)).isoformat(),
        "customers": CUSTOMERS,
        "products": PRODUCTS,
        "per_day": ORDERS_PER_DAY,
        "orders": orders,
        "items": 2 * orders,
    }


def _statements(template: str, values: dict[str, Any]) -> list[str]:
    return [s.strip() for s in template.format(**values).split(";") if s.strip()]


def build_sources(pg_url: sa.URL, my_url: sa.URL, tenants: list[str], dates: list[dt.date]) -> None:
    """Create every tenant's schema (PostgreSQL) or database (MariaDB) with its shop tables and rows.
    Tenant ids are generated (``[a-z0-9_]``), so they are safe as unquoted names."""
    for url, kind, template in ((pg_url, "_p", _PG), (my_url, "_m", _MY)):
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                cursor = conn.connection.cursor()  # the driver's own: no parameters, so `%` is plain SQL
                try:
                    for tenant in (t for t in tenants if kind in t):
                        for statement in _statements(template, _values(tenant, dates)):
                            cursor.execute(statement)
                finally:
                    cursor.close()
        finally:
            engine.dispose()


def drop_sources(pg_url: sa.URL, my_url: sa.URL, tenants: list[str]) -> None:
    for url, kind, drop in (
        (pg_url, "_p", "DROP SCHEMA IF EXISTS {} CASCADE"),
        (my_url, "_m", "DROP DATABASE IF EXISTS {}"),
    ):
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                for tenant in (t for t in tenants if kind in t):
                    conn.exec_driver_sql(drop.format(tenant))
        finally:
            engine.dispose()
