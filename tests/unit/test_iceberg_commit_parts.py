"""Pure parts of the Iceberg load: the memoised transaction metadata and the footer read from a ranged GET."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.table import Transaction
from pyiceberg.types import LongType, NestedField

from mozart_luigi.errors import LoadError
from mozart_luigi.manifest import PartFile
from mozart_luigi.objectstore import ObjectChangedError
from mozart_luigi.warehouse.iceberg import _FOOTER_GUESS, Prestage, _footer, _Transaction, prestaged_url


@pytest.fixture
def table(tmp_path: Path):
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh")
    catalog.create_namespace("ns")
    return catalog.create_table(("ns", "t"), schema=Schema(NestedField(1, "id", LongType(), required=False)))


def test_transaction_metadata_is_computed_once_per_state_and_equals_pyicebergs(table) -> None:
    tx = _Transaction(table)
    first = tx.table_metadata
    assert tx.table_metadata is first  # the same state: reused, not deep-copied again
    assert first == Transaction(table).table_metadata
    tx.set_properties(mozart="yes")
    changed = tx.table_metadata
    assert changed is not first and changed.properties["mozart"] == "yes"
    plain = Transaction(table)
    plain.set_properties(mozart="yes")
    volatile = {"last_updated_ms"}
    assert changed.model_dump(exclude=volatile) == plain.table_metadata.model_dump(exclude=volatile)
    assert "mozart" not in first.properties  # the earlier state is not changed under its holder


class _Objects:
    def __init__(self, data: bytes | None) -> None:
        self.data, self.calls = data, []

    def tail(self, url: str, length: int) -> bytes | None:
        self.calls.append(length)
        return None if self.data is None else self.data[-length:]


def _lake(data: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(objects=_Objects(data))


def _parquet(columns: int, rows: int) -> bytes:
    table = pa.table({f"c{i:04d}_{'x' * 40}": pa.array(range(rows), pa.int64()) for i in range(columns)})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=max(1, rows // 4))
    return sink.getvalue()


def test_a_small_footer_is_read_with_one_ranged_get() -> None:
    lake = _lake(_parquet(3, 1000))
    meta = _footer(lake, "s3://b/k.parquet")
    assert (meta.num_rows, meta.num_columns, meta.num_row_groups) == (1000, 3, 4)
    assert lake.objects.calls == [_FOOTER_GUESS]


def test_a_footer_larger_than_the_guess_takes_a_second_exact_get() -> None:
    data = _parquet(400, 40)
    needed = int.from_bytes(data[-8:-4], "little") + 8
    assert needed > _FOOTER_GUESS  # the case under test
    lake = _lake(data)
    meta = _footer(lake, "s3://b/k.parquet")
    assert (meta.num_rows, meta.num_columns) == (40, 400)
    assert lake.objects.calls == [_FOOTER_GUESS, needed]


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"PAR1",
        b"not a parquet file at all",
        _parquet(2, 10)[:-1],
        b"x" * 100 + (50).to_bytes(4, "little") + b"PAR1",
    ],
)
def test_what_is_not_a_parquet_file_is_a_load_error_naming_it(data: bytes | None) -> None:
    with pytest.raises(LoadError, match=r"s3://b/bad\.parquet"):
        _footer(_lake(data), "s3://b/bad.parquet")


# ------------------------------------------------------------------------------------- Prestage
class _CopyingObjects:
    """The S3 calls Prestage makes, in memory: ``copy_if_match`` honours the ETag condition."""

    def __init__(self, objects: dict[str, tuple[bytes, str]], fail: set[str] = frozenset()) -> None:
        self.objects, self.fail, self.deleted = objects, fail, []

    def copy_if_match(self, source: str, target: str, etag: str):
        if target in self.fail or self.objects.get(source, (b"", ""))[1] != etag:
            raise ObjectChangedError(f"{source} is not {etag}")
        self.objects[target] = self.objects[source]
        return SimpleNamespace(etag=etag)

    def delete(self, url: str) -> None:
        self.deleted.append(url)
        self.objects.pop(url, None)


def _prestage(objects: _CopyingObjects) -> Prestage:
    lake = SimpleNamespace(objects=objects)
    return Prestage(lake, "s3://wh/t/", folder="s3://raw", date=dt.date(2026, 11, 25), run_id="R")  # type: ignore[arg-type]


def _part(n: int, rows: int = 1, etag: str | None = "e") -> PartFile:
    return PartFile(name=f"part-R-{n:05d}.parquet", rows=rows, bytes=10, sha256="s", etag=etag)


def test_prestaged_names_cannot_be_taken_for_the_loads_own_copies() -> None:
    url = prestaged_url("s3://wh/t/", dt.date(2026, 11, 25), "R", 3)
    assert url == "s3://wh/t/data/_mozart_date=2026-11-25/R-00003-x.parquet"
    assert not any(c in "0123456789abcdef" for c in url.rsplit("-", 1)[1].removesuffix(".parquet"))


def test_prestage_copies_non_empty_parts_and_a_failed_copy_is_only_logged(caplog) -> None:
    objects = _CopyingObjects(
        {
            "s3://raw/part-R-00000.parquet": (b"a", "e"),
            "s3://raw/part-R-00001.parquet": (b"b", "other"),
            "s3://raw/part-R-00003.parquet": (b"d", "e"),
        }
    )
    stage = _prestage(objects)
    stage.submit(0, _part(0))
    stage.submit(1, _part(1))  # the raw part changed since it was written: refused
    stage.submit(2, _part(2, rows=0))  # an empty part is never registered: not copied
    stage.submit(3, _part(3, etag=None))  # no ETag to hold the copy to: not copied
    assert stage.finish() == 1
    day = "s3://wh/t/data/_mozart_date=2026-11-25"
    assert sorted(k for k in objects.objects if k.startswith(day)) == [f"{day}/R-00000-x.parquet"]
    assert "prestage of s3://wh/t/data/_mozart_date=2026-11-25/R-00001-x.parquet failed" in caplog.text


def test_discard_deletes_every_copy_it_started() -> None:
    objects = _CopyingObjects(
        {"s3://raw/part-R-00000.parquet": (b"a", "e"), "s3://raw/part-R-00001.parquet": (b"b", "e")}
    )
    stage = _prestage(objects)
    stage.submit(0, _part(0))
    stage.submit(1, _part(1))
    stage.discard()
    day = "s3://wh/t/data/_mozart_date=2026-11-25"
    assert objects.deleted == [f"{day}/R-00000-x.parquet", f"{day}/R-00001-x.parquet"]
    assert [k for k in objects.objects if k.startswith("s3://wh/")] == []


@pytest.mark.parametrize(
    "trouble", [RuntimeError("catalog says no"), ConnectionError("refused"), LoadError("bad answer")]
)
def test_any_catalog_trouble_means_no_prestage_never_a_failed_extract(monkeypatch, caplog, trouble) -> None:
    from mozart_luigi.settings import Settings
    from mozart_luigi.warehouse.iceberg import IcebergLoader

    def table(self, tenant: str, table: str):
        raise trouble

    monkeypatch.setattr(IcebergLoader, "table", table)
    caplog.set_level("INFO", logger="mozart_luigi.warehouse.iceberg")
    lake = SimpleNamespace(scheme="s3")
    loader = IcebergLoader(Settings(profile="stack", lake_url="s3://raw"))
    assert loader.prestage(lake, tenant="acme", table="orders", date=dt.date(2026, 11, 25), run_id="R") is None
    assert "tenant acme table orders: no prestage" in caplog.text


def test_no_prestage_where_it_is_off_or_the_lake_is_local(monkeypatch) -> None:
    from mozart_luigi.settings import Settings
    from mozart_luigi.warehouse.iceberg import IcebergLoader

    monkeypatch.setattr(IcebergLoader, "table", lambda *_: pytest.fail("the catalog was asked"))
    day = dt.date(2026, 11, 25)
    off = IcebergLoader(Settings(profile="stack", lake_url="s3://raw", prestage=False))
    assert off.prestage(SimpleNamespace(scheme="s3"), tenant="a", table="t", date=day, run_id="R") is None
    local = IcebergLoader(Settings(profile="stack", lake_url="file:///x"))
    assert local.prestage(SimpleNamespace(scheme="file"), tenant="a", table="t", date=day, run_id="R") is None
