"""Late rows and deletes on the local profile (SQLite source -> local lake -> DuckDB): ``lookback_days`` in the
graph (refresh tasks: distinct ids, their own completeness, the day's own ids unchanged) and through Luigi (a
late row reaches the warehouse on the next run, a rerun re-extracts nothing), and the keys stream of
``deletes: keys``. The stack twin is ``tests/integration/test_late_rows_stack.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from local_pipeline import build, configure_local
from luigi.task import flatten, task_id_str

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.errors import ConfigError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest
from mozart_luigi.targets import clear_marker_cache
from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.tasks.extract import ExtractTable, RefreshTarget
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.unit
TENANT = "shop"
D1, D2, D3, D4 = (dt.date(2026, 11, 25) + dt.timedelta(days=i) for i in range(4))
TABLES = {
    "orders": {
        "mode": "incremental",
        "cursor": "updated_at",
        "primary_key": ["order_id"],
        "lookback_days": 2,
        "deletes": "keys",
    },
    "products": {"mode": "full", "primary_key": ["product_id"]},
}


def _insert(source: Path, rows: list[tuple[int, str, str]]) -> None:
    with sqlite3.connect(source) as conn:
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", rows)
    conn.close()


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """One SQLite tenant: orders (incremental, lookback 2, deletes: keys) and products (full)."""
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, note TEXT, updated_at TIMESTAMP)")
        conn.execute("CREATE TABLE products (product_id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO products VALUES (1, 'p1')")
    conn.close()
    _insert(path, [(1, "a", f"{D1} 10:00:00"), (2, "b", f"{D2} 11:00:00"), (3, "c", f"{D3} 12:00:00")])
    configure_local(tmp_path, monkeypatch, tenant=TENANT, source=path, tables=TABLES)
    yield path
    clear_marker_cache()


def _loads(date: dt.date) -> list[LoadIceberg]:
    """What ``DbtRun(date)`` requires: the loads (no dbt build: the dbt layer has its own tests)."""
    return flatten(DbtRun(tenant=TENANT, date=date).requires())


def _partition(date: dt.date, table: str = "orders") -> list[tuple]:
    key = "order_id" if table.startswith("orders") else "product_id"
    warehouse = DuckDBWarehouse.from_settings(get_config().settings)
    return warehouse.query(f'SELECT {key} FROM "{TENANT}"."{table}" WHERE _mozart_date = ? ORDER BY 1', [date])


def _manifest(date: dt.date, table: str = "orders") -> Manifest:
    return Lake.from_settings(get_config().settings).read_manifest(TENANT, table, date)


def test_the_graph_of_a_lookback_run(source: Path) -> None:
    loads = _loads(D3)
    assert [(t.table, t.date, t.refresh) for t in loads] == [
        ("orders", D3, None),
        ("orders__keys", D3, None),
        ("products", D3, None),
        ("orders", D2, D3),
        ("orders", D1, D3),
    ]
    assert [t.requires() for t in loads] == [
        ExtractTable(tenant=TENANT, table=t.table, date=t.date, refresh=t.refresh) for t in loads
    ]
    assert isinstance(loads[3].requires().output(), RefreshTarget)
    assert len({t.task_id for t in loads}) == len(loads)


def test_the_days_own_tasks_keep_their_ids(source: Path) -> None:
    """``refresh`` is left out of the day's own task: the ids (markers, luigid history) of existing tasks do
    not change; a refresh task is another task, and its parameters go through a string round trip."""
    params = {"date": D2.isoformat(), "table": "orders", "tenant": TENANT}
    for family in (LoadIceberg, ExtractTable):
        own = family(tenant=TENANT, table="orders", date=D2)
        assert own.task_id == task_id_str(family.get_task_family(), params)
        assert repr(own) == f"{family.get_task_family()}(tenant={TENANT}, date={D2}, table=orders)"
        assert "refresh" not in own.to_str_params()
        redo = family(tenant=TENANT, table="orders", date=D2, refresh=D3)
        assert redo.task_id != own.task_id and f"refresh={D3}" in repr(redo)
        assert family.from_str_params(redo.to_str_params()) == redo
        assert family.from_str_params(own.to_str_params()) == own


def test_a_late_row_reaches_the_warehouse_on_the_next_run(source: Path) -> None:
    assert build(*_loads(D2)).scheduling_succeeded  # D2, and D1 (lookback 2 reaches D0 too)
    assert _partition(D1) == [(1,)] and _partition(D2) == [(2,)]
    assert _manifest(D1).refresh == D2 and _manifest(D2).refresh is None
    _insert(source, [(10, "late", f"{D2} 23:00:00"), (11, "later", f"{D1} 09:00:00")])  # committed late

    first = build(*_loads(D3))
    assert first.scheduling_succeeded, first.summary_text
    assert _partition(D2) == [(2,), (10,)] and _partition(D1) == [(1,), (11,)]
    assert _manifest(D2).refresh == D3 and _manifest(D1).refresh == D3
    extracted = {d: _manifest(d).run_id for d in (D1, D2, D3)}

    again = build(*_loads(D3))  # complete: the refreshes of D3 are done, nothing is extracted again
    assert again.scheduling_succeeded and "complete ones were encountered" in again.summary_text
    assert "ran successfully" not in again.summary_text
    assert {d: _manifest(d).run_id for d in (D1, D2, D3)} == extracted

    _insert(source, [(12, "late again", f"{D2} 22:00:00")])
    assert build(*_loads(D4)).scheduling_succeeded  # the next run's lookback: D3, D2
    assert _partition(D2) == [(2,), (10,), (12,)]
    assert _manifest(D1).refresh == D3  # out of D4's window: left as D3's run loaded it


def test_a_refresh_of_an_already_refreshed_extract_only_writes_its_marker(source: Path) -> None:
    """Run D3 first (refreshing D2 and D1), then a backfill of D2: its refresh of D1 finds D1 refreshed by a
    later run (complete), and the load of that extract already committed: a marker, no second load."""
    assert build(*_loads(D3)).scheduling_succeeded
    run_id = _manifest(D1).run_id
    assert build(*_loads(D2)).scheduling_succeeded
    assert _manifest(D1).run_id == run_id and _partition(D1) == [(1,)]
    warehouse = DuckDBWarehouse.from_settings(get_config().settings)
    loads = [m for m in warehouse.markers(TENANT, D1) if m.table == "orders"]
    assert sorted(m.details.get("refresh") for m in loads) == [D2.isoformat(), D3.isoformat()]
    assert {m.details["run_id"] for m in loads} == {run_id}


def test_the_keys_stream_holds_every_key_of_the_day(source: Path) -> None:
    assert build(*_loads(D3)).scheduling_succeeded
    assert _partition(D3, "orders__keys") == [(1,), (2,), (3,)]
    keys = _manifest(D3, "orders__keys")
    assert keys.mode == "full" and keys.schema.names == ["order_id"] and keys.row_count == 3
    with sqlite3.connect(source) as conn:
        conn.execute("DELETE FROM orders WHERE order_id = 2")
    conn.close()
    assert build(*_loads(D4)).scheduling_succeeded
    assert _partition(D4, "orders__keys") == [(1,), (3,)]
    assert _partition(D3, "orders__keys") == [(1,), (2,), (3,)]  # each run date keeps its own snapshot


def test_a_full_table_is_never_refreshed(source: Path) -> None:
    task = ExtractTable(tenant=TENANT, table="products", date=D1, refresh=D2)
    with pytest.raises(ConfigError, match="only an incremental table's day can be extracted again"):
        task.run()


# ------------------------------------------------------------------------------------------------ audit


def test_audit_finds_the_late_day_and_status_shows_it_stale_until_reloaded(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mozart_luigi import cli
    from mozart_luigi.audit import audit, read_findings
    from mozart_luigi.status_grid import STALE, build_matrix

    assert build(*_loads(D2)).scheduling_succeeded
    assert audit(get_config(), D1, D2).ok
    _insert(source, [(20, "late", f"{D1} 12:00:00")])  # a row committed late into a loaded day
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE orders SET updated_at = ? WHERE order_id = 2", (f"{D3} 08:00:00",))  # moved out of D2
    conn.close()

    assert cli.main(["audit", "--from", D1.isoformat(), "--to", D2.isoformat(), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found == [
        {"tenant": TENANT, "table": "orders", "date": D1.isoformat(), "loaded_rows": 1, "source_rows": 2},
        {"tenant": TENANT, "table": "orders", "date": D2.isoformat(), "loaded_rows": 1, "source_rows": 0},
    ]
    assert set(read_findings(get_config().settings)) == {(TENANT, "orders", D1), (TENANT, "orders", D2)}
    matrix = build_matrix(get_config(), D1, D2)
    stale = matrix.cell(TENANT, "orders", D1)
    assert stale is not None and stale.state == STALE and not matrix.ok
    assert "2 row(s) in the day's window now, 1 loaded" in (stale.error or "")
    assert stale.rerun == f"mozart rerun --tenant {TENANT} --table orders --date {D1} --from-extract"
    assert matrix.cell(TENANT, "products", D2).state == "done"  # a full table is not audited

    assert build(*_loads(D3)).scheduling_succeeded  # the lookback reloads D1 and D2: no longer stale
    assert {c.state for c in build_matrix(get_config(), D1, D2).cells if c.table == "orders"} == {"done"}
    assert cli.main(["audit", "--from", D1.isoformat(), "--to", D3.isoformat()]) == 0
    assert "3 loaded day(s) compared, 0 differ" in capsys.readouterr().out
    assert read_findings(get_config().settings) == {}


def test_audit_goes_on_when_a_tenant_fails(source: Path, tmp_path: Path) -> None:
    from mozart_luigi.audit import audit
    from mozart_luigi.warehouse import Marker, open_warehouse

    config_dir = Path(get_config().config_dir)
    tenants = yaml.safe_load((config_dir / "tenants.yaml").read_text())
    tenants["tenants"]["gone"] = {"source": {"kind": "sqlite", "path": str(tmp_path / "gone.sqlite")}}
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump(tenants), encoding="utf-8")
    reset_config_cache()
    assert build(*_loads(D2)).scheduling_succeeded
    with open_warehouse(get_config().settings) as warehouse:  # a day the broken tenant once loaded
        warehouse.write_marker(
            Marker(
                task_family="LoadIceberg", task_id="LoadIceberg_gone_x", tenant="gone", date=D2, table="orders", rows=5
            )
        )
    _insert(source, [(30, "late", f"{D2} 12:00:00")])
    result = audit(get_config(), D1, D2)
    assert set(result.errors) == {"gone"} and "unable to open database file" in result.errors["gone"]
    assert [(f.tenant, f.date, f.loaded_rows, f.source_rows) for f in result.findings] == [(TENANT, D2, 1, 2)]
