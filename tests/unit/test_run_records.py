"""Run records (``runs.jsonl``) from every entry point, ``mozart runs``, and run reports that merge.

Profile ``local``. Most runs here fail fast on purpose (a tenant whose SQLite source is missing fails its four
extracts in a second, before any load or dbt build); one runs dbt to a failing test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from mozart_luigi.cli import main
from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.demo import generate_source
from mozart_luigi.report import DbtStatus, RunReport, TableStatus, merge_reports, read_report, report_path
from mozart_luigi.runlog import append_record, read_records, runs_path

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 28)
TABLES = ("customers", "products", "orders", "order_items")


def _records() -> list[dict]:
    return read_records(runs_path(get_config().settings))


def _generate(tenant: str) -> Path:
    source = Path(get_config().tenant(tenant).source.path)
    generate_source(source, tenant)
    return source


# ------------------------------------------------------------------------------------------ the file


def _append_many(path: str, writer: int) -> None:
    for i in range(100):
        append_record(Path(path), {"writer": writer, "i": i, "pad": "x" * (1500 + writer * 97 + i)})


def test_concurrent_appends_give_one_whole_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_append_many, args=(str(path), w)) for w in range(6)]
    for proc in writers:
        proc.start()
    for proc in writers:
        proc.join(30)
        assert proc.exitcode == 0
    records = read_records(path)
    assert len(records) == 600  # every line parsed: no two records interleaved
    assert {(r["writer"], r["i"]) for r in records} == {(w, i) for w in range(6) for i in range(100)}
    with path.open("a") as handle:  # a record being written (no newline yet) is not read
        handle.write('{"writer": 99')
    assert len(read_records(path)) == 600


# ------------------------------------------------------------------------------------- mozart run


def test_mozart_run_appends_a_record_and_mozart_runs_lists_it(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reset_config_cache()  # demo_west's source does not exist: its four extracts fail at once
    assert main(["run", "--date", DAY.isoformat(), "--tenants", "demo_west"]) == 30
    (record,) = _records()
    assert record["entry_point"] == "mozart run" and record["exit_code"] == 30 and record["status"] == "FAILED"
    assert record["argv"] == ["mozart", "run", "--date", DAY.isoformat(), "--tenants", "demo_west"]
    assert "@" in record["user"] and record["dates"] == [DAY.isoformat()] and record["tenants"] == ["demo_west"]
    started, finished = (dt.datetime.fromisoformat(record[k]) for k in ("started_at", "finished_at"))
    assert started <= finished and Path(record["log_file"]).is_file()
    failed = {t["table"]: t for t in record["tasks"] if t["outcome"] == "failed"}
    assert set(failed) == set(TABLES) and {t["task"] for t in failed.values()} == {"ExtractTable"}
    for task in failed.values():  # the exception's own line, never a source line or a ^^^ marker
        assert task["error"].startswith("ExtractTable: ") and "SourceError" in task["error"]
        assert "unable to open database file" in task["error"] and "^" not in task["error"]
    assert {t["outcome"] for t in record["tasks"] if t["outcome"] != "failed"} == {"upstream failed"}
    assert record["counts"] == {"failed": 4, "upstream failed": 5}  # 4 loads and the dbt build

    capsys.readouterr()
    assert main(["runs", "--date", DAY.isoformat(), "--json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [record["run_id"]]
    assert main(["runs", "--date", "2026-11-27", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["runs"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert "exit 30" in text[0] and "mozart run" in text[0] and f"{DAY} (demo_west)" in text[0]
    assert text[1].strip().startswith("demo_west.customers extract 2026-11-28 failed: ExtractTable: SourceError:")
    assert len(text) == 5


def test_every_run_appends_and_nothing_is_rewritten(local: Path) -> None:
    reset_config_cache()
    assert main(["run", "--date", DAY.isoformat(), "--tenants", "demo_west"]) == 30
    first = runs_path(get_config().settings).read_bytes()
    assert main(["run", "--date", DAY.isoformat(), "--tenants", "demo_west", "--local-scheduler"]) == 30
    from mozart_luigi.runner import local_run_lock

    with local_run_lock(get_config().settings.data_dir):  # a run that cannot start is recorded too
        assert main(["run", "--date", DAY.isoformat(), "--tenants", "demo_west"]) == 10
    text = runs_path(get_config().settings).read_bytes()
    assert text.startswith(first) and text.count(b"\n") == 3
    assert [(r["exit_code"], r["status"]) for r in _records()] == [
        (30, "FAILED"),
        (30, "FAILED"),
        (10, "ALREADY_RUNNING"),
    ]


def test_a_failing_dbt_test_is_named_in_the_record_and_the_closing_block(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An order status dbt's accepted_values test refuses: everything loads, dbt fails on that test."""
    reset_config_cache()
    source = _generate("demo_west")
    with contextlib.closing(sqlite3.connect(source)) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute(
            "UPDATE orders SET status = 'lost' WHERE order_id = (SELECT min(order_id) FROM orders "
            "WHERE updated_at >= ? AND updated_at < ?)",
            (DAY.isoformat(), "2026-11-29"),
        )
        conn.commit()
    capsys.readouterr()
    assert main(["run", "--date", DAY.isoformat(), "--tenants", "demo_west"]) == 30
    out = capsys.readouterr().out
    (record,) = _records()
    (dbt,) = [t for t in record["tasks"] if t["task"] == "DbtRun"]
    assert dbt["outcome"] == "failed" and dbt["error"].startswith("DbtRun: ")
    assert [name for name in dbt["dbt_failed_tests"] if name.startswith("accepted_values_stg_orders_status")]
    assert len(dbt["dbt_failed_tests"]) == 1
    assert {t["outcome"] for t in record["tasks"] if t["task"] != "DbtRun"} == {"done"}
    assert "FAILED demo_west (dbt build): DbtRun: " in out
    assert f"failing tests: {dbt['dbt_failed_tests'][0]}" in out
    assert f"rerun:   mozart run --date {DAY} --tenants demo_west" in out


# -------------------------------------------------------------------------------------- luigi command


def _luigi(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The unmodified ``luigi`` command from the project folder (its luigi.cfg names config/logging.ini)."""
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "luigi"), "--module", "mozart_luigi", *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_luigi_command_appends_a_record_for_alltenants_and_rangedaily(local: Path) -> None:
    reset_config_cache()
    done = _luigi(
        ["AllTenants", "--date", DAY.isoformat(), "--tenants", '["demo_west"]', "--local-scheduler", "--workers", "2"]
    )
    assert done.returncode == 30, done.stderr[-3000:]
    assert "Luigi Execution Summary" in done.stderr  # luigi's own output is unchanged
    (record,) = _records()
    assert record["entry_point"] == "luigi" and record["argv"][:4] == [
        "luigi",
        "--module",
        "mozart_luigi",
        "AllTenants",
    ]
    assert record["exit_code"] == done.returncode and record["tenants"] == ["demo_west"]
    failed = [t for t in record["tasks"] if t["outcome"] == "failed"]
    assert sorted(t["table"] for t in failed) == sorted(TABLES)  # seen in two forked task processes
    assert all(t["error"].startswith("ExtractTable: ") and "SourceError" in t["error"] for t in failed)

    _generate("demo_west")
    stop = (DAY + dt.timedelta(days=1)).isoformat()
    extract = ["ExtractTable", "--tenant", "demo_west", "--table", "orders", "--date", DAY.isoformat()]
    assert _luigi([*extract, "--local-scheduler"]).returncode == 0
    ranged = _luigi(
        [
            "RangeDaily",
            "--of",
            "AllTenants",
            "--of-params",
            '{"tenants": ["demo_north"]}',
            "--start",
            DAY.isoformat(),
            "--stop",
            stop,
            "--local-scheduler",
        ]
    )
    assert ranged.returncode == 30, ranged.stderr[-3000:]  # demo_north has no source
    records = _records()
    assert [r["argv"][3] for r in records] == ["AllTenants", "ExtractTable", "RangeDaily"]
    assert records[1]["exit_code"] == 0 and [
        (t["task"], t["table"], t["outcome"], t["rows"]) for t in records[1]["tasks"]
    ] == [("ExtractTable", "orders", "done", 24)]
    assert records[2]["dates"] == [DAY.isoformat()] and records[2]["exit_code"] == 30
    assert {t["tenant"] for t in records[2]["tasks"]} == {"demo_north"}


# ------------------------------------------------------------------------------------------- merging


def _row(tenant: str, table: str, status: str, error: str | None = None) -> TableStatus:
    return TableStatus(tenant, table, None, None, None, status, error)


def test_merge_keeps_other_tenants_and_the_newest_outcome_per_cell() -> None:
    old = RunReport(
        DAY,
        "local",
        rows=(
            _row("a", "t1", "failed", "boom"),
            _row("a", "t2", "done"),
            _row("b", "t1", "failed", "bad password"),
            _row("b", "t2", "missing"),
        ),
        dbt=(DbtStatus("a", "missing"), DbtStatus("b", "failed", error="dbt test")),
    )
    new = RunReport(
        DAY,
        "local",
        rows=(_row("a", "t1", "missing"), _row("a", "t2", "missing")),
        dbt=(DbtStatus("a", "done", 3.0),),
        run={"exit_code": 0},
    )
    merged = merge_reports(json.loads(old.to_json()), new)
    cells = {(r.tenant, r.table): (r.status, r.error) for r in merged.rows}
    assert cells == {
        ("a", "t1"): ("failed", "boom"),  # missing is no outcome: the earlier failure stays
        ("a", "t2"): ("missing", None),  # the marker is gone now: the truth wins over an earlier done
        ("b", "t1"): ("failed", "bad password"),  # tenant b was not part of this run
        ("b", "t2"): ("missing", None),
    }
    assert [(d.tenant, d.status, d.error) for d in merged.dbt] == [("a", "done", None), ("b", "failed", "dbt test")]
    assert merged.run == {"exit_code": 0} and [r.tenant for r in merged.rows] == ["a", "a", "b", "b"]


def test_a_partial_rerun_keeps_another_tenants_failure(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reset_config_cache()  # neither source exists: both tenants fail, one run each
    assert main(["run", "--date", DAY.isoformat(), "--tenants", "demo_west"]) == 30
    assert main(["run", "--date", DAY.isoformat(), "--tenants", "demo_north"]) == 30
    report = read_report(get_config().settings, DAY)
    assert report is not None
    status = {(r["tenant"], r["table"]): (r["status"], r["error"] or "") for r in report["tables"]}
    for tenant in ("demo_west", "demo_north"):
        for table in TABLES:
            state, error = status[(tenant, table)]
            assert state == "failed" and f"{tenant}.sqlite" in error, (tenant, table, state, error)
    assert "demo_south" not in {r["tenant"] for r in report["tables"]}  # no run covered it
    assert report["counts"] == {"done": 0, "failed": 8, "missing": 2}  # two dbt builds never reached
    capsys.readouterr()
    assert main(["status", "--date", DAY.isoformat(), "--tenant", "demo_west", "--json"]) == 1
    again = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in again["tables"]} == {"failed"}
    assert report_path(get_config().settings, DAY).parent.joinpath(".report.lock").exists()
