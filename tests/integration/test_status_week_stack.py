"""A week of nights on the stack profile, one tenant failing on two of them, then the completeness matrix
(``mozart status --from D1 --to D7``) as text, as JSON and as the HTML page in headless Chromium, every cell
checked: the stack twin of tests/unit/test_status_week.py.

Two tenants read the stack's sample shops, one on PostgreSQL (``acme``), one on MariaDB (``globex``); each
extracts two tables (``customers``, full; ``orders``, incremental), loads them into Iceberg through Trino
and runs a dbt build on Trino, one ``mozart run --date D`` per night, as cron would. On nights 3 and 5 the
MariaDB tenant's password is wrong (its ``GLOBEX_DB_PASSWORD`` is another value for that run only): both of
its extracts fail, its dbt build does not run. The rows of every done cell are the source's (counted in the
source databases).

Cost: small tables (the samples: 80 and 55 customers, a few hundred orders), two tables per tenant, and
the one-model dbt project of ``status_week.small_dbt_project`` (the shop project takes a minute and more
per dbt-trino build on two cores; test_dbt_trino runs it), so the week is 7 short runs plus 12 small dbt
builds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_helpers import BIN, REPO, Setup, cleanup, run, stack_setup, unique
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

from mozart_luigi.config import load_config
from mozart_luigi.report import read_report

pytestmark = pytest.mark.integration
DAYS = week(dt.date(2026, 11, 22))  # the samples' rows fall on 2026-11-25 .. 2026-11-28
TABLES = {"customers": "full", "orders": "incremental"}
FAILING_DAYS = (DAYS[2], DAYS[4])
WRONG_PASSWORD = "not-the-password-7f3a"  # noqa: S105


@dataclass(frozen=True)
class StackWeek:
    setup: Setup
    failing: str
    nights: dict[dt.date, Night]
    wanted: dict[Key, Want]


@pytest.fixture(scope="module")
def stack_week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackWeek]:
    if not (os.environ.get("MOZART_TRINO_HOST") and os.environ.get("MOZART_TEST_PG_URL")):
        pytest.skip('stack not configured: run `eval "$(scripts/stack env)"` after `scripts/stack up`')
    tmp = tmp_path_factory.mktemp("status_week_stack")
    setup = stack_setup(tmp, dict(os.environ), unique("t_week"), ["acme", "globex"])
    ok, failing = setup.tenants
    tenants_yaml = setup.config_dir / "tenants.yaml"
    tenants = yaml.safe_load(tenants_yaml.read_text())
    for entry in tenants["tenants"].values():
        entry["tables"] = list(TABLES)
    tenants_yaml.write_text(yaml.safe_dump(tenants, sort_keys=False))
    setup.env["MOZART_DBT_PROJECT_DIR"] = str(small_dbt_project(tmp / "dbt", REPO))
    log = tmp / "week.log"
    try:
        wanted = _wanted(setup, ok, failing)
        nights = {}
        for day in DAYS:
            night = setup
            if day in FAILING_DAYS:
                night = dataclasses.replace(setup, env={**setup.env, "GLOBEX_DB_PASSWORD": WRONG_PASSWORD})
            started = dt.datetime.now(dt.UTC)
            done = run(
                [str(BIN / "mozart"), "run", "--date", day.isoformat(), "--local-scheduler", "--workers", "2"],
                night,
                timeout=600,
                log=log,
            )
            nights[day] = Night(done.returncode, done.stdout + done.stderr, started, dt.datetime.now(dt.UTC))
        yield StackWeek(setup, failing, nights, wanted)
    finally:
        cleanup(setup)


def _wanted(setup: Setup, ok: str, failing: str) -> dict[Key, Want]:
    """Every cell: the rows each source holds (whole table, or updated that day), a model per dbt build; the
    failing tenant's two nights failed (its dbt build missing)."""
    import sqlalchemy as sa

    env = setup.env
    urls = {
        ok: f"postgresql+psycopg2://acme_reader:{env['ACME_DB_PASSWORD']}@{env['MOZART_PG_HOST']}:"
        f"{env['MOZART_PG_PORT']}/acme",
        failing: f"mysql+pymysql://globex_reader:{env['GLOBEX_DB_PASSWORD']}@{env['MOZART_MYSQL_HOST']}:"
        f"{env['MOZART_MYSQL_PORT']}/globex",
    }
    wanted: dict[Key, Want] = {}
    for tenant, url in urls.items():
        engine = sa.create_engine(url)
        try:
            with closing(engine.connect()) as conn:
                for table, mode in TABLES.items():
                    for day in DAYS:
                        where = "" if mode == "full" else " WHERE updated_at >= :start AND updated_at < :stop"
                        bounds = {
                            "start": dt.datetime.combine(day, dt.time()),
                            "stop": dt.datetime.combine(day + dt.timedelta(days=1), dt.time()),
                        }
                        rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}{where}"), bounds).scalar_one()
                        wanted[(tenant, table, day)] = Want("done", rows)
        finally:
            engine.dispose()
        for day in DAYS:
            wanted[(tenant, DBT, day)] = Want("done", SMALL_MODELS)
    for day in FAILING_DAYS:
        for table in TABLES:
            wanted[(failing, table, day)] = Want("failed", error=f"tenant '{failing}', table '{table}': ")
        wanted[(failing, DBT, day)] = Want("missing")
    return wanted


def _status(week_: StackWeek, *args: str) -> tuple[int, str]:
    argv = [str(BIN / "mozart"), "status", "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), *args]
    done = run(argv, week_.setup, timeout=300)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.returncode, done.stdout


def _reports(week_: StackWeek) -> dict[dt.date, dict[str, Any]]:
    settings = load_config(week_.setup.config_dir, env=week_.setup.env).settings
    return {day: report for day in DAYS if (report := read_report(settings, day)) is not None}


# ------------------------------------------------------------------------------------------------ tests


def test_the_week_ran_with_one_tenant_failing_on_two_nights(stack_week: StackWeek) -> None:
    for day, night in stack_week.nights.items():
        assert night.exit_code == (30 if day in FAILING_DAYS else 0), (day, night.output[-4000:])
        assert "Traceback" not in night.output and WRONG_PASSWORD not in night.output
    for day in FAILING_DAYS:
        assert f"FAILED {stack_week.failing} customers, orders: ExtractTable: " in stack_week.nights[day].output
    n = counts(stack_week.wanted)
    assert (len(stack_week.wanted), n["done"], n["failed"], n["missing"]) == (2 * 3 * 7, 36, 4, 2)
    assert sum(w.rows or 0 for (_, table, _), w in stack_week.wanted.items() if table == "orders") > 0


def test_json_has_the_right_state_in_every_cell(stack_week: StackWeek) -> None:
    code, out = _status(stack_week, "--json")
    assert code == 1
    check_json(out, stack_week.wanted, stack_week.nights, _reports(stack_week))
    errors = {c["error"] for c in json.loads(out)["cells"] if c["state"] == "failed"}
    assert all("Access denied" in e or "authentication" in e.lower() for e in errors), errors
    assert not any(WRONG_PASSWORD in e for e in errors)


def test_text_grid_has_the_right_symbol_in_every_cell(stack_week: StackWeek) -> None:
    code, out = _status(stack_week)
    assert code == 1
    check_text(out, stack_week.wanted, "stack")


def test_html_page_in_headless_chromium(stack_week: StackWeek, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The page as Chromium builds it; the screenshot is kept in the test's tmp folder and under
    .pytest_cache/d/status-week-stack/."""
    page = tmp_path / "status.html"
    code, _ = _status(stack_week, "--html", str(page))
    assert code == 1
    dom, shot = chromium(page, tmp_path, request, "status-week-stack", size=(1200, 600))
    check_dom(dom, stack_week.wanted)
    assert shot.stat().st_size > 10_000
