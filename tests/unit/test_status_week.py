"""A week of nights on the local profile, one tenant failing on two of them, then the completeness matrix
(``mozart status --from D1 --to D7``) as text, as JSON and as the HTML page in headless Chromium, every cell
checked.

The three demo tenants (the shipped config, SQLite sources written by the demo generator) run one ``mozart
run --date D`` per night, as cron would, for seven consecutive dates. ``demo_west`` fails on two nights for a
real reason that is switched on for that night only:

- night 3: its ``orders`` table was renamed in the source (``orders_renamed``): that extract fails, the other
  three tables load, its dbt build does not run (missing);
- night 5: its source file is damaged (text where the SQLite database was): all four extracts fail.

Everything else is done, with the rows of the source (the whole table for the ``full`` tables, the rows
updated that day for the ``incremental`` ones; the demo shops' rows fall on the last four days, so the first
three nights load zero order rows) and the number of dbt models for the dbt builds.

The dbt build of each tenant and night is real (DbtRun, dbt-duckdb) but of a one-model project
(``status_week.small_dbt_project``): the shop project's 9 models and 38 tests would make the 19 builds of
the week most of the test's minutes; it is run by test_demo_e2e and the dbt tests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from status_week import (
    DBT,
    SMALL_MODELS,
    Key,
    Night,
    Want,
    check_dom,
    check_json,
    check_text,
    chromium,
    counts,
    small_dbt_project,
    week,
)

from mozart_luigi.cli import main
from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.demo import generate_source
from mozart_luigi.report import read_report

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
MOZART = str(REPO / ".venv" / "bin" / "mozart")
TENANTS = ("demo_north", "demo_south", "demo_west")
TABLES = {"customers": "full", "products": "full", "orders": "incremental", "order_items": "incremental"}
DAYS = week(dt.date(2026, 11, 22))  # the demo shops' data ends 2026-11-28
FAILING = "demo_west"
RENAMED, DAMAGED = DAYS[2], DAYS[4]


@dataclass(frozen=True)
class Week:
    data: Path
    dbt_project: Path
    nights: dict[dt.date, Night]
    wanted: dict[Key, Want]


@pytest.fixture(scope="module")
def local_week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    data = tmp_path_factory.mktemp("status_week")
    project = small_dbt_project(tmp_path_factory.mktemp("dbt"), REPO)
    env = {
        **os.environ,
        "MOZART_PROFILE": "local",
        "MOZART_CONFIG_DIR": str(REPO / "config"),
        "MOZART_DATA_DIR": str(data),
        "MOZART_DBT_PROJECT_DIR": str(project),
        "COLUMNS": "200",
    }
    for name in ("MOZART_DUCKDB_PATH", "MOZART_LAKE_URL", "MOZART_REPORT_DIR"):
        env.pop(name, None)
    with pytest.MonkeyPatch.context() as patch:
        _local_env(patch, data, project)
        reset_config_cache()
        sources = {t: Path(get_config().tenant(t).source.path) for t in TENANTS}
        for tenant, path in sources.items():
            generate_source(path, tenant)
        reset_config_cache()
    wanted = _wanted(sources)
    nights = {}
    for day in DAYS:
        with _failure_of(day, sources[FAILING]):
            started = dt.datetime.now(dt.UTC)
            done = subprocess.run(
                [MOZART, "run", "--date", day.isoformat()],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            nights[day] = Night(done.returncode, done.stdout + done.stderr, started, dt.datetime.now(dt.UTC))
    yield Week(data, project, nights, wanted)
    reset_config_cache()


def _local_env(patch: pytest.MonkeyPatch, data: Path, dbt_project: Path) -> None:
    patch.setenv("MOZART_PROFILE", "local")
    patch.setenv("MOZART_DBT_PROJECT_DIR", str(dbt_project))
    patch.setenv("MOZART_CONFIG_DIR", str(REPO / "config"))
    patch.setenv("MOZART_DATA_DIR", str(data))
    for name in ("MOZART_DUCKDB_PATH", "MOZART_LAKE_URL", "MOZART_REPORT_DIR"):
        patch.delenv(name, raising=False)


@contextlib.contextmanager
def _failure_of(day: dt.date, source: Path) -> Iterator[None]:
    """The failing tenant's trouble of ``day`` (none on most nights), undone after the night's run."""
    if day == RENAMED:
        _sql(source, "ALTER TABLE orders RENAME TO orders_renamed")
    saved = source.read_bytes()
    if day == DAMAGED:
        source.write_text("this was a SQLite database\n" * 100)
    try:
        yield
    finally:
        source.write_bytes(saved)
        if day == RENAMED:
            _sql(source, "ALTER TABLE orders_renamed RENAME TO orders")


def _sql(path: Path, statement: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(statement)
        conn.commit()


def _wanted(sources: dict[str, Path]) -> dict[Key, Want]:
    """Every cell of the week: the source's rows when done; the failing tenant's two nights."""
    wanted: dict[Key, Want] = {}
    for tenant, path in sources.items():
        with contextlib.closing(sqlite3.connect(path)) as conn:
            for table, mode in TABLES.items():
                for day in DAYS:
                    where = "" if mode == "full" else " WHERE updated_at >= ? AND updated_at < ?"
                    bounds = () if mode == "full" else (day.isoformat(), (day + dt.timedelta(days=1)).isoformat())
                    (rows,) = conn.execute(f"SELECT count(*) FROM {table}{where}", bounds).fetchone()  # noqa: S608
                    wanted[(tenant, table, day)] = Want("done", rows)
        for day in DAYS:
            wanted[(tenant, DBT, day)] = Want("done", SMALL_MODELS)
    wanted[(FAILING, "orders", RENAMED)] = Want("failed", error="table orders not found on sqlite:")
    for table in TABLES:
        wanted[(FAILING, table, DAMAGED)] = Want("failed", error="file is not a database")
    for day in (RENAMED, DAMAGED):
        wanted[(FAILING, DBT, day)] = Want("missing")
    return wanted


@pytest.fixture
def env(local_week: Week, monkeypatch: pytest.MonkeyPatch) -> Week:
    """The week's environment for one in-process ``main()`` (which may change MOZART_* vars)."""
    _local_env(monkeypatch, local_week.data, local_week.dbt_project)
    reset_config_cache()
    return local_week


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["status", "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), *args])
    return code, capsys.readouterr().out


def _reports() -> dict[dt.date, dict[str, Any]]:
    settings = get_config().settings
    return {day: report for day in DAYS if (report := read_report(settings, day)) is not None}


# ------------------------------------------------------------------------------------------------ tests


def test_the_week_ran_with_one_tenant_failing_on_two_nights(env: Week) -> None:
    for day, night in env.nights.items():
        assert night.exit_code == (30 if day in (RENAMED, DAMAGED) else 0), (day, night.output[-3000:])
        assert "Traceback" not in night.output
    assert f"FAILED {FAILING} orders: ExtractTable: " in env.nights[RENAMED].output
    assert f"FAILED {FAILING} customers, products, orders, order_items: " in env.nights[DAMAGED].output
    assert f"  rerun:   mozart rerun --tenant {FAILING} --table orders --date {RENAMED}" in env.nights[RENAMED].output
    n = counts(env.wanted)
    assert (len(env.wanted), n["done"], n["failed"], n["missing"]) == (3 * 5 * 7, 98, 5, 2)


def test_json_has_the_right_state_in_every_cell(env: Week, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _status(capsys, "--json")
    assert code == 1
    check_json(out, env.wanted, env.nights, _reports())


def test_json_missing_lists_exactly_the_cells_not_done(env: Week, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _status(capsys, "--json", "--missing", "--tenant", FAILING, "--tenant", "demo_north")
    assert code == 1
    got = {(c["tenant"], c["table"], c["date"]): c["state"] for c in json.loads(out)["cells"]}
    assert got == {(t, x, d.isoformat()): w.state for (t, x, d), w in env.wanted.items() if w.state != "done"}


def test_text_grid_has_the_right_symbol_in_every_cell(env: Week, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _status(capsys)
    assert code == 1
    check_text(out, env.wanted, "local")


def test_html_page_in_headless_chromium(
    env: Week, capsys: pytest.CaptureFixture[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The page as Chromium builds it: every cell's state class and hover text; the screenshot is kept in the
    test's tmp folder and under .pytest_cache/d/status-week-local/."""
    page = tmp_path / "status.html"
    code, _ = _status(capsys, "--html", str(page))
    assert code == 1
    dom, shot = chromium(page, tmp_path, request, "status-week-local")
    check_dom(dom, env.wanted)
    assert shot.stat().st_size > 10_000  # a rendered grid, not a blank page


def test_the_failing_tenant_recovers_with_the_rerun_the_grid_names(
    env: Week, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last (it changes the week): the rerun command of the damaged night makes that tenant's column done."""
    assert main(["rerun", "--tenant", FAILING, "--date", DAMAGED.isoformat()]) == 0
    code, out = _status(capsys, "--json", "--tenant", FAILING)
    states = {(c["table"], c["date"]): c["state"] for c in json.loads(out)["cells"]}
    assert {x for (x, d), s in states.items() if d == DAMAGED.isoformat() and s != "done"} == set()
    assert states[("orders", RENAMED.isoformat())] == "failed" and code == 1
