"""The demo source generator: deterministic, the stack samples' shop schema, data on the four demo days."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest

from mozart_luigi.cli import main
from mozart_luigi.config import get_config
from mozart_luigi.demo import DEMO_DATE, SIZES, check_writable, demo_dates, generate_source, source_is_current
from mozart_luigi.errors import ConfigError
from mozart_luigi.runlog import read_records, runs_path

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
            "SELECT count(*) FROM orders o LEFT JOIN customers c USING (customer_id) WHERE c.customer_id IS NULL"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM order_items i LEFT JOIN products p USING (product_id) WHERE p.product_id IS NULL"
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


def test_a_different_date_or_tenant_or_an_older_demo_file_is_regenerated(tmp_path: Path) -> None:
    path = tmp_path / "n.sqlite"
    generate_source(path, "demo_north")
    assert source_is_current(path, "demo_north", DEMO_DATE)
    assert not source_is_current(path, "demo_north", dt.date(2026, 12, 1))
    assert not source_is_current(path, "demo_south", DEMO_DATE)
    assert generate_source(path, "demo_north", dt.date(2026, 12, 1)) is True  # another end date: the demo's own
    assert source_is_current(path, "demo_north", dt.date(2026, 12, 1))
    assert generate_source(path, "demo_south") is True  # another tenant's demo shop: still the demo's own
    assert source_is_current(path, "demo_south", DEMO_DATE)


def test_an_older_demo_version_is_regenerated(tmp_path: Path) -> None:
    """A file an earlier version of the demo wrote (another schema version, older tables) is the demo's own."""
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE mozart_demo_meta (version INTEGER, tenant TEXT, end_date TEXT)")
        conn.execute("INSERT INTO mozart_demo_meta VALUES (0, 'demo_north', '2025-01-01')")
        conn.commit()
    assert not source_is_current(path, "demo_north", DEMO_DATE)
    assert generate_source(path, "demo_north") is True
    assert source_is_current(path, "demo_north", DEMO_DATE)
    assert len(_dump(path)["orders"]) == SIZES["demo_north"].orders


# ------------------------------------------------------------------------ never overwrite a user's file


def _users_sqlite(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE my_orders (id INTEGER PRIMARY KEY, note TEXT)")
        conn.executemany("INSERT INTO my_orders VALUES (?, ?)", [(1, "mine"), (2, "keep me")])
        conn.commit()


USERS_FILES = {
    "sqlite": (_users_sqlite, "a SQLite database without the demo's mozart_demo_meta table"),
    "text": (lambda p: p.write_text("my notes, not a database\n"), "not a SQLite database"),
    "empty": (lambda p: p.write_bytes(b""), "an empty file"),
    "damaged": (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200), "without the demo's"),
}


@pytest.mark.parametrize("kind", sorted(USERS_FILES))
def test_a_file_the_demo_did_not_generate_is_never_written(tmp_path: Path, kind: str) -> None:
    make, why = USERS_FILES[kind]
    path = tmp_path / "mine.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as refused:
        generate_source(path, "demo_north")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.sqlite"]  # no temp file, no journal
    (problem,) = refused.value.problems
    assert problem.key == "tenants.demo_north.source.path"
    assert f"tenant 'demo_north': the demo did not generate '{path}'" in problem.message
    assert why in problem.message and "leaves it untouched" in problem.message
    with pytest.raises(ConfigError):
        check_writable(path, "demo_north")
    check_writable(tmp_path / "absent.sqlite", "demo_north")  # no file: the demo may write there


def test_a_folder_at_the_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.sqlite").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        generate_source(tmp_path / "x.sqlite", "demo_west")


MINE_TENANTS = """
tenants:
  demo_west:
    profiles: [local]
    source: {kind: sqlite, path: "%(data)s/sources/demo_west.sqlite"}
  mine:
    profiles: [local]
    source: {kind: sqlite, path: "%(data)s/mine.sqlite"}
  notes:
    profiles: [local]
    source: {kind: sqlite, path: "%(data)s/notes.txt"}
"""


def test_mozart_demo_refuses_a_users_files_and_exits_2_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], repo_root: Path
) -> None:
    """The issue's case: a local tenant of the user's own (``mine.sqlite``) next to the demo tenants. ``mozart
    demo`` names every file it will not touch (the tenant and the path), writes nothing, runs nothing, exits 2
    (the configuration error code) and records the run with that code."""
    data, config_dir = tmp_path / "data", tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "tables.yaml").write_text((repo_root / "config" / "tables.yaml").read_text())
    (config_dir / "tenants.yaml").write_text(MINE_TENANTS % {"data": data})
    data.mkdir()
    mine, notes = data / "mine.sqlite", data / "notes.txt"
    _users_sqlite(mine)
    notes.write_text("my notes, not a database\n")
    before = {p: p.read_bytes() for p in (mine, notes)}
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("MOZART_DATA_DIR", str(data))
    for name in ("MOZART_DUCKDB_PATH", "MOZART_LAKE_URL", "MOZART_REPORT_DIR", "MOZART_DEMO_DATE"):
        monkeypatch.delenv(name, raising=False)

    assert main(["demo"]) == 2
    out, err = capsys.readouterr()
    assert {p: p.read_bytes() for p in (mine, notes)} == before  # byte-identical
    assert not (data / "sources" / "demo_west.sqlite").exists()  # nothing written, not even the demo's own
    assert not (data / "warehouse.duckdb").exists() and not (data / "lake").exists()  # nothing ran
    assert "configuration invalid: 2 problem(s)" in err
    for tenant, path, why in (
        ("mine", mine, "a SQLite database without the demo's mozart_demo_meta table"),
        ("notes", notes, "not a SQLite database"),
    ):
        (line,) = [line for line in err.splitlines() if f"tenants.{tenant}.source.path" in line]
        assert f"tenant '{tenant}': the demo did not generate '{path}' ({why})" in line
        assert "the demo leaves it untouched" in line
    assert "Traceback" not in out + err
    (record,) = read_records(runs_path(get_config().settings))
    assert (record["entry_point"], record["exit_code"], record["status"]) == ("mozart demo", 2, "CONFIG_ERROR")


def test_mozart_demo_refuses_a_users_file_in_a_demo_tenants_place(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped config: a user's own database where a demo tenant's source goes is not replaced either."""
    path = Path(get_config().tenant("demo_west").source.path)
    path.parent.mkdir(parents=True)
    _users_sqlite(path)
    before = path.read_bytes()
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert path.read_bytes() == before
    assert "tenants.demo_west.source.path" in err and str(path.resolve()) in err
    assert not (local / "sources" / "demo_north.sqlite").exists()  # all sources are checked before any is written
