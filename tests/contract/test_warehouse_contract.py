"""The Warehouse contract, run over DuckDB (always) and Trino + Iceberg (when the stack is up).

Manifests and Parquet parts are written directly with pyarrow through ``Lake``/``Manifest`` (no extract).
Each test uses its own tenant schema(s) ``t_<hex>`` and, on S3, its own lake prefix; all are dropped after.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mozart_luigi.config import load_config
from mozart_luigi.errors import ExtractBrokenError, SchemaDriftError, TypeMappingError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, PartFile, new_run_id
from mozart_luigi.parquet import PartWriter
from mozart_luigi.settings import Settings
from mozart_luigi.warehouse import Marker, Warehouse
from mozart_luigi.warehouse.base import DayLoad
from mozart_luigi.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.contract
DAY = dt.date(2026, 11, 28)
DAY2 = dt.date(2026, 11, 27)
UTC = dt.UTC
EXTRACTED_AT = dt.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=UTC)


@dataclass
class Env:
    """A warehouse, a lake, and the tenants a test created (dropped afterwards)."""

    kind: str
    warehouse: Warehouse
    lake: Lake
    tenants: list[str] = field(default_factory=list)

    def tenant(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.tenants.append(name)
        return name

    def publish(
        self,
        tenant: str,
        table: str,
        date: dt.date,
        parts: list[pa.Table],
        *,
        schema: pa.Schema | None = None,
        run_id: str | None = None,
    ) -> Manifest:
        """Write parts (with the extract's own writer: Iceberg-ready, checksummed) then the manifest."""
        run_id = run_id or new_run_id()
        schema = schema or parts[0].schema
        folder = self.lake.date_url(tenant, table, date)
        files: tuple[PartFile, ...] = ()
        if parts:
            writer = PartWriter(self.lake, folder, run_id, schema, date=date, extracted_at=EXTRACTED_AT)
            for part in parts:
                for batch in part.cast(schema).to_batches():
                    writer.write(batch)
                writer.rotate()
            files = writer.close()
        rows = sum(p.num_rows for p in parts)
        manifest = Manifest(
            tenant=tenant,
            table=table,
            date=date,
            mode="full",
            row_count=rows,
            source_count=rows,
            files=files,
            schema=schema,
            run_id=run_id,
            extracted_at=EXTRACTED_AT,
        )
        self.lake.write_manifest(manifest)
        return manifest

    def load(self, manifest: Manifest, task_id: str | None = None) -> int:
        marker = Marker(
            task_family="LoadIceberg",
            task_id=task_id or f"{manifest.tenant}-load",
            tenant=manifest.tenant,
            date=manifest.date,
            table=manifest.table,
        )
        self.warehouse.load_day(DayLoad(manifest, self.lake, marker))
        return self.warehouse.count_partition(manifest.tenant, manifest.table, manifest.date)

    def columns(self, tenant: str, table: str) -> dict[str, str]:
        rows = self.warehouse.query(  # type: ignore[attr-defined]
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [tenant, table],
        )
        return {name: kind.lower() for name, kind in rows}

    def rows(self, tenant: str, table: str, columns: str, date: dt.date) -> list[tuple]:
        sql = f'SELECT {columns} FROM "{tenant}"."{table}" WHERE _mozart_date = ? ORDER BY 1'
        return [tuple(r) for r in self.warehouse.query(sql, [date])]  # type: ignore[attr-defined]


@pytest.fixture(params=["duckdb", "trino"])
def env(request, tmp_path, repo_root) -> Iterator[Env]:
    if request.param == "duckdb":
        settings = Settings(duckdb_path=tmp_path / "warehouse.duckdb", lake_url=(tmp_path / "raw").as_uri())
        yield Env("duckdb", DuckDBWarehouse.from_settings(settings), Lake(settings.lake_url, settings))
        return
    request.getfixturevalue("stack_env")
    from mozart_luigi.warehouse.trino import TrinoWarehouse

    settings = load_config(repo_root / "config").settings
    lake = Lake(f"s3://raw/_test/{uuid.uuid4().hex}", settings)
    env = Env("trino", TrinoWarehouse.from_settings(settings, tenant="contract"), lake)
    yield env
    for tenant in env.tenants:
        env.warehouse.drop_tenant(tenant)  # type: ignore[attr-defined]
    _delete_tree(lake)


def _delete_tree(lake: Lake) -> None:
    lake.filesystem.delete_dir_contents(lake.fs_path(lake.url), missing_dir_ok=True)
    with contextlib.suppress(FileNotFoundError):  # nothing was ever written under it
        lake.filesystem.delete_dir(lake.fs_path(lake.url))


# ---------------------------------------------------------------------------------------------- data
def typed_table(n: int = 3, *, offset: int = 0) -> pa.Table:
    """One column per supported type, with edge values (max decimals, µs, time zones, binary)."""
    ids = list(range(offset, offset + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "small": pa.array([i % 100 for i in ids], pa.int16()),
            "qty": pa.array([i * 7 for i in ids], pa.int32()),
            "ratio": pa.array([i / 4 for i in ids], pa.float32()),
            "score": pa.array([i / 3 for i in ids], pa.float64()),
            "amount": pa.array([decimal.Decimal(f"{i}.{i % 100:02d}") for i in ids], pa.decimal128(10, 2)),
            "big": pa.array([decimal.Decimal("12345678901234567890123456789012.345678")] * n, pa.decimal128(38, 6)),
            "name": pa.array([f"name-{i} é ✓" for i in ids], pa.large_string()),
            "payload": pa.array([bytes([i % 256, 0, 255]) for i in ids], pa.binary()),
            "active": pa.array([i % 2 == 0 for i in ids], pa.bool_()),
            "born": pa.array([dt.date(1970, 1, 1) + dt.timedelta(days=i) for i in ids], pa.date32()),
            "at_local": pa.array([dt.datetime(2026, 11, 28, 23, 59, 59, 999999) for _ in ids], pa.timestamp("us")),
            "at_utc": pa.array(
                [dt.datetime(2026, 11, 28, 0, 0, 0, 1, tzinfo=UTC) for _ in ids], pa.timestamp("us", tz="UTC")
            ),
            "clock": pa.array([dt.time(13, 14, 15, 123456) for _ in ids], pa.time64("us")),
            "maybe": pa.array([None] * n, pa.string()),
        }
    )


def simple(ids: list[int], qty_type: pa.DataType | None = None, **extra: pa.Array) -> pa.Table:
    qty = pa.array([i * 10 for i in ids], qty_type or pa.int32())
    columns = {"id": pa.array(ids, pa.int64()), "qty": qty}
    return pa.table({**columns, **extra})


# --------------------------------------------------------------------------------------------- tests
EXPECTED_TYPES = {
    "trino": {
        "id": "bigint",
        "small": "integer",
        "qty": "integer",
        "ratio": "real",
        "score": "double",
        "amount": "decimal(10,2)",
        "big": "decimal(38,6)",
        "name": "varchar",
        "payload": "varbinary",
        "active": "boolean",
        "born": "date",
        "at_local": "timestamp(6)",
        "at_utc": "timestamp(6) with time zone",
        "clock": "time(6)",
        "maybe": "varchar",
        "_mozart_date": "date",
        "_mozart_extracted_at": "timestamp(6) with time zone",
    },
    "duckdb": {
        "id": "bigint",
        "small": "integer",
        "qty": "integer",
        "ratio": "float",
        "score": "double",
        "amount": "decimal(10,2)",
        "big": "decimal(38,6)",
        "name": "varchar",
        "payload": "blob",
        "active": "boolean",
        "born": "date",
        "at_local": "timestamp",
        "at_utc": "timestamp with time zone",
        "clock": "time",
        "maybe": "varchar",
        "_mozart_date": "date",
        "_mozart_extracted_at": "timestamp with time zone",
    },
}


def test_ensure_table_creates_exact_types_once(env: Env):
    tenant = env.tenant()
    schema = typed_table().schema
    assert env.warehouse.ensure_table(tenant, "orders", schema) == ["created table with 15 column(s)"]
    assert env.columns(tenant, "orders") == EXPECTED_TYPES[env.kind]
    assert env.warehouse.ensure_table(tenant, "orders", schema) == []


def test_values_round_trip_exactly(env: Env):
    tenant = env.tenant()
    data = typed_table(3)
    assert env.load(env.publish(tenant, "orders", DAY, [data])) == 3
    cols = ", ".join(c for c in data.column_names)
    got = env.rows(tenant, "orders", cols, DAY)
    expected = [tuple(r.values()) for r in data.to_pylist()]
    assert [_normal(r) for r in got] == [_normal(r) for r in expected]
    stamped = env.rows(tenant, "orders", "_mozart_date, _mozart_extracted_at", DAY)
    assert {(d, ts.astimezone(UTC)) for d, ts in stamped} == {
        (DAY, dt.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=UTC))
    }


def _normal(row: tuple) -> tuple:
    """Instants compared in UTC, binary values as bytes."""
    return tuple(_normal_value(value) for value in row)


def _normal_value(value: object) -> object:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def test_replace_partition_is_idempotent_and_leaves_other_dates(env: Env):
    tenant = env.tenant()
    assert env.load(env.publish(tenant, "orders", DAY2, [simple([1, 2])])) == 2
    assert env.load(env.publish(tenant, "orders", DAY, [simple([10, 11]), simple([12])])) == 3
    rerun = env.publish(tenant, "orders", DAY, [simple([20, 21, 22, 23])])
    assert env.load(rerun) == 4
    assert env.load(rerun) == 4
    assert env.rows(tenant, "orders", "id", DAY) == [(20,), (21,), (22,), (23,)]
    assert env.rows(tenant, "orders", "id, qty", DAY2) == [(1, 10), (2, 20)]


def test_replace_reads_only_the_manifest_files(env: Env):
    tenant = env.tenant()
    manifest = env.publish(tenant, "orders", DAY, [simple([1, 2, 3])])
    with env.lake.open_output(env.lake.date_url(tenant, "orders", DAY) + "/part-stale-00000.parquet") as out:
        pq.write_table(simple([99, 98]), out)  # garbage of a failed attempt, not in the manifest
    assert env.load(manifest) == 3
    assert env.rows(tenant, "orders", "id", DAY) == [(1,), (2,), (3,)]


def test_empty_manifest_gives_an_empty_typed_partition(env: Env):
    tenant = env.tenant()
    empty = typed_table(0)
    manifest = env.publish(tenant, "orders", DAY, [], schema=empty.schema)
    assert manifest.files == ()
    assert env.load(manifest) == 0
    assert env.columns(tenant, "orders") == EXPECTED_TYPES[env.kind]
    with_empty_part = env.publish(tenant, "orders", DAY2, [empty])
    assert env.load(with_empty_part) == 0


def test_count_partition_of_a_missing_table_is_zero(env: Env):
    assert env.warehouse.count_partition(env.tenant(), "nothing_here", DAY) == 0


def test_schema_evolution_adds_and_widens(env: Env):
    tenant = env.tenant()
    env.load(
        env.publish(
            tenant,
            "orders",
            DAY2,
            [
                simple(
                    [1],
                    ratio=pa.array([0.5], pa.float32()),
                    amount=pa.array([decimal.Decimal("1.25")], pa.decimal128(10, 2)),
                )
            ],
        )
    )
    evolved = simple(
        [2],
        pa.int64(),
        ratio=pa.array([0.25], pa.float64()),
        amount=pa.array([decimal.Decimal("123456789.25")], pa.decimal128(12, 2)),
        note=pa.array(["new"], pa.string()),
    )
    changes = env.warehouse.ensure_table(tenant, "orders", evolved.schema)
    assert sorted(changes) == sorted(
        [
            "added column note varchar",
            "widened column qty integer -> bigint",
            "widened column ratio real -> double",
            "widened column amount decimal(10,2) -> decimal(12,2)",
        ]
    )
    assert env.load(env.publish(tenant, "orders", DAY, [evolved])) == 1
    cols = env.columns(tenant, "orders")
    assert cols["qty"] == "bigint" and cols["ratio"] == "double" and cols["amount"] == "decimal(12,2)"
    assert env.rows(tenant, "orders", "id, qty, ratio, amount, note", DAY2) == [
        (1, 10, 0.5, decimal.Decimal("1.25"), None)
    ]
    assert env.rows(tenant, "orders", "id, qty, ratio, amount, note", DAY) == [
        (2, 20, 0.25, decimal.Decimal("123456789.25"), "new")
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ids: simple(ids, pa.int16()), "narrowing from bigint (table) to integer (source)"),
        (
            lambda ids: simple(ids).set_column(1, "qty", pa.array(["a"] * len(ids))),
            "type change from bigint (table) to varchar (source)",
        ),
        (lambda ids: pa.table({"id": pa.array(ids, pa.int64())}), "column 'qty' (bigint) is in the warehouse table"),
    ],
)
def test_refused_drift_raises_before_any_change(env: Env, change, message):
    tenant = env.tenant()
    assert env.load(env.publish(tenant, "orders", DAY, [simple([1, 2], pa.int64())])) == 2
    before = env.columns(tenant, "orders")
    bad = change([3]).append_column("extra", pa.array(["x"], pa.string()))
    with pytest.raises(SchemaDriftError, match=re.escape(message)) as info:
        env.warehouse.ensure_table(tenant, "orders", bad.schema)
    assert info.value.tenant == tenant and info.value.table == "orders"
    assert env.columns(tenant, "orders") == before
    assert env.warehouse.count_partition(tenant, "orders", DAY) == 2


def test_unsupported_types_fail_with_the_column_name(env: Env):
    tenant = env.tenant()
    odd_types = (pa.timestamp("ns"), pa.struct([("a", pa.int32())]), pa.decimal256(50, 2), pa.uint64())
    for arrow_type in odd_types:
        schema = pa.schema([("id", pa.int64()), ("odd", arrow_type)])
        with pytest.raises(TypeMappingError, match=r"column 'odd'"):
            env.warehouse.ensure_table(tenant, "orders", schema)
    assert env.warehouse.count_partition(tenant, "orders", DAY) == 0


def _marker(task_id: str, tenant: str, date: dt.date, rows: int = 1, family: str = "LoadIceberg") -> Marker:
    return Marker(
        task_family=family,
        task_id=task_id,
        tenant=tenant,
        date=date,
        table="orders",
        rows=rows,
        details={"run_id": "r1", "files": ["part-a.parquet"]},
    )


def test_markers_single_and_bulk(env: Env):
    a, b = env.tenant(), env.tenant()
    wh = env.warehouse
    assert wh.completed("LoadIceberg", a, DAY) == set()
    for marker in (
        _marker(f"{a}-1", a, DAY),
        _marker(f"{a}-2", a, DAY),
        _marker(f"{a}-old", a, DAY2),
        _marker(f"{b}-1", b, DAY),
        _marker(f"{b}-dbt", b, DAY, family="DbtRun"),
    ):
        wh.write_marker(marker)
    assert wh.completed("LoadIceberg", a, DAY) == {f"{a}-1", f"{a}-2"}
    assert wh.completed("DbtRun", b, DAY) == {f"{b}-dbt"}
    assert wh.completed_many("LoadIceberg", [(a, DAY2), (b, DAY)]) == {f"{a}-old", f"{b}-1"}
    assert wh.completed_rows("LoadIceberg", [(a, DAY2), (b, DAY)]) == {
        (f"{a}-old", a, DAY2),
        (f"{b}-1", b, DAY),
    }
    assert wh.completed_many("LoadIceberg", []) == set()
    wh.write_marker(_marker(f"{a}-1", a, DAY, rows=5))  # a rerun replaces its marker
    markers = wh.markers(a, DAY)
    assert [(m.task_id, m.rows) for m in markers] == [(f"{a}-1", 5), (f"{a}-2", 1)]
    assert markers[1].details == {"run_id": "r1", "files": ["part-a.parquet"]}
    assert markers[1].finished_at.tzinfo is not None and markers[1].table == "orders"
    wh.delete_markers(a, DAY, [f"{a}-1"])
    wh.delete_markers(b, DAY, [f"{b}-1"])
    assert wh.completed_many("LoadIceberg", [(a, DAY), (b, DAY)]) == {f"{a}-2"}


def test_a_load_writes_its_marker_with_the_rows_committed(env: Env):
    tenant = env.tenant()
    wh = env.warehouse
    assert env.load(env.publish(tenant, "orders", DAY, [simple([1, 2, 3])]), task_id=f"{tenant}-ok") == 3
    assert [(m.task_id, m.rows) for m in wh.markers(tenant, DAY)] == [(f"{tenant}-ok", 3)]
    empty = env.publish(tenant, "orders", DAY2, [], schema=simple([1]).schema)
    assert env.load(empty, task_id=f"{tenant}-empty") == 0
    assert wh.completed("LoadIceberg", tenant, DAY2) == {f"{tenant}-empty"}


# ------------------------------------------------------------------------------------- a lying lake
def _other_tenants_part(env: Env, victim: str) -> str:
    """A relative name that climbs from this tenant's date folder into another tenant's published part."""
    other = env.tenant()
    theirs = env.publish(other, "orders", DAY, [simple([900, 901, 902])])
    return f"../../../{other}/orders/{DAY.isoformat()}/{theirs.files[0].name}"


def _same_rows_other_values(env: Env, manifest: Manifest) -> Manifest:
    """Overwrite the manifest's part with a valid Parquet part of the same rows and other values."""
    folder = env.lake.date_url(manifest.tenant, manifest.table, manifest.date)
    forged = env.publish(manifest.tenant, "forged", manifest.date, [simple([7, 8, 9])], run_id=manifest.run_id)
    source = env.lake.fs_path(env.lake.date_url(manifest.tenant, "forged", manifest.date) + "/" + forged.files[0].name)
    env.lake.filesystem.copy_file(source, env.lake.fs_path(f"{folder}/{manifest.files[0].name}"))
    return manifest


TAMPERING = {
    "path escape": lambda env, m: replace(m, files=(replace(m.files[0], name=_other_tenants_part(env, m.tenant)),)),
    "glob": lambda env, m: replace(m, files=(replace(m.files[0], name="*.parquet"),)),
    "replaced part": _same_rows_other_values,
    "row_count edited": lambda env, m: replace(m, row_count=m.row_count + 1),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_a_tampered_extract_is_refused_before_any_commit(env: Env, tampering: str):
    tenant = env.tenant()
    assert env.load(env.publish(tenant, "orders", DAY, [simple([1, 2, 3])])) == 3  # the day as it was
    fresh = env.publish(tenant, "orders", DAY, [simple([4, 5, 6])])
    lying = TAMPERING[tampering](env, fresh)
    env.lake.write_manifest(lying)
    with pytest.raises(ExtractBrokenError) as info:
        env.load(lying, task_id=f"{tenant}-tampered")
    message = str(info.value)
    assert info.value.tenant == tenant and info.value.table == "orders" and str(DAY) in message
    if tampering != "row_count edited":
        assert info.value.file and info.value.file in message
    assert env.rows(tenant, "orders", "id", DAY) == [(1,), (2,), (3,)]  # nothing committed, no hole
    assert f"{tenant}-tampered" not in env.warehouse.completed("LoadIceberg", tenant, DAY)


def test_a_missing_or_truncated_part_is_refused(env: Env):
    tenant = env.tenant()
    manifest = env.publish(tenant, "orders", DAY, [simple([1, 2]), simple([3])])
    folder = env.lake.date_url(tenant, "orders", DAY)
    with env.lake.open_output(f"{folder}/{manifest.files[1].name}") as out:
        out.write(b"PAR1")  # truncated
    with pytest.raises(ExtractBrokenError, match="size is 4 bytes"):
        env.load(manifest)
    env.lake.delete_file(f"{folder}/{manifest.files[1].name}")
    with pytest.raises(ExtractBrokenError, match="missing"):
        env.load(manifest)
    assert env.warehouse.count_partition(tenant, "orders", DAY) == 0
