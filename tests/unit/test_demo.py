"""The demo source generator: deterministic, the stack samples' shop schema, data on the four demo days."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest

from mozart_luigi.demo import DEMO_DATE, SIZES, demo_dates, generate_source, source_is_current

pytestmark = pytest.mark.unit
TABLES = ("customers", "products", "orders", "order_items")


def _dump(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}


def _columns(path: Path, table: str) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return [(r[1], r[2]) for r in conn.execute(f"PRAGMA table_info({table})")]


def test_demo_dates_are_the_four_days_ending_at_the_demo_date() -> None:
    assert demo_dates() == [dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27), DEMO_DATE]


def test_generation_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    assert generate_source(a, "demo_north") is True
    assert generate_source(b, "demo_north") is True
    assert _dump(a) == _dump(b)
    mtime = a.stat().st_mtime_ns
    assert generate_source(a, "demo_north") is False  # already current: not rewritten
    assert a.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sqlite", "b.sqlite"]  # no temp files left


def test_tenants_differ_in_size_and_content(tmp_path: Path) -> None:
    counts = {}
    for tenant in SIZES:
        path = tmp_path / f"{tenant}.sqlite"
        generate_source(path, tenant)
        counts[tenant] = {t: len(rows) for t, rows in _dump(path).items()}
        assert counts[tenant]["customers"] == SIZES[tenant].customers
        assert counts[tenant]["orders"] == SIZES[tenant].orders
    assert len({c["order_items"] for c in counts.values()}) == 3


def test_every_updated_at_falls_on_the_four_demo_days(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    generate_source(path, "demo_south", dt.date(2026, 1, 3))
    days = {d.isoformat() for d in demo_dates(dt.date(2026, 1, 3))}
    with sqlite3.connect(path) as conn:
        for table in TABLES:
            seen = {r[0][:10] for r in conn.execute(f"SELECT updated_at FROM {table}")}
            assert seen == days, table
        assert conn.execute(
            "SELECT count(*) FROM orders o LEFT JOIN customers c USING (customer_id) "
            "WHERE c.customer_id IS NULL"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM order_items i LEFT JOIN products p USING (product_id) "
            "WHERE p.product_id IS NULL"
        ).fetchone() == (0,)
        statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM orders")}
        assert statuses <= {"placed", "shipped", "delivered", "cancelled"}
        assert conn.execute("SELECT count(*) FROM orders WHERE ordered_at > updated_at").fetchone() == (0,)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_timestamps_keep_microseconds_and_prices_two_decimals(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite"
    generate_source(path, "demo_west")
    with sqlite3.connect(path) as conn:
        stamps = [r[0] for r in conn.execute("SELECT updated_at FROM orders")]
        prices = [r[0] for r in conn.execute("SELECT CAST(unit_price AS TEXT) FROM products")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", s) for s in stamps)
    assert any(not s.endswith("000000") for s in stamps)
    assert all(round(float(p), 2) == float(p) for p in prices)


def test_schema_matches_the_stack_sample_shop(tmp_path: Path, repo_root: Path) -> None:
    """Same tables and columns (in order) as docker/postgres/init.sql, so the dbt models serve both."""
    path = tmp_path / "n.sqlite"
    generate_source(path, "demo_north")
    init_sql = (repo_root / "docker" / "postgres" / "init.sql").read_text()
    for table in TABLES:
        body = re.search(rf"CREATE TABLE {table} \((.*?)\n\);", init_sql, re.S)
        assert body, table
        expected = re.findall(r"^  ([a-z_]+) ", body.group(1), re.M)
        assert [name for name, _ in _columns(path, table)] == expected
    types = dict(_columns(path, "products"))
    assert types["unit_price"] == "NUMERIC(12, 2)"
    assert types["updated_at"] == "TIMESTAMP"


def test_a_different_date_or_a_damaged_file_is_regenerated(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    generate_source(path, "demo_north")
    assert source_is_current(path, "demo_north", DEMO_DATE)
    assert not source_is_current(path, "demo_north", dt.date(2026, 12, 1))
    assert not source_is_current(path, "demo_south", DEMO_DATE)
    path.write_bytes(b"not a database")
    assert not source_is_current(path, "demo_north", DEMO_DATE)
    assert generate_source(path, "demo_north") is True
    assert source_is_current(path, "demo_north", DEMO_DATE)
