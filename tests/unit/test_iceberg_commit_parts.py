"""Pure parts of the Iceberg load: the memoised transaction metadata and the footer read from a ranged GET."""

from __future__ import annotations

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
from mozart_luigi.warehouse.iceberg import _FOOTER_GUESS, _footer, _Transaction


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
