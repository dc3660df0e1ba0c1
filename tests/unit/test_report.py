"""The run report from the truth: manifests (rows extracted) + markers (rows loaded, dbt), failures kept."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from mozart_luigi.config import get_config
from mozart_luigi.lake import Lake
from mozart_luigi.manifest import Manifest, PartFile
from mozart_luigi.report import build_report, read_report, report_path, write_report
from mozart_luigi.warehouse import Marker, open_warehouse

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 28)


def _manifest(tenant: str, table: str, rows: int, seconds: float) -> Manifest:
    return Manifest(
        tenant=tenant,
        table=table,
        date=DAY,
        mode="full",
        row_count=rows,
        source_count=rows,
        files=(PartFile("part-0.parquet", rows, 100),),
        schema=pa.schema([("id", pa.int64())]),
        extracted_at=dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
        run_id="r1",
        details={"seconds": seconds},
    )


def _marker(family: str, tenant: str, table: str | None, rows: int | None, seconds: float) -> Marker:
    return Marker(
        task_family=family,
        task_id=f"{family}_{tenant}_{table}",
        tenant=tenant,
        date=DAY,
        table=table,
        rows=rows,
        details={"seconds": seconds},
    )


def test_report_reads_manifests_and_markers(local: Path) -> None:
    config = get_config()
    lake = Lake.from_settings(config.settings)
    lake.write_manifest(_manifest("demo_west", "customers", 30, 0.5))
    lake.write_manifest(_manifest("demo_west", "orders", 24, 0.25))
    lake.write_manifest(_manifest("demo_west", "products", 12, 0.1))
    with open_warehouse(config.settings) as wh:
        wh.write_marker(_marker("LoadIceberg", "demo_west", "customers", 30, 1.5))
        wh.write_marker(_marker("LoadIceberg", "demo_west", "products", 11, 1.0))  # the extract was redone
        wh.write_marker(_marker("DbtRun", "demo_west", None, 9, 12.0))
    failures = {("demo_west", "order_items"): "ExtractTable: boom"}
    report = build_report(config, DAY, tenants=["demo_west"], failures=failures, run={"exit_code": 30})
    rows = {r.table: r for r in report.rows}
    assert (rows["customers"].rows_extracted, rows["customers"].rows_loaded) == (30, 30)
    assert rows["customers"].seconds == 2.0 and rows["customers"].status == "done"
    assert rows["orders"].status == "missing" and rows["orders"].rows_extracted == 24
    assert rows["products"].status == "failed" and "manifest has 12" in (rows["products"].error or "")
    assert rows["order_items"].status == "failed" and rows["order_items"].error == "ExtractTable: boom"
    assert report.dbt[0].status == "done" and report.dbt[0].seconds == 12.0
    assert report.counts() == {"done": 2, "missing": 1, "failed": 2}
    assert not report.ok
    text = report.to_text()
    assert "demo_west  customers" in text and "ExtractTable: boom" in text
    assert "2 done, 1 missing, 2 failed" in text

    path = write_report(report, config.settings)
    assert path == report_path(config.settings, DAY) == local / "reports" / "2026-11-28" / "report.json"
    assert json.loads(path.read_text())["run"] == {"exit_code": 30}
    assert not list(path.parent.glob("*.tmp"))
    # later, `mozart status` (no failures given) keeps the last run's failure for a row still not done
    again = build_report(config, DAY, tenants=["demo_west"])
    assert {r.table: r.status for r in again.rows}["order_items"] == "failed"
    assert read_report(config.settings, DAY)["counts"]["failed"] == 2


def test_report_of_nothing_is_all_missing(local: Path) -> None:
    report = build_report(get_config(), DAY)
    assert {r.status for r in report.rows} == {"missing"}
    assert len(report.rows) == 12 and len(report.dbt) == 3
    assert read_report(get_config().settings, DAY) is None


def test_the_error_line_is_the_exception_never_a_caret_line() -> None:
    from mozart_luigi.runner import error_line

    trace = (
        "Traceback (most recent call last):\n"
        '  File "/x/load.py", line 3, in run\n'
        "    result = warehouse.load_day(DayLoad(manifest, lake, marker))\n"
        "             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "mozart_luigi.errors.ExtractBrokenError: tenant 'acme', table 'orders': date 2026-11-28: part is missing\n"
        "    ^^^^^^^^^^^^^^^\n"
    )
    assert error_line(trace).startswith("mozart_luigi.errors.ExtractBrokenError: tenant 'acme'")
    assert error_line("RuntimeError: boom") == "RuntimeError: boom"
    assert error_line("") == "failed (see the log)"
