"""Checksums (``checksum:`` in tables.yaml, docs/late-rows.md "Checksums") on the local profile: the option's
validation, the manifest field, the source sums taken in the extract's snapshot, and the load's exact
comparison (SQLite source -> local lake -> DuckDB). The stack twin is
``tests/integration/test_checksums_stack.py`` (PostgreSQL and MariaDB, both readers, Trino).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml
from local_pipeline import build, configure_local

from mozart_luigi import checksums
from mozart_luigi.config import get_config, load_config
from mozart_luigi.connectors import connector_for
from mozart_luigi.connectors.snapshot import Snapshot
from mozart_luigi.errors import ConfigError, VerificationError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, ManifestFormatError, PartFile
from mozart_luigi.targets import clear_marker_cache
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.unit
TENANT = "shop"
DAY = dt.date(2026, 11, 25)
TABLES: dict[str, Any] = {
    "ledger": {"mode": "full", "primary_key": ["id"], "checksum": ["qty", "delta"]},
    "moves": {"mode": "incremental", "cursor": "moved_at", "checksum": ["qty"]},
}
LEDGER = [(1, 5, -9_000_000_000_000_000_000, 1.5), (2, -7, 9_000_000_000_000_000_000, 2.5), (3, None, -3, 0.1)]
MOVES = [(1, 10, f"{DAY} 01:00:00"), (2, -4, f"{DAY} 23:59:59"), (3, 1000, f"{DAY + dt.timedelta(days=1)} 00:00:00")]


# ------------------------------------------------------------------------------------------------ config


def _tables(tmp_path: Path, tables: dict[str, Any]) -> Path:
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}), encoding="utf-8")
    tenants = {"tenants": {TENANT: {"source": {"kind": "sqlite", "path": str(tmp_path / "x.sqlite")}}}}
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump(tenants), encoding="utf-8")
    return tmp_path


def _problems(tmp_path: Path, body: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(_tables(tmp_path, {"t": body}), env={})
    return [f"{p.key}: {p.message}" for p in caught.value.problems]


def test_checksum_is_parsed_for_full_and_incremental_tables(tmp_path: Path) -> None:
    config = load_config(_tables(tmp_path, TABLES), env={})
    assert config.tables["ledger"].checksum == ("qty", "delta")
    assert config.tables["moves"].checksum == ("qty",)
    one = load_config(_tables(tmp_path, {"t": {"checksum": "amount"}}), env={})
    assert one.tables["t"].checksum == ("amount",)
    none = load_config(_tables(tmp_path, {"t": {"checksum": []}}), env={})
    assert none.tables["t"].checksum == ()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"checksum": 5}, "tables.t.checksum: must be a column name or a list of them, got 5"),
        ({"checksum": [1, 2]}, "tables.t.checksum: must be a column name or a list of them, got [1, 2]"),
        ({"checksum": {"amount": True}}, "tables.t.checksum: must be a column name or a list of them"),
        ({"checksum": True}, "tables.t.checksum: must be a column name or a list of them, got True"),
        ({"checksum": ["a;b"]}, "tables.t.checksum: invalid column name"),
        ({"checksum": ["amount", "amount"]}, "tables.t.checksum: column 'amount' is listed twice"),
        ({"exclude": ["amount"], "checksum": ["amount"]}, "tables.t.checksum: column 'amount' is excluded"),
        ({"include": ["id"], "checksum": ["amount"]}, "tables.t.checksum: column 'amount' is not extracted"),
        (
            {"columns": {"amount": {"type": "string"}}, "checksum": ["amount"]},
            "tables.t.checksum: column 'amount' has the type override string",
        ),
    ],
)
def test_a_bad_checksum_setting_is_refused_naming_it(tmp_path: Path, body: dict[str, Any], expected: str) -> None:
    problems = _problems(tmp_path, body)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_decimal_override_may_be_checksummed(tmp_path: Path) -> None:
    body = {"columns": {"amount": {"type": "decimal(38,4)"}}, "checksum": ["amount"]}
    assert load_config(_tables(tmp_path, {"t": body}), env={}).tables["t"].checksum == ("amount",)


def test_the_keys_stream_has_no_checksum(tmp_path: Path) -> None:
    body = {"mode": "incremental", "cursor": "at", "primary_key": ["id"], "deletes": "keys", "checksum": ["qty"]}
    config = load_config(_tables(tmp_path, {"t": body}), env={})
    assert config.tables["t"].checksum == ("qty",)
    assert config.tables["t__keys"].checksum == ()


# ---------------------------------------------------------------------------------------------- manifest


def _manifest(**changes: Any) -> Manifest:
    manifest = Manifest(
        tenant=TENANT,
        table="ledger",
        date=DAY,
        mode="full",
        row_count=3,
        source_count=3,
        files=(PartFile(name="part-x-00000.parquet", rows=3, bytes=10, sha256="a" * 64),),
        schema=pa.schema([pa.field("qty", pa.int64())]),
        extracted_at=dt.datetime(2026, 11, 26, 1, tzinfo=dt.UTC),
        run_id="20261126T010000000000-abcdef01",
    )
    return dataclasses.replace(manifest, **changes)


def test_manifest_round_trip_with_and_without_checksums() -> None:
    plain = _manifest()
    assert "checksums" not in plain.to_json()  # a table without the option: the manifest is as before
    assert Manifest.from_json(plain.to_json()) == plain
    schema = pa.schema([pa.field("qty", pa.decimal128(38, 4)), pa.field("delta", pa.int64()), pa.field("n", pa.int8())])
    sums = {"qty": "-12345678901234567890.0100", "delta": None, "n": "0E-10"}
    summed = _manifest(schema=schema, checksums=sums)
    again = Manifest.from_json(summed.to_json())
    assert again == summed
    assert again.checksums == sums


@pytest.mark.parametrize("bad", [["1"], {"qty": 1}, {"qty": "1.5.2"}, {"qty": "NaN"}, {"qty": ""}, "1", {"nope": "1"}])
def test_manifest_checksums_of_the_wrong_shape_are_refused(bad: object) -> None:
    body = json.loads(_manifest().to_json())
    body["checksums"] = bad
    with pytest.raises(ManifestFormatError, match="checksums"):
        Manifest.from_json(json.dumps(body))


# --------------------------------------------------------------------------------------- helpers (pure)


def test_source_text_is_exact_and_refuses_floats_and_non_numbers() -> None:
    assert checksums.source_text("12345.6700") == "12345.6700"
    assert checksums.source_text(".5") == "0.5"  # Oracle's rendering of a NUMBER
    assert checksums.source_text(-3) == "-3"
    assert checksums.source_text(Decimal("-0.10")) == "-0.10"
    assert checksums.source_text(None) is None
    for bad in (1.5, "NaN", "abc", "Infinity"):
        with pytest.raises((TypeError, ValueError)):
            checksums.source_text(bad)


def test_compare_is_exact_and_names_everything() -> None:
    source = {"qty": "10.50", "delta": None}
    assert checksums.compare(TENANT, "ledger", DAY, source, [Decimal("10.5"), None]) == source
    with pytest.raises(VerificationError) as caught:
        checksums.compare(TENANT, "ledger", DAY, source, [Decimal("10.51"), None])
    text = str(caught.value)
    for part in ("tenant 'shop'", "table 'ledger'", "2026-11-25", "'qty'", "tables.ledger.checksum", "10.50", "10.51"):
        assert part in text
    with pytest.raises(VerificationError, match="source sum NULL, loaded sum 0"):
        checksums.compare(TENANT, "ledger", DAY, {"delta": None}, [Decimal(0)])


def test_warehouse_sums_quote_names_and_widen_integers() -> None:
    schema = pa.schema([pa.field("Qty", pa.int64()), pa.field('we"ird', pa.decimal128(12, 2))])
    manifest = _manifest(schema=schema, checksums={"Qty": "1", 'we"ird': "2.00"})
    assert checksums.warehouse_sums(manifest) == 'sum(CAST("qty" AS DECIMAL(38, 0))), sum("we""ird")'


@pytest.mark.parametrize(
    ("arrow_type", "source_type", "sqlite", "refused"),
    [
        (pa.int64(), sa.BigInteger(), False, None),
        (pa.int8(), sa.SmallInteger(), True, None),
        (pa.decimal128(12, 2), sa.Numeric(12, 2), False, None),
        (pa.float64(), sa.Float(), False, "floating point"),
        (pa.decimal128(38, 10), sa.Float(), False, "floating point"),  # Oracle FLOAT(b): refused as a float
        (pa.string(), sa.Numeric(65, 30), False, "not an integer or exact decimal"),
        (pa.decimal128(12, 2), sa.Numeric(12, 2), True, "SQLite decimal"),
        (pa.bool_(), sa.Boolean(), False, "not an integer or exact decimal"),
    ],
)
def test_refusal(
    arrow_type: pa.DataType, source_type: sa.types.TypeEngine[Any], sqlite: bool, refused: str | None
) -> None:
    reason = checksums.refusal(arrow_type, source_type, sqlite=sqlite)
    assert reason is None if refused is None else refused in (reason or "")


# ------------------------------------------------------------------------------------- local pipeline


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """One SQLite tenant: ledger (full; checksum qty, delta; a REAL column `rate`) and moves (incremental)."""
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, qty INTEGER, delta BIGINT, rate REAL)")
        conn.executemany("INSERT INTO ledger VALUES (?, ?, ?, ?)", LEDGER)
        conn.execute("CREATE TABLE moves (id INTEGER PRIMARY KEY, qty INTEGER, moved_at TIMESTAMP)")
        conn.executemany("INSERT INTO moves VALUES (?, ?, ?)", MOVES)
    conn.close()
    _configure(tmp_path, monkeypatch, path, TABLES)
    yield path
    clear_marker_cache()


def _configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: Path, tables: dict[str, Any]) -> None:
    configure_local(tmp_path, monkeypatch, tenant=TENANT, source=path, tables=tables)


def _load(table: str, date: dt.date = DAY) -> LoadIceberg:
    return LoadIceberg(tenant=TENANT, table=table, date=date)


def _warehouse() -> DuckDBWarehouse:
    return DuckDBWarehouse.from_settings(get_config().settings)


def _markers(table: str, date: dt.date = DAY) -> list[Any]:
    return [m for m in _warehouse().markers(TENANT, date) if m.table == table]


def _read_manifest(table: str, date: dt.date = DAY) -> Manifest:
    return Lake.from_settings(get_config().settings).read_manifest(TENANT, table, date)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every log record of the process (Luigi's own logging setup keeps pytest's caplog from seeing them)."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("mozart_luigi")  # not the root: luigi's logging_conf_file replaces its handlers
    logger.addHandler(handler)
    before = logger.level
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(before)


def _texts(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() + (f" {r.exc_info[1]}" if r.exc_info else "") for r in records]


def test_the_sums_are_the_sources_and_the_load_checks_them(source: Path, records: list[logging.LogRecord]) -> None:
    result = build(_load("ledger"), _load("moves"))
    assert result.scheduling_succeeded, result.summary_text
    with sqlite3.connect(source) as conn:
        qty, delta = conn.execute("SELECT sum(qty), sum(delta) FROM ledger").fetchone()
        (window,) = conn.execute("SELECT sum(qty) FROM moves WHERE moved_at < ?", [f"{DAY} 23:59:59.999"]).fetchone()
    conn.close()
    assert (qty, delta, window) == (-2, -3, 6)  # negative, and 64-bit partial sums that cancel out
    assert _read_manifest("ledger").checksums == {"qty": "-2", "delta": "-3"}
    assert _read_manifest("moves").checksums == {"qty": "6"}  # the day's window only, not the next day's row
    (marker,) = _markers("ledger")
    assert marker.details["checksums"] == {"qty": "-2", "delta": "-3"}
    assert "checksums pass tenant=shop table=ledger date=2026-11-25 sum(delta)=-3 sum(qty)=-2" in "\n".join(
        _texts(records)
    )
    loaded = _warehouse().query(
        'SELECT sum(qty), sum(CAST(delta AS DECIMAL(38, 0))) FROM "shop"."ledger" WHERE _mozart_date = ?', [DAY]
    )
    assert loaded == [(-2, Decimal(-3))]


def test_an_empty_day_has_null_sums_and_loads(source: Path) -> None:
    empty = dt.date(2026, 1, 1)
    assert build(_load("moves", empty)).scheduling_succeeded
    assert _read_manifest("moves", empty).checksums == {"qty": None}
    assert _markers("moves", empty)[0].details["checksums"] == {"qty": None}


def test_a_value_changed_between_source_and_load_fails_the_load_without_marker(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that changes one value (what the checksum is for: a conversion bug, a truncation) writes
    parts whose row count and SHA-256 agree with the manifest; only the sums tell. The load refuses the day
    naming tenant, table, date, column and both sums: no marker, the DuckDB transaction rolled back."""
    real = Snapshot.to_batch

    def off_by_one(self: Snapshot, rows: Any, *args: Any) -> pa.RecordBatch:
        batch = real(self, rows, *args)
        position = batch.schema.get_field_index("qty")
        qty = batch.column(position).to_pylist()
        qty[0] += 1
        return batch.set_column(position, "qty", pa.array(qty, pa.int64()))

    monkeypatch.setattr(Snapshot, "to_batch", off_by_one)
    load = _load("ledger")
    assert build(load.requires()).scheduling_succeeded
    assert _read_manifest("ledger").checksums == {"qty": "-2", "delta": "-3"}  # the source's, in the snapshot
    with pytest.raises(VerificationError) as caught:
        load.run()
    assert str(caught.value) == (
        "tenant 'shop', table 'ledger': date 2026-11-25: checksum of column 'qty' (tables.ledger.checksum) "
        "differs: source sum -2, loaded sum -1; the marker is not written (rerun with: mozart rerun "
        "--tenant shop --table ledger --date 2026-11-25 --from-extract)"
    )
    assert not build(load).scheduling_succeeded  # through Luigi: the task fails
    assert _markers("ledger") == []
    assert _warehouse().count_partition(TENANT, "ledger", DAY) == 0  # rolled back with the check

    monkeypatch.setattr(Snapshot, "to_batch", real)  # the fault gone, a new extract: the load passes
    lake = Lake.from_settings(get_config().settings)
    lake.move_aside(lake.manifest_url(TENANT, "ledger", DAY), "invalid-test")
    assert build(_load("ledger")).scheduling_succeeded
    assert _markers("ledger")[0].details["checksums"] == {"qty": "-2", "delta": "-3"}


def test_a_manifest_whose_sums_differ_from_the_day_is_refused(source: Path) -> None:
    """The other way round: the manifest's recorded sum changed (it is input, not truth); the day, loaded from
    verified parts, does not add up to it."""
    assert build(_load("moves").requires()).scheduling_succeeded
    lake = Lake.from_settings(get_config().settings)
    manifest = _read_manifest("moves")
    url = lake.manifest_url(TENANT, "moves", DAY)
    lake.move_aside(url, "tampered")
    lake.publish_manifest(dataclasses.replace(manifest, checksums={"qty": "7"}))
    assert not build(_load("moves")).scheduling_succeeded
    assert _markers("moves") == []


def test_a_float_or_missing_column_fails_the_extract_naming_the_setting(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for column, why in (("rate", "floating point"), ("nope", "does not exist")):
        _configure(tmp_path, monkeypatch, source, {"ledger": {"mode": "full", "checksum": [column]}})
        config = get_config()
        connector = connector_for(config.tenant(TENANT))
        with pytest.raises(ConfigError) as caught, connector.snapshot(config.table(TENANT, "ledger")):
            pass
        connector.dispose()
        text = str(caught.value)
        assert "tables.ledger.checksum" in text and f"column '{column}'" in text and why in text, text
        assert "tenant 'shop', table 'ledger'" in text


def test_validate_connect_checks_the_checksum_columns(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mozart_luigi.connect_check import check_all

    _configure(tmp_path, monkeypatch, source, {"ledger": {"mode": "full", "checksum": ["qty", "rate", "nope"]}})
    (check,) = check_all(get_config())
    assert not check.ok
    assert "tables.ledger.checksum: column 'rate' (REAL) is a floating point column" in check.detail
    assert "tables.ledger.checksum: column 'nope' not found in ledger" in check.detail
    assert "'qty'" not in check.detail
    _configure(tmp_path, monkeypatch, source, TABLES)
    assert all(c.ok for c in check_all(get_config()))


# ---------------------------------------------------------------------------------- compiled, per dialect


def _sums_query(dialect: str) -> str:
    from sqlalchemy.dialects import mysql, oracle, postgresql, sqlite

    table = sa.table("Orders", sa.column("Amount"), sa.column("qty"), sa.column("at"), schema="sales")
    start = sa.bindparam("start", dt.datetime(2026, 11, 25), type_=sa.DateTime)
    query = sa.select(*checksums.source_sums([table.c.Amount, table.c.qty])).where(table.c.at >= start)
    engine = {"postgresql": postgresql, "mysql": mysql, "oracle": oracle, "sqlite": sqlite}[dialect].dialect()
    return " ".join(str(query.compile(dialect=engine)).split())


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (
            "postgresql",
            'SELECT CAST(sum(sales."Orders"."Amount") AS VARCHAR(4000)) AS mozart_sum_0, CAST(sum(sales."Orders".qty) '
            'AS VARCHAR(4000)) AS mozart_sum_1 FROM sales."Orders" WHERE sales."Orders".at >= %(start)s',
        ),
        (
            "mysql",
            "SELECT CAST(sum(sales.`Orders`.`Amount`) AS CHAR(4000)) AS mozart_sum_0, CAST(sum(sales.`Orders`.qty) "
            "AS CHAR(4000)) AS mozart_sum_1 FROM sales.`Orders` WHERE sales.`Orders`.at >= %s",
        ),
        (
            "oracle",
            'SELECT CAST(sum(sales."Orders"."Amount") AS VARCHAR2(4000 CHAR)) AS mozart_sum_0, '
            'CAST(sum(sales."Orders".qty) AS VARCHAR2(4000 CHAR)) AS mozart_sum_1 FROM sales."Orders" '
            'WHERE sales."Orders".at >= :"start"',  # start is an Oracle reserved word: quoted
        ),
        (
            "sqlite",
            'SELECT CAST(sum(sales."Orders"."Amount") AS VARCHAR(4000)) AS mozart_sum_0, CAST(sum(sales."Orders".qty) '
            'AS VARCHAR(4000)) AS mozart_sum_1 FROM sales."Orders" WHERE sales."Orders".at >= ?',
        ),
    ],
)
def test_the_source_sums_compile_quoted_and_bound_for_every_dialect(dialect: str, expected: str) -> None:
    assert _sums_query(dialect) == expected


def test_the_native_readers_take_the_sums_with_the_count() -> None:
    from mozart_luigi.connectors import _native_mysql, _native_pg
    from mozart_luigi.connectors._native_common import Where

    table = sa.table("orders", sa.column("id"), sa.column("amount"), sa.column("at"))
    start = sa.bindparam("start", dt.datetime(2026, 11, 25), type_=sa.DateTime)
    query = sa.select(table.c.id, table.c.amount).select_from(table).where(table.c.at >= start)
    sums = checksums.source_sums([table.c.amount])
    _, count_sql, settings = _native_pg.compile_query(query, sums)
    assert " ".join(count_sql.split()) == (
        "SELECT count(*) AS count_1, CAST(sum(orders.amount) AS VARCHAR(4000)) AS mozart_sum_0 FROM orders "
        "WHERE orders.at >= (SELECT CAST(current_setting('mozart.p0') AS TIMESTAMP WITHOUT TIME ZONE) AS "
        "current_setting_1)"
    )
    assert settings == [("mozart.p0", "2026-11-25T00:00:00")]
    where = Where(sa.make_url("mysql://u@h/db"), TENANT, "orders")
    sql, kinds, _ = _native_mysql.rewrite(_native_mysql.inline_dates(query, where), where, sums)
    assert len(kinds) == 2
    assert " ".join(sql.split()).startswith(
        "SELECT STRAIGHT_JOIN mozart_q.mozart_c0, mozart_q.mozart_c1, mozart_c.mozart_sum_0, mozart_c.mozart_n "
        "FROM (SELECT count(*) AS mozart_n, CAST(sum(orders.amount) AS CHAR(4000)) AS mozart_sum_0 FROM orders "
        "WHERE orders.at >= '2026-11-25 00:00:00') AS mozart_c"
    )


# ------------------------------------------------------------------------------------------------ audit


def test_audit_finds_a_value_updated_in_place_by_its_sum(source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An update that keeps the row in its day (the cursor unchanged) leaves the count as loaded; the sums
    tell. The finding names the column and both sums; ``status`` shows the day stale."""
    from mozart_luigi import cli
    from mozart_luigi.audit import audit
    from mozart_luigi.status_grid import STALE, build_matrix

    assert build(_load("moves")).scheduling_succeeded
    assert audit(get_config(), DAY, DAY).ok  # as loaded
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE moves SET qty = qty + 5 WHERE id = 1")
    conn.close()
    result = audit(get_config(), DAY, DAY)
    (finding,) = result.findings
    assert (finding.table, finding.date, finding.loaded_rows, finding.source_rows) == ("moves", DAY, 2, 2)
    assert finding.sums == (("qty", "6", "11"),)
    assert finding.to_dict()["checksums"] == {"qty": {"loaded": "6", "source": "11"}}
    (cell,) = [c for c in build_matrix(get_config(), DAY, DAY).cells if c.table == "moves"]
    assert cell.state == STALE and "sum(qty) 11 now, 6 loaded" in (cell.error or "")
    assert cli.main(["audit", "--from", DAY.isoformat(), "--to", DAY.isoformat()]) == 1
    assert "shop.moves 2026-11-25: loaded 2, source now 2, sum(qty) loaded 6, source now 11" in capsys.readouterr().out
