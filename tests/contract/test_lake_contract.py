"""The lake contract, run over a local folder and (when the stack is up) the S3 server."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

from mozart_luigi.config import load_config
from mozart_luigi.errors import StorageError
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, PartFile

pytestmark = pytest.mark.contract
DAY = dt.date(2026, 11, 28)


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path, repo_root):
    if request.param == "local":
        yield Lake((tmp_path / "raw").as_uri())
        return
    if not os.environ.get("MOZART_S3_ENDPOINT_URL"):
        pytest.skip('S3 not configured: eval "$(scripts/stack env)"')
    settings = load_config(repo_root / "config").settings
    prefix = f"s3://raw/_contract/{uuid.uuid4().hex}"
    lake = Lake(prefix, settings)
    yield lake
    for name in lake.list_files(lake.date_url("t", "orders", DAY)):
        lake.delete_file(f"{lake.date_url('t', 'orders', DAY)}/{name}")


def _manifest() -> Manifest:
    import pyarrow as pa

    return Manifest(
        tenant="t",
        table="orders",
        date=DAY,
        mode="full",
        row_count=0,
        source_count=0,
        files=(PartFile("part-x-00000.parquet", 0, 10),),
        schema=pa.schema([("id", pa.int64())]),
        extracted_at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
        run_id="x",
    )


def test_manifest_target_exists_only_after_write(lake: Lake):
    target = lake.manifest_target("t", "orders", DAY)
    assert target.url.endswith("/t/orders/2026-11-28/_SUCCESS")
    assert not target.exists()
    lake.write_manifest(_manifest())
    assert target.exists()
    assert target.read() == _manifest()


def test_parts_listing_and_clear(lake: Lake):
    folder = lake.date_url("t", "orders", DAY)
    assert lake.list_files(folder) == []
    for name in ("part-a-00000.parquet", "part-a-00001.parquet"):
        with lake.open_output(f"{folder}/{name}") as out:
            out.write(b"x" * 10)
    assert lake.list_files(folder) == ["part-a-00000.parquet", "part-a-00001.parquet"]
    assert lake.clear_dir(folder) == 2
    assert lake.list_files(folder) == []
    lake.delete_file(f"{folder}/never-there")  # deleting a missing file is not an error


def test_no_temp_files_left_by_atomic_write(lake: Lake):
    lake.write_manifest(_manifest())
    assert lake.list_files(lake.date_url("t", "orders", DAY)) == ["_SUCCESS"]


@pytest.mark.unit
def test_unsupported_url_is_a_clear_error():
    with pytest.raises(StorageError, match="unsupported lake URL 'ftp://x'"):
        Lake("ftp://x")
