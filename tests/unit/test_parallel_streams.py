"""Parallel streams without a server: the tables.yaml options, the key-range split, the shared part numbering,
the stream runner and the resources (the stack tests in tests/integration/test_extract_parallel.py read)."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import mysql, postgresql

from mozart_luigi.config import SourceConfig, TableConfig, TenantConfig, load_config, reset_config_cache
from mozart_luigi.connectors.parallel import (
    SNAPSHOT_ID_RE,
    ParallelRead,
    Stream,
    split_points,
    stream_count,
    stream_filters,
)
from mozart_luigi.errors import ConfigError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import PartFile
from mozart_luigi.parquet import PartWriter
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.tasks.streams import write_streams

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 25)
TENANTS = "tenants:\n  acme:\n    source: {kind: sqlite, path: x.sqlite}\n    max_connections: 4\n"


# ----------------------------------------------------------------------------------------------- config
def load_tables(tmp_path: Path, tables: dict[str, object]) -> dict[str, TableConfig]:
    (tmp_path / "tenants.yaml").write_text(TENANTS, encoding="utf-8")
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}), encoding="utf-8")
    return dict(load_config(tmp_path, env={}).tables)


def problems(tmp_path: Path, tables: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_tables(tmp_path, tables)
    return [str(p) for p in info.value.problems]


def test_parallel_defaults_to_one_stream_and_takes_its_options(tmp_path: Path) -> None:
    tables = load_tables(
        tmp_path,
        {
            "plain": {"mode": "full"},
            "big": {"mode": "full", "primary_key": "id", "parallel": 4},
            "other": {"mode": "full", "parallel": 16, "split_by": "seq", "parallel_min_rows": 0},
        },
    )
    assert (tables["plain"].parallel, tables["plain"].split_column) == (1, None)
    assert (tables["big"].parallel, tables["big"].split_column, tables["big"].parallel_min_rows) == (4, "id", 1_000_000)
    assert (tables["other"].parallel, tables["other"].split_column, tables["other"].parallel_min_rows) == (16, "seq", 0)


@pytest.mark.parametrize(
    ("spec", "key", "text"),
    [
        ({"parallel": 0}, "parallel", "must be 1 to 16 streams, got 0"),
        ({"parallel": 17}, "parallel", "must be 1 to 16 streams, got 17"),
        ({"parallel": "four"}, "parallel", "must be a whole number of streams"),
        ({"parallel": True}, "parallel", "must be a whole number of streams"),
        ({"parallel": 2.5}, "parallel", "must be a whole number of streams"),
        ({"parallel": 2}, "parallel", "set split_by, or a single-column primary_key"),
        ({"parallel": 2, "primary_key": ["a", "b"]}, "parallel", "set split_by, or a single-column primary_key"),
        ({"split_by": "id"}, "split_by", "only applies with parallel: 2 or more"),
        ({"parallel_min_rows": 5}, "parallel_min_rows", "only applies with parallel: 2 or more"),
        ({"parallel": 2, "split_by": "id", "parallel_min_rows": -1}, "parallel_min_rows", "must be 0 to"),
        ({"parallel": 2, "split_by": "bad;name"}, "split_by", "invalid column name"),
        (
            {"parallel": 2, "split_by": "id", "mode": "incremental", "cursor": "at"},
            "parallel",
            "only full tables are read in parallel streams",
        ),
    ],
)
def test_parallel_options_are_refused_naming_the_key(
    tmp_path: Path, spec: dict[str, object], key: str, text: str
) -> None:
    found = problems(tmp_path, {"t": {"mode": "full", **spec}})
    assert any(f"tables.t.{key}" in p and text in p for p in found), found


def test_every_parallel_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, {"a": {"parallel": 99}, "b": {"split_by": "id"}, "c": {"parallel": 3}})
    for key in ("tables.a.parallel", "tables.b.split_by", "tables.c.parallel"):
        assert sum(key in p for p in found) == 1, found
    assert len(found) == 3


# ----------------------------------------------------------------------------------------------- ranges
@pytest.mark.parametrize(
    ("low", "high", "streams"), [(1, 10, 3), (1, 2_000_000, 4), (-50, 7, 16), (5, 6, 4), (1, 3, 3)]
)
def test_split_points_cut_the_range_into_disjoint_covering_ranges(low: int, high: int, streams: int) -> None:
    points = split_points(low, high, streams)
    assert list(points) == sorted(set(points)) and all(low < p <= high for p in points)
    assert len(points) == min(streams, high - low + 1) - 1
    edges = [low, *points, high + 1]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    assert sum(widths) == high - low + 1 and max(widths) - min(widths) <= 1


def test_split_points_of_one_stream_or_one_value_are_none() -> None:
    assert split_points(1, 100, 1) == () and split_points(7, 7, 4) == ()


def test_stream_filters_take_every_key_once_and_nulls_in_the_first() -> None:
    key = sa.column("id")
    filters = stream_filters(key, (10, 20), nullable=True)
    rendered = [str(f.compile(dialect=postgresql.dialect())) for f in filters]
    assert rendered == [
        "id < %(split_high)s OR id IS NULL",
        "id >= %(split_low)s AND id < %(split_high)s",
        "id >= %(split_low)s",
    ]
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (NULL), (-3), (9), (10), (19), (20), (99)")
        table = sa.table("t", sa.column("id"))
        seen = [
            sorted(r[0] if r[0] is not None else -999 for r in conn.execute(sa.select(table.c.id).where(f)))
            for f in stream_filters(table.c.id, (10, 20), nullable=True)
        ]
    assert seen == [[-999, -3, 9], [10, 19], [20, 99]]


def test_stream_filters_for_a_reader_that_cannot_bind_are_checked_integer_literals() -> None:
    from mozart_luigi.connectors.parallel import _integer_literal

    filters = stream_filters(sa.column("id"), (5,), nullable=False, bound=_integer_literal)
    compiled = [f.compile(dialect=mysql.dialect()) for f in filters]
    assert [str(c) for c in compiled] == ["id < 5", "id >= 5"] and not any(c.binds for c in compiled)
    with pytest.raises(TypeError):
        _integer_literal("split_high", "5; DROP TABLE t")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _integer_literal("split_high", True)


def test_snapshot_ids_are_checked_before_they_are_written_into_sql() -> None:
    assert SNAPSHOT_ID_RE.fullmatch("00000003-00000E82-1")
    assert SNAPSHOT_ID_RE.fullmatch("00000003-0000001B")
    for bad in ("00000003-00000E82-1'; DROP TABLE x; --", "", "abc", "0000000G-1-1"):
        assert not SNAPSHOT_ID_RE.fullmatch(bad)


# --------------------------------------------------------------------------------------- streams, slots
def tenant(max_connections: int) -> TenantConfig:
    return TenantConfig(
        id="acme", source=SourceConfig(kind="sqlite", path="x"), tables=("t",), max_connections=max_connections
    )


@pytest.mark.parametrize(
    ("parallel", "max_connections", "streams"), [(1, 8, 1), (4, 8, 4), (4, 5, 4), (4, 4, 3), (4, 2, 1), (16, 3, 2)]
)
def test_streams_and_their_coordinator_fit_in_max_connections(
    parallel: int, max_connections: int, streams: int
) -> None:
    table = TableConfig(name="t", source_name="t", parallel=parallel, split_by="id")
    assert stream_count(tenant(max_connections), table) == streams


def test_resources_count_every_stream_and_the_coordinator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = {"small": {"mode": "full"}, "big": {"mode": "full", "primary_key": "id", "parallel": 3}}
    (tmp_path / "tenants.yaml").write_text(TENANTS, encoding="utf-8")
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump({"tables": tables}), encoding="utf-8")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(tmp_path))
    reset_config_cache()
    try:
        small = ExtractTable(tenant="acme", table="small", date=DAY).resources
        big = ExtractTable(tenant="acme", table="big", date=DAY).resources
    finally:
        reset_config_cache()
    assert len(small) == 1 and set(small.values()) == {1}
    assert len(big) == 4 and set(big.values()) == {1}, "3 streams + the coordinator, one slot each"
    assert set(big) == {f"db_acme_{i}" for i in range(4)}


# --------------------------------------------------------------------------------------- writing streams
SCHEMA = pa.schema([("id", pa.int64())])
STAMP = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def batches(start: int, stop: int, size: int) -> Iterator[pa.RecordBatch]:
    for low in range(start, stop, size):
        yield pa.record_batch([pa.array(range(low, min(stop, low + size)))], schema=SCHEMA)


def writer_factory(lake: Lake, url: str):
    def make(next_part, on_part) -> PartWriter:
        return PartWriter(
            lake, url, "run1", SCHEMA, date=DAY, extracted_at=STAMP, part_rows=7, on_part=on_part, next_part=next_part
        )

    return make


def test_streams_write_parts_numbered_together_and_on_part_gets_each_number(tmp_path: Path) -> None:
    lake = Lake(tmp_path.as_uri())
    url = f"{lake.url}/t"
    read = ParallelRead(
        count=100,
        streams=[Stream(0, batches(0, 40, 3)), Stream(1, batches(40, 41, 3)), Stream(2, batches(41, 100, 5))],
        reader="test",
        split_by="id",
    )
    called: list[tuple[int, str, int]] = []
    files = write_streams(read, writer_factory(lake, url), on_part=lambda n, p: called.append((n, p.name, p.rows)))
    assert [f.name for f in files] == [f"part-run1-{n:05d}.parquet" for n in range(len(files))]
    assert sorted(called) == [(n, f.name, f.rows) for n, f in enumerate(files)]
    ids = [i for f in files for i in pq.read_table(tmp_path / "t" / f.name).column("id").to_pylist()]
    assert sorted(ids) == list(range(100)) and sum(f.rows for f in files) == 100


def test_a_stream_with_no_rows_writes_one_empty_typed_part(tmp_path: Path) -> None:
    lake = Lake(tmp_path.as_uri())
    read = ParallelRead(count=3, streams=[Stream(0, iter(())), Stream(1, batches(0, 3, 2))], reader="t", split_by="id")
    files = write_streams(read, writer_factory(lake, f"{lake.url}/t"))
    assert sorted(f.rows for f in files) == [0, 3] and len(files) == 2


def test_a_failing_stream_stops_the_others_and_its_error_is_raised(tmp_path: Path) -> None:
    lake = Lake(tmp_path.as_uri())
    release = threading.Event()

    def failing() -> Iterator[pa.RecordBatch]:
        yield from batches(0, 5, 5)
        release.set()
        raise RuntimeError("the server went away")

    def endless() -> Iterator[pa.RecordBatch]:
        release.wait(10)
        low = 1000
        while True:
            yield from batches(low, low + 5, 5)
            low += 5

    read = ParallelRead(count=0, streams=[Stream(0, failing()), Stream(1, endless())], reader="t", split_by="id")
    with pytest.raises(RuntimeError, match="went away"):
        write_streams(read, writer_factory(lake, f"{lake.url}/t"), every_seconds=0.05)


def test_part_writer_numbers_from_a_shared_counter(tmp_path: Path) -> None:
    lake = Lake(tmp_path.as_uri())
    counter = itertools.count(5)
    seen: list[tuple[int, PartFile]] = []
    writer = PartWriter(
        lake,
        f"{lake.url}/t",
        "run1",
        SCHEMA,
        date=DAY,
        extracted_at=STAMP,
        part_rows=4,
        next_part=lambda: next(counter),
        on_part=lambda n, p: seen.append((n, p)),
    )
    with writer:
        for batch in batches(0, 10, 10):
            writer.write(batch)
        files = writer.close()
    assert [f.name for f in files] == [f"part-run1-{n:05d}.parquet" for n in (5, 6, 7)]
    assert [(n, p.name) for n, p in seen] == [(5, files[0].name), (6, files[1].name), (7, files[2].name)]


def test_a_local_table_with_parallel_is_read_in_one_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite has no shared snapshot to hand to streams: the option changes nothing there."""
    source = tmp_path / "s.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, h TEXT)")
        db.executemany("INSERT INTO big VALUES (?, ?)", [(i, str(i)) for i in range(1, 51)])
    config = tmp_path / "config"
    config.mkdir()
    tenants = {"tenants": {"demo": {"source": {"kind": "sqlite", "path": str(source)}, "max_connections": 4}}}
    tables = {"tables": {"big": {"mode": "full", "primary_key": "id", "parallel": 3, "parallel_min_rows": 0}}}
    (config / "tenants.yaml").write_text(yaml.safe_dump(tenants), encoding="utf-8")
    (config / "tables.yaml").write_text(yaml.safe_dump(tables), encoding="utf-8")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.delenv("MOZART_LAKE_URL", raising=False)
    reset_config_cache()
    try:
        task = ExtractTable(tenant="demo", table="big", date=DAY)
        task.run()
        manifest = task.output().read()
    finally:
        reset_config_cache()
    assert manifest.row_count == manifest.source_count == 50 and "streams" not in manifest.details
