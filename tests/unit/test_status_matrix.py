"""``mozart status --from --to`` (the completeness matrix: JSON, grid, HTML, in a real browser) and ``mozart
backfill``, on the local profile.

One module fixture backfills two dates of demo_west for real: the first completes; on the second a bad value
arrives in ``orders`` (a customer_id that is markup, not an integer), so that extract fails, the other tables
load and dbt never runs. A third date is never run. Every test reads that one state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import shutil
import sqlite3
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from luigid_local import free_port, luigid

from mozart_luigi.cli import main
from mozart_luigi.config import Config, get_config, reset_config_cache
from mozart_luigi.demo import generate_source
from mozart_luigi.report import RunReport, read_report, report_path, write_report
from mozart_luigi.status_grid import build_matrix
from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse import Marker, open_warehouse

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
TENANT = "demo_west"
D1, D2, D3 = dt.date(2026, 11, 26), dt.date(2026, 11, 27), dt.date(2026, 11, 28)
TABLES = ("customers", "products", "orders", "order_items", "(dbt build)")
BAD_VALUE = '<i>oops</i> & "x"'  # lands in the error message: must be escaped everywhere


@dataclass(frozen=True)
class Backfilled:
    data: Path
    exit_code: int
    output: str


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfilled]:
    data = tmp_path_factory.mktemp("status_matrix")
    with pytest.MonkeyPatch.context() as patch:
        _local_env(patch, data)
        reset_config_cache()
        source = Path(get_config().tenant(TENANT).source.path)
        generate_source(source, TENANT)
        _poison_one_order(source, D2)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(
                [
                    "--log-level",
                    "ERROR",
                    "backfill",
                    "--from",
                    D1.isoformat(),
                    "--to",
                    D2.isoformat(),
                    "--tenant",
                    TENANT,
                    "--local-scheduler",
                ]
            )
        reset_config_cache()
        yield Backfilled(data, code, out.getvalue())


def _local_env(patch: pytest.MonkeyPatch, data: Path) -> None:
    patch.setenv("MOZART_PROFILE", "local")
    patch.setenv("MOZART_CONFIG_DIR", str(REPO / "config"))
    patch.setenv("MOZART_DATA_DIR", str(data))
    for name in ("MOZART_DUCKDB_PATH", "MOZART_LAKE_URL", "MOZART_REPORT_DIR"):
        patch.delenv(name, raising=False)


@pytest.fixture
def env(backfilled: Backfilled, monkeypatch: pytest.MonkeyPatch) -> Backfilled:
    """The module's environment for one test (main() may change MOZART_* vars; monkeypatch restores them)."""
    _local_env(monkeypatch, backfilled.data)
    return backfilled


def _poison_one_order(source: Path, day: dt.date) -> None:
    """One order updated on ``day`` gets a customer_id that is no integer: only that day's extract fails."""
    with contextlib.closing(sqlite3.connect(source)) as conn:
        (order_id,) = conn.execute(
            "SELECT min(order_id) FROM orders WHERE updated_at >= ? AND updated_at < ?",
            (day.isoformat(), (day + dt.timedelta(days=1)).isoformat()),
        ).fetchone()
        conn.execute("UPDATE orders SET customer_id = ? WHERE order_id = ?", (BAD_VALUE, order_id))
        conn.commit()


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["status", "--tenant", TENANT, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _cells(text: str) -> dict[tuple[str, str], dict]:
    return {(c["table"], c["date"]): c for c in json.loads(text)["cells"]}


# ---------------------------------------------------------------------------------------------- backfill


def test_backfill_ran_both_dates_oldest_first_and_wrote_their_reports(env: Backfilled) -> None:
    assert env.exit_code == 30, env.output  # the highest code of the dates: D2 had a failed task
    assert env.output.index(f"--- {D1} ---") < env.output.index(f"--- {D2} ---")
    assert f"backfill done: 1 date(s) ok, not ok: {D2} (exit 30)" in env.output
    settings = get_config().settings
    first, second = read_report(settings, D1), read_report(settings, D2)
    assert first is not None and first["ok"] and first["run"]["exit_code"] == 0
    assert second is not None and second["run"]["exit_code"] == 30
    status = {row["table"]: row["status"] for row in second["tables"]}
    assert status == {"customers": "done", "products": "done", "orders": "failed", "order_items": "done"}
    assert second["dbt"][0]["status"] == "missing"
    assert report_path(settings, D3).exists() is False


def test_backfill_dry_run_lists_the_dates_and_tasks_and_runs_nothing(
    env: Backfilled, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _markers()
    capsys.readouterr()
    argv = [
        "backfill",
        "--from",
        D1.isoformat(),
        "--to",
        D3.isoformat(),
        "--tenant",
        TENANT,
        "--dry-run",
        "--local-scheduler",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 date(s) to run, 0 already complete and skipped" in out
    assert f"{D1}: complete, nothing would run" in out
    d2 = out.split(f"{D2}: would run ", 1)[1].split(f"{D3}:", 1)[0]
    assert d2.startswith("5 task(s) (3 complete")  # AllTenants, TenantPipeline, DbtRun, orders load + extract
    assert f"ExtractTable(tenant={TENANT}, date={D2}, table=orders)" in d2
    assert "table=customers" not in d2  # loaded already
    assert f"ExtractTable(tenant={TENANT}, date={D3}, table=customers)" in out

    assert main([*argv, "--only-missing"]) == 0
    out = capsys.readouterr().out
    assert "2 date(s) to run, 1 already complete and skipped" in out
    assert str(D1) not in out.split("\n", 1)[1]
    assert f"{D2}: would run" in out and f"{D3}: would run" in out
    assert _markers() == before  # nothing ran
    assert not report_path(get_config().settings, D3).exists()


def test_backfill_only_missing_skips_a_done_date(env: Backfilled, capsys: pytest.CaptureFixture[str]) -> None:
    report = report_path(get_config().settings, D1)
    written = report.stat().st_mtime_ns
    before = _markers()
    capsys.readouterr()
    assert (
        main(
            [
                "backfill",
                "--from",
                D1.isoformat(),
                "--to",
                D2.isoformat(),
                "--tenant",
                TENANT,
                "--only-missing",
                "--local-scheduler",
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 date(s) to run, 1 already complete and skipped" in out and f"{D2}: would run" in out
    # every tenant: demo_north and demo_south have nothing for D1, so D1 is not complete for them
    assert (
        main(
            [
                "backfill",
                "--from",
                D1.isoformat(),
                "--to",
                D1.isoformat(),
                "--only-missing",
                "--dry-run",
                "--local-scheduler",
            ]
        )
        == 0
    )
    assert "1 date(s) to run, 0 already complete" in capsys.readouterr().out
    # for real: D1 is complete for demo_west, so nothing runs and its report is not rewritten
    assert (
        main(
            [
                "backfill",
                "--from",
                D1.isoformat(),
                "--to",
                D1.isoformat(),
                "--tenant",
                TENANT,
                "--only-missing",
                "--local-scheduler",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "0 date(s) to run, 1 already complete and skipped" in out and "backfill done: 0 date(s) ok" in out
    assert "--- " not in out
    assert report.stat().st_mtime_ns == written and _markers() == before


def test_backfill_exits_10_when_a_local_run_holds_the_lock(env: Backfilled, capsys: pytest.CaptureFixture[str]) -> None:
    from mozart_luigi.runner import local_run_lock

    settings = get_config().settings
    with local_run_lock(settings.data_dir):
        assert (
            main(
                ["backfill", "--from", D3.isoformat(), "--to", D3.isoformat(), "--tenant", TENANT, "--local-scheduler"]
            )
            == 10
        )
    assert "run.lock" in capsys.readouterr().err
    assert not report_path(settings, D3).exists()


def test_backfill_and_matrix_refuse_a_reversed_range(env: Backfilled, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "--from", D2.isoformat(), "--to", D1.isoformat(), "--dry-run"]) == 2
    assert "is after --to" in capsys.readouterr().err
    assert main(["status", "--from", D2.isoformat(), "--to", D1.isoformat()]) == 2
    assert main(["status", "--to", D1.isoformat()]) == 2
    assert main(["status", "--date", D1.isoformat(), "--from", D1.isoformat()]) == 2


# ------------------------------------------------------------------------------------------------ status


def test_status_matrix_json_has_one_cell_per_tenant_table_date(
    env: Backfilled, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _status(capsys, "--from", D1.isoformat(), "--to", D3.isoformat(), "--json")
    assert code == 1
    body = json.loads(out)
    assert (body["from"], body["to"]) == (D1.isoformat(), D3.isoformat())
    keys = [(c["tenant"], c["table"], c["date"]) for c in body["cells"]]
    assert len(keys) == len(set(keys)) == 15
    assert set(keys) == {(TENANT, t, d.isoformat()) for t in TABLES for d in (D1, D2, D3)}
    cells = _cells(out)
    loaded = _markers()
    for table in TABLES:  # D1: everything done, rows and time from the markers
        cell = cells[(table, D1.isoformat())]
        assert cell["state"] == "done" and cell["error"] is None
        assert (cell["rows"], cell["finished_at"]) == loaded[(table, D1)]
    with open_warehouse(get_config().settings) as warehouse:
        assert cells[("orders", D1.isoformat())]["rows"] == warehouse.count_partition(TENANT, "orders", D1) > 0
    failed = cells[("orders", D2.isoformat())]
    assert failed["state"] == "failed" and failed["extracted"] is False and failed["rows"] is None
    assert failed["error"].startswith("ExtractTable: ") and repr(BAD_VALUE) in failed["error"]
    assert failed["finished_at"] == read_report(get_config().settings, D2)["generated_at"]
    assert {t: cells[(t, D2.isoformat())]["state"] for t in TABLES} == {
        "customers": "done",
        "products": "done",
        "orders": "failed",
        "order_items": "done",
        "(dbt build)": "missing",
    }
    assert cells[("(dbt build)", D2.isoformat())]["extracted"] is None
    for table in TABLES:  # D3 never ran
        cell = cells[(table, D3.isoformat())]
        assert (cell["state"], cell["rows"], cell["finished_at"], cell["error"]) == ("missing", None, None, None)


def test_status_matrix_text_grid(env: Backfilled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _status(capsys, "--from", D1.isoformat(), "--to", D3.isoformat())
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"Completeness {D1} .. {D3} (profile local): 8 done, 6 missing, 1 failed"
    assert lines[1].strip() == "2026-11" and lines[2].split() == ["26", "27", "28"]
    width = len("demo_west.(dbt build)")
    assert {line[:width].rstrip(): line[width:].split() for line in lines[3:8]} == {
        "demo_west.customers": ["#", "#", "."],
        "demo_west.products": ["#", "#", "."],
        "demo_west.orders": ["#", "X", "."],
        "demo_west.order_items": ["#", "#", "."],
        "demo_west.(dbt build)": ["#", ".", "."],
    }
    assert lines[8] == "legend: # done  . missing  X failed  D disabled  R running  S stale"
    assert lines[9] == "needs attention (1):"
    assert lines[10].startswith(f"  X demo_west.orders {D2} failed: ExtractTable: ") and repr(BAD_VALUE) in lines[10]
    assert lines[11] == f"      rerun: mozart rerun --tenant demo_west --table orders --date {D2}"
    assert lines[12] == f"missing: mozart backfill --from {D2} --to {D3} --tenant demo_west --only-missing"


def test_status_matrix_missing_keeps_only_cells_not_done(env: Backfilled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _status(capsys, "--from", D1.isoformat(), "--to", D3.isoformat(), "--missing", "--json")
    assert code == 1
    states = {(c["table"], c["date"]): c["state"] for c in json.loads(out)["cells"]}
    assert states == {
        ("orders", str(D2)): "failed",
        ("(dbt build)", str(D2)): "missing",
        **{(t, str(D3)): "missing" for t in TABLES},
    }
    code, out, _ = _status(capsys, "--from", D1.isoformat(), "--to", D1.isoformat(), "--missing")
    assert code == 0 and out.splitlines()[1] == "every cell is done"


def test_status_date_is_unchanged(env: Backfilled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _status(capsys, "--date", D2.isoformat())
    assert code == 1 and out.startswith(f"Run report for {D2} (profile local)")
    code, out, _ = _status(capsys, "--date", D1.isoformat(), "--json")
    assert code == 0 and json.loads(out)["ok"] is True and "tables" in json.loads(out)


def test_a_report_that_judged_the_marker_keeps_it_failed_until_it_is_loaded_again(local: Path) -> None:
    """A row the last report called failed although it had a marker (rows disagreeing with the manifest) stays
    failed while that marker is the one the report saw; a newer marker (a rerun) makes it done."""
    config = get_config()
    loaded = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    _write_marker(config, "orders", loaded)
    failed = {
        "tenant": TENANT,
        "table": "orders",
        "rows_extracted": 24,
        "rows_loaded": 23,
        "seconds": None,
        "status": "failed",
        "error": "loaded 23 rows but the manifest has 24",
    }
    report = RunReport(date=D1, profile="local", rows=(), dbt=(), generated_at=loaded + dt.timedelta(minutes=5))
    path = write_report(report, config.settings)
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "tables": [failed]}))
    cell = build_matrix(config, D1, D1, tenants=[TENANT]).cell(TENANT, "orders", D1)
    assert cell is not None and (cell.state, cell.error, cell.rows) == ("failed", failed["error"], 24)
    _write_marker(config, "orders", loaded + dt.timedelta(hours=1))
    cell = build_matrix(config, D1, D1, tenants=[TENANT]).cell(TENANT, "orders", D1)
    assert cell is not None and (cell.state, cell.error) == ("done", None)


def _write_marker(config: Config, table: str, finished_at: dt.datetime) -> None:
    task_id = LoadIceberg(tenant=TENANT, table=table, date=D1).task_id
    with open_warehouse(config.settings) as warehouse:
        warehouse.write_marker(Marker("LoadIceberg", task_id, TENANT, D1, table, 24, finished_at))


def _markers() -> dict[tuple[str, dt.date], tuple[int | None, str]]:
    out = {}
    with open_warehouse(get_config().settings) as warehouse:
        for day in (D1, D2, D3):
            for m in warehouse.markers(TENANT, day):
                table = "(dbt build)" if m.task_family == "DbtRun" else m.table
                out[(table, day)] = (m.rows, m.finished_at.astimezone(dt.UTC).isoformat())
    return out


# -------------------------------------------------------------------------------------------------- HTML


class _Cells(HTMLParser):
    """The grid's ``td.cell`` elements (attributes unescaped by the parser) and every start tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], dict[str, str]] = {}
        self.tags: list[str] = []
        self._row: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attr = {k: v or "" for k, v in attrs}
        if tag == "tr":
            self._row = attr
        if tag == "td" and "data-date" in attr:
            self.cells[(self._row["data-tenant"], self._row["data-table"], attr["data-date"])] = attr


def _parse(text: str) -> _Cells:
    parser = _Cells()
    parser.feed(text)
    return parser


def _check_page(page: _Cells) -> None:
    assert set(page.cells) == {(TENANT, t, d.isoformat()) for t in TABLES for d in (D1, D2, D3)}
    for (_, table, date), attr in page.cells.items():
        state = attr["data-state"]
        assert attr["class"].split() == ["cell", state]
        assert attr["title"].startswith(f"{TENANT}.{table} {date}: {state}")
        which = "" if table == "(dbt build)" else f" --table {table}"
        assert (f"rerun: mozart rerun --tenant {TENANT}{which} --date {date}" in attr["title"]) is (state != "done")
    assert {k: a["data-state"] for k, a in page.cells.items() if a["data-state"] != "done"} == {
        (TENANT, "orders", str(D2)): "failed",
        (TENANT, "(dbt build)", str(D2)): "missing",
        **{(TENANT, t, str(D3)): "missing" for t in TABLES},
    }
    failed = page.cells[(TENANT, "orders", str(D2))]["title"]
    assert "ExtractTable: " in failed and repr(BAD_VALUE) in failed
    assert "i" not in page.tags and "script" not in page.tags  # the markup in the error stayed text


def test_status_matrix_html_is_static_escaped_and_complete(
    env: Backfilled, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "site" / "status.html"
    code, out, err = _status(capsys, "--from", D1.isoformat(), "--to", D3.isoformat(), "--json", "--html", str(path))
    assert code == 1 and json.loads(out)["from"] == D1.isoformat()  # stdout stays pure JSON
    assert f"html: {path}" in err
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "default-src 'none'" in text
    assert "<i>oops" not in text and "&lt;i&gt;oops&lt;/i&gt; &amp; &quot;x&quot;" in text
    for external in ("src=", "href=", "url(", "@import", "<script", "<link"):
        assert external not in text, external
    _check_page(_parse(text))


def test_status_matrix_html_in_chromium(
    env: Backfilled, capsys: pytest.CaptureFixture[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The page as Chromium parses it: a cell per tenant x table x date, its state class, the error in the title.
    The screenshot stays in the test's tmp folder, and a copy in .pytest_cache/d/status-matrix/ (git-ignored)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install -y chromium); the HTML is still checked "
            "by test_status_matrix_html_is_static_escaped_and_complete"
        )
    page = tmp_path / "status.html"
    assert _status(capsys, "--from", D1.isoformat(), "--to", D3.isoformat(), "--html", str(page))[0] == 1
    shot = tmp_path / "status.png"
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,800",
    ]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60, check=True)
    _check_page(_parse(dom.stdout))
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1200, 800)
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    kept = cache.mkdir("status-matrix") / "status.png" if cache else shot
    if kept != shot:
        shutil.copyfile(shot, kept)
    print(f"screenshot: {shot} (copy: {kept})")


# ------------------------------------------------------------------------------------------------ luigid


def test_status_matrix_shows_what_luigid_runs_or_disabled(local: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from luigi.rpc import RemoteScheduler

    with luigid(local) as port:
        scheduler = RemoteScheduler(f"http://127.0.0.1:{port}/")
        load = LoadIceberg(tenant=TENANT, table="orders", date=D1)
        dbt = DbtRun(tenant=TENANT, date=D1)
        other_day = LoadIceberg(tenant=TENANT, table="customers", date=D2)
        # as a worker does: schedule (PENDING, with the task's retry policy), then report RUNNING or FAILED;
        # one failure with retry_count 1 makes luigid disable the task
        for task, status in (
            (load, "PENDING"),
            (load, "RUNNING"),
            (dbt, "PENDING"),
            (dbt, "FAILED"),
            (other_day, "PENDING"),
            (other_day, "RUNNING"),
        ):
            scheduler.add_task(
                worker="status-test",
                task_id=task.task_id,
                status=status,
                family=task.task_family,
                params=task.to_str_params(),
                runnable=True,
                retry_policy_dict={"retry_count": 1},
            )
        html = local / "status.html"
        code, out, err = _status(
            capsys,
            "--from",
            D1.isoformat(),
            "--to",
            D1.isoformat(),
            "--json",
            "--html",
            str(html),
            "--scheduler-host",
            "127.0.0.1",
            "--scheduler-port",
            str(port),
        )
    assert code == 1 and "warning" not in err
    states = {table: c["state"] for (table, _), c in _cells(out).items()}
    assert states == {
        "customers": "missing",
        "products": "missing",
        "orders": "running",
        "order_items": "missing",
        "(dbt build)": "disabled",
    }
    cells = _parse(html.read_text()).cells
    assert cells[(TENANT, "orders", str(D1))]["class"] == "cell running"
    assert cells[(TENANT, "(dbt build)", str(D1))]["class"] == "cell disabled"


def test_status_matrix_without_an_answering_luigid_warns_and_goes_on(
    local: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _status(
        capsys,
        "--from",
        D1.isoformat(),
        "--to",
        D1.isoformat(),
        "--json",
        "--scheduler-host",
        "127.0.0.1",
        "--scheduler-port",
        str(free_port()),
    )
    assert code == 1 and "did not answer" in err and "running and disabled are not shown" in err
    assert {c["state"] for c in json.loads(out)["cells"]} == {"missing"}
