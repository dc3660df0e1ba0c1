"""The extract contract: what every source must do through ``ExtractTable``, run over every source the run has.

Sources: SQLite (always); PostgreSQL and MariaDB through the SQLAlchemy row path and the native Arrow reader
(when the stack is up: ``eval "$(scripts/stack env)"``); Oracle when ``MOZART_TEST_ORACLE_URL`` is set.
Each source builds the same tables with SQLAlchemy (so every dialect quotes the same hostile names its own
way) and the same rows; the lake is a local folder (the lake contract covers S3; the rerun case runs on both).

The contract:
- full and incremental modes land exactly the source rows (values compared, NULLs included); the incremental
  window is half-open, ``[day, day + 1)``;
- the manifest agrees with itself and with the lake: ``row_count == source_count ==`` the rows of the parts
  it lists, which are exactly the day's files;
- an empty table gives one typed zero-row part, with the types the same table has when it holds rows;
- hostile table and column names (quotes, spaces, mixed case, reserved words) and hostile values land as is;
- a rerun of a completed day does nothing (same run id, same files), even when the source changed;
- a refused connection (wrong password; SQLite: a missing file) and a missing table fail at once with a
  terminal ``SourceError`` naming the tenant and the table, without the secret, and leave no ``_SUCCESS``.

Per-type matrices stay per dialect (``tests/integration/test_extract_{postgres,mysql,oracle}.py``,
``tests/unit/test_extract_local.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from integration import extract_helpers
from integration.extract_helpers import DAY, build, extract, lake, read_back, write_config
from sqlalchemy.dialects import mysql, oracle
from sqlalchemy.engine import make_url

from mozart_luigi.errors import SourceError
from mozart_luigi.manifest import MANIFEST_NAME, Manifest

pytestmark = pytest.mark.contract
lake_url = extract_helpers.lake_url
TENANT = "acme"
WRONG_PASSWORD = "wrong-pw-Zk81q"
UTC = dt.UTC

# Microsecond cursors (the half-open window's edges): DATETIME(6) on MariaDB, TIMESTAMP on Oracle (DATE has none)
WHEN = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql").with_variant(oracle.TIMESTAMP(), "oracle")


def _columns(*names: str) -> list[sa.Column]:
    """``id`` and three value columns named ``names``: a string, a decimal and a timestamp."""
    text, amount, when = names
    return [
        sa.Column("id", sa.Integer),
        sa.Column(text, sa.String(40)),
        sa.Column(amount, sa.Numeric(10, 2)),
        sa.Column(when, WHEN),
    ]


def _row(
    i: int,
    text: str | None,
    amount: str | None,
    when: dt.datetime | None,
    names: tuple[str, str, str] = ("note", "amount", "changed"),
) -> dict[str, Any]:
    return {"id": i, names[0]: text, names[1]: None if amount is None else Decimal(amount), names[2]: when}


# Rows by day: ids 1 and 6 are outside DAY's window, 2..5 inside; NULLs in every value column (id 5).
ROWS = [
    _row(1, "the day before", "1.00", dt.datetime(2026, 11, 24, 23, 59, 59, 999999)),
    _row(2, "midnight opens the day", "12.34", dt.datetime(2026, 11, 25, 0, 0, 0)),
    _row(3, "Grüße 😀 'quoted' \"double\"", "-0.01", dt.datetime(2026, 11, 25, 13, 14, 15, 500000)),
    _row(4, "x'; DROP TABLE y; --", "99999999.99", dt.datetime(2026, 11, 25, 23, 59, 59, 999999)),
    _row(5, None, None, dt.datetime(2026, 11, 25, 8, 0, 0)),
    _row(6, "midnight closes it", "0.50", dt.datetime(2026, 11, 26, 0, 0, 0)),
]
IN_WINDOW = [r for r in ROWS if r["id"] in (2, 3, 4, 5)]
NULL_CURSOR = _row(7, "no cursor: in the full table only", "7.00", None)


# ------------------------------------------------------------------------------------------------ sources
@dataclass
class Source:
    """One source database: where its tables go, and the tenants.yaml entries that reach it."""

    kind: str
    engine: sa.Engine
    tenant: dict[str, Any]
    prefix: str = ""  # table names in a shared database start with it (PostgreSQL and SQLite get their own)
    schema: str | None = None
    reader: str = "sqlalchemy"
    bad_tenant: Callable[[pytest.MonkeyPatch], dict[str, Any]] | None = None
    metadata: sa.MetaData = field(default_factory=sa.MetaData)

    def create(self, name: str, columns: list[sa.Column], rows: list[dict[str, Any]]) -> str:
        """Create the table ``prefix + name`` (the dialect quotes every name) with ``rows``; its source name."""
        kwargs = {"mysql_charset": "utf8mb4"} if self.kind == "mysql" else {}
        table = sa.Table(self.prefix + name, self.metadata, *columns, schema=self.schema, **kwargs)
        table.create(self.engine)
        if rows:
            with self.engine.begin() as conn:
                conn.execute(table.insert(), rows)
        return str(table.name)  # a plain str (SQLAlchemy's quoted_name does not go to YAML)

    def drop(self) -> None:
        self.metadata.drop_all(self.engine)
        self.engine.dispose()


def _wrong_password(env_key: str, kind: str, extra: dict[str, Any]) -> Callable[[pytest.MonkeyPatch], dict]:
    def tenant(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        url = make_url(os.environ[env_key]).set(password=WRONG_PASSWORD).render_as_string(hide_password=False)
        monkeypatch.setenv("MOZART_CONTRACT_BAD_URL", url)
        return {"source": {"kind": kind, "url": "${MOZART_CONTRACT_BAD_URL}", **extra}}

    return tenant


def _sqlite(tmp_path: Path) -> Source:
    path = tmp_path / "source.sqlite"
    missing = tmp_path / "no-such-folder" / "gone.sqlite"
    return Source(
        "sqlite",
        sa.create_engine(f"sqlite:///{path}"),
        {"source": {"kind": "sqlite", "path": str(path)}},
        bad_tenant=lambda _: {"source": {"kind": "sqlite", "path": str(missing)}},
    )


def _postgresql(reader: str) -> Source:
    engine = sa.create_engine(os.environ["MOZART_TEST_PG_URL"])
    schema = f"mz_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    source = {"kind": "postgresql", "url": "${MOZART_TEST_PG_URL}", "schema": schema, "native": reader == "native"}
    bad = _wrong_password("MOZART_TEST_PG_URL", "postgresql", {"schema": schema, "native": reader == "native"})
    return Source("postgresql", engine, {"source": source}, schema=schema, reader=reader, bad_tenant=bad)


def _mysql(reader: str) -> Source:
    engine = sa.create_engine(os.environ["MOZART_TEST_MYSQL_URL"], connect_args={"charset": "utf8mb4"})
    source = {"kind": "mysql", "url": "${MOZART_TEST_MYSQL_URL}", "native": reader == "native"}
    bad = _wrong_password("MOZART_TEST_MYSQL_URL", "mysql", {"native": reader == "native"})
    return Source(
        "mysql", engine, {"source": source}, prefix=f"mz_{uuid.uuid4().hex[:8]} ", reader=reader, bad_tenant=bad
    )


def _oracle() -> Source:
    engine = sa.create_engine(os.environ["MOZART_TEST_ORACLE_URL"])
    source = {"kind": "oracle", "url": "${MOZART_TEST_ORACLE_URL}"}
    bad = _wrong_password("MOZART_TEST_ORACLE_URL", "oracle", {})
    return Source("oracle", engine, {"source": source}, prefix=f"MZ_{uuid.uuid4().hex[:8].upper()} ", bad_tenant=bad)


SOURCES = [
    "sqlite",
    "postgresql-sqlalchemy",
    "postgresql-native",
    "mysql-sqlalchemy",
    "mysql-native",
    pytest.param("oracle", marks=pytest.mark.oracle),
]


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    kind, _, reader = request.param.partition("-")
    if kind == "sqlite":
        made = _sqlite(tmp_path)
    elif kind == "oracle":
        if not os.environ.get("MOZART_TEST_ORACLE_URL"):
            pytest.skip("MOZART_TEST_ORACLE_URL is not set (Oracle Free from docker-compose)")
        made = _oracle()
    else:
        request.getfixturevalue("stack_env")
        made = _postgresql(reader) if kind == "postgresql" else _mysql(reader)
    try:
        yield made
    finally:
        made.drop()
        if made.schema:
            with made.engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{made.schema}" CASCADE')
            made.engine.dispose()


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rows a batch and a part: a handful of rows already makes several parts."""
    monkeypatch.setenv("MOZART_BATCH_ROWS", "2")
    monkeypatch.setenv("MOZART_PART_ROWS", "2")


def configure(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tables: dict[str, Any], lake: str | None = None
) -> None:
    write_config(tmp_path, monkeypatch, {TENANT: source.tenant}, tables, lake)


def landed(table: str, date: dt.date = DAY) -> tuple[Manifest, list[dict[str, Any]]]:
    """The manifest and its rows by id, after checking that it agrees with itself and with the lake."""
    manifest, data = read_back(TENANT, table, date)
    folder = lake().date_url(TENANT, table, date)
    assert lake().list_files(folder) == sorted([MANIFEST_NAME, *(f.name for f in manifest.files)])
    assert manifest.row_count == manifest.source_count == sum(f.rows for f in manifest.files) == data.num_rows
    assert len(manifest.files) >= 1 and all(f.name.startswith(f"part-{manifest.run_id}-") for f in manifest.files)
    assert (manifest.tenant, manifest.table, manifest.date) == (TENANT, table, date)
    return manifest, sorted(data.to_pylist(), key=lambda r: r["id"])


def assert_reader(manifest: Manifest, source: Source) -> None:
    """The SQLAlchemy path really ran when asked for (the native one may fall back to it, never silently)."""
    if source.reader == "sqlalchemy" and source.kind in ("postgresql", "mysql"):
        assert manifest.details["reader"] == "sqlalchemy"


# -------------------------------------------------------------------------------------------------- cases
def test_full_mode_lands_exactly_the_source_rows(source: Source, small_parts, tmp_path: Path, monkeypatch) -> None:
    name = source.create("orders", _columns("note", "amount", "changed"), [*ROWS, NULL_CURSOR])
    configure(source, tmp_path, monkeypatch, {"orders": {"source_name": name, "mode": "full"}})
    assert build(extract(TENANT, "orders")).scheduling_succeeded
    manifest, rows = landed("orders")
    assert rows == [*ROWS, NULL_CURSOR]
    assert manifest.mode == "full" and manifest.row_count == 7 and [f.rows for f in manifest.files] == [2, 2, 2, 1]
    assert manifest.schema.names == ["id", "note", "amount", "changed"]
    assert_reader(manifest, source)


def test_incremental_mode_lands_the_half_open_day(source: Source, small_parts, tmp_path: Path, monkeypatch) -> None:
    name = source.create("orders", _columns("note", "amount", "changed"), [*ROWS, NULL_CURSOR])
    configure(
        source, tmp_path, monkeypatch, {"orders": {"source_name": name, "mode": "incremental", "cursor": "changed"}}
    )
    days = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]
    assert build(*(extract(TENANT, "orders", d) for d in days)).scheduling_succeeded
    manifest, rows = landed("orders")
    assert rows == IN_WINDOW
    assert manifest.mode == "incremental" and manifest.row_count == 4
    assert (manifest.window_start, manifest.window_end) == (
        dt.datetime(2026, 11, 25, tzinfo=UTC),
        dt.datetime(2026, 11, 26, tzinfo=UTC),
    )
    assert [r["id"] for r in landed("orders", days[0])[1]] == [1]
    assert [r["id"] for r in landed("orders", days[2])[1]] == [6]  # the NULL cursor is in no day
    assert_reader(manifest, source)


def test_an_empty_table_gives_one_typed_zero_row_part(source: Source, tmp_path: Path, monkeypatch) -> None:
    empty = source.create("vacant", _columns("note", "amount", "changed"), [])
    full = source.create("something", _columns("note", "amount", "changed"), ROWS)
    configure(
        source,
        tmp_path,
        monkeypatch,
        {"vacant": {"source_name": empty, "mode": "full"}, "something": {"source_name": full, "mode": "full"}},
    )
    assert build(extract(TENANT, "vacant"), extract(TENANT, "something")).scheduling_succeeded
    manifest, rows = landed("vacant")
    assert rows == [] and manifest.row_count == 0 and len(manifest.files) == 1 and manifest.files[0].rows == 0
    assert manifest.schema == landed("something")[0].schema, "an empty table has the types of a full one"
    assert_reader(manifest, source)


def test_hostile_table_and_column_names(source: Source, tmp_path: Path, monkeypatch) -> None:
    """Spaces, mixed case, reserved words and quotes in table and column names; an injection as a value.
    (Oracle names cannot hold a double quote: its column gets a single one only.)"""
    quote = "'" if source.kind == "oracle" else '"'
    names = ("select", f"Unit {quote}Price{quote}", "Updated At")
    items = source.create(f"Order 'Items' {quote}x{quote}", _columns(*names), [_renamed(r, names) for r in ROWS])
    select = source.create(
        "select",
        [sa.Column("id", sa.Integer), sa.Column("from", sa.String(40)), sa.Column("Where", sa.Integer)],
        [{"id": 1, "from": "x'; DROP TABLE y; --", "Where": 7}],
    )
    tables = {
        "Order Items": {"source_name": items, "mode": "incremental", "cursor": "Updated At"},
        "select": {"source_name": select, "mode": "full"},
    }
    configure(source, tmp_path, monkeypatch, tables)
    assert build(extract(TENANT, "order_items"), extract(TENANT, "select")).scheduling_succeeded
    manifest, rows = landed("order_items")
    assert rows == [_renamed(r, names) for r in IN_WINDOW]
    assert manifest.schema.names == ["id", *names]
    assert landed("select")[1] == [{"id": 1, "from": "x'; DROP TABLE y; --", "Where": 7}]


def test_a_rerun_of_a_completed_day_does_nothing(source: Source, lake_url: str, tmp_path: Path, monkeypatch) -> None:
    name = source.create("orders", _columns("note", "amount", "changed"), ROWS)
    configure(source, tmp_path, monkeypatch, {"orders": {"source_name": name, "mode": "full"}}, lake_url)
    first = build(extract(TENANT, "orders"))
    assert first.scheduling_succeeded and "1 ran successfully" in first.summary_text
    before, rows = landed("orders")
    files = lake().list_files(lake().date_url(TENANT, "orders", DAY))
    with source.engine.begin() as conn:  # a change after the extract is not picked up: the day is done
        conn.execute(source.metadata.tables[_key(source, name)].insert(), [NULL_CURSOR])
    second = build(extract(TENANT, "orders"))
    assert second.scheduling_succeeded and "ran successfully" not in second.summary_text
    assert "1 complete ones were encountered" in second.summary_text
    after, again = landed("orders")
    assert after.run_id == before.run_id and again == rows == ROWS
    assert lake().list_files(lake().date_url(TENANT, "orders", DAY)) == files


def test_a_refused_connection_fails_at_once_naming_tenant_and_table(
    source: Source, tmp_path: Path, monkeypatch, caplog
) -> None:
    assert source.bad_tenant is not None
    caplog.set_level(logging.DEBUG)
    write_config(tmp_path, monkeypatch, {TENANT: source.bad_tenant(monkeypatch)}, {"orders": {"mode": "full"}})
    task = extract(TENANT, "orders")
    with pytest.raises(SourceError) as info:
        task.run()
    message = str(info.value)
    assert message.startswith(f"tenant '{TENANT}', table 'orders': cannot connect to"), message
    assert not info.value.retryable and "retrying in" not in caplog.text
    assert WRONG_PASSWORD not in message and WRONG_PASSWORD not in caplog.text
    assert not task.output().exists() and not task.complete()
    if source.kind == "sqlite":
        assert not Path(source.bad_tenant(monkeypatch)["source"]["path"]).exists(), "opened read-only: not created"


def test_a_missing_table_fails_at_once_naming_tenant_and_table(source: Source, tmp_path: Path, monkeypatch) -> None:
    source.create("present", _columns("note", "amount", "changed"), [])  # the database exists, the table not
    configure(source, tmp_path, monkeypatch, {"ghost": {"source_name": f"{source.prefix}no_such_table_zz"}})
    task = extract(TENANT, "ghost")
    with pytest.raises(SourceError) as info:
        task.run()
    message = str(info.value)
    assert message.startswith(f"tenant '{TENANT}', table 'ghost': table "), message
    assert "no_such_table_zz" in message and "not found" in message and not info.value.retryable
    assert not task.output().exists()
    assert MANIFEST_NAME not in lake().list_files(lake().date_url(TENANT, "ghost", DAY))


# ------------------------------------------------------------------------------------------------ helpers
def _renamed(row: dict[str, Any], names: tuple[str, str, str]) -> dict[str, Any]:
    """A row of :data:`ROWS` with its value columns named ``names``."""
    return {"id": row["id"], names[0]: row["note"], names[1]: row["amount"], names[2]: row["changed"]}


def _key(source: Source, name: str) -> str:
    return f"{source.schema}.{name}" if source.schema else name
