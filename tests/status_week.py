"""Shared by the week-of-nights tests (tests/unit/test_status_week.py and
tests/integration/test_status_week_stack.py): what every cell of ``mozart status --from D1 --to D7`` must be,
checked in the JSON, the text grid and the HTML page as headless Chromium parses it (with a screenshot kept as
a test artifact)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import struct
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

DBT = "(dbt build)"
SYMBOLS = {"done": "#", "missing": ".", "failed": "X", "disabled": "D", "running": "R"}


@dataclass(frozen=True)
class Night:
    """One night's ``mozart run``: its exit code, output and when it ran (UTC)."""

    exit_code: int
    output: str
    started: dt.datetime
    ended: dt.datetime


@dataclass(frozen=True)
class Want:
    """What one cell must be: its state, the rows when done, a fragment of the error when failed."""

    state: str
    rows: int | None = None
    error: str | None = None


Key = tuple[str, str, dt.date]  # (tenant, table or DBT, date)


def week(first: dt.date, days: int = 7) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range(days)]


def counts(wanted: dict[Key, Want]) -> dict[str, int]:
    out = dict.fromkeys(SYMBOLS, 0)
    for want in wanted.values():
        out[want.state] += 1
    return out


# ------------------------------------------------------------------------------------------------ JSON


def check_json(
    text: str, wanted: dict[Key, Want], nights: dict[dt.date, Night], reports: dict[dt.date, dict[str, Any]]
) -> None:
    """Every cell of ``mozart status --json``: one per tenant x table x date, each as wanted. ``finished_at``:
    the marker's time for a done cell, within the night that made it; the night's report time for a failed
    one; none for a missing one."""
    body = json.loads(text)
    days = sorted({key[2] for key in wanted})
    assert (body["from"], body["to"]) == (days[0].isoformat(), days[-1].isoformat())
    cells = {(c["tenant"], c["table"], dt.date.fromisoformat(c["date"])): c for c in body["cells"]}
    assert len(cells) == len(body["cells"]), "a cell is listed twice"
    assert set(cells) == set(wanted)
    for key, want in wanted.items():
        cell, night = cells[key], nights[key[2]]
        where = f"{key[0]}.{key[1]} {key[2]}: {cell}"
        assert cell["state"] == want.state, where
        finished = dt.datetime.fromisoformat(cell["finished_at"]) if cell["finished_at"] else None
        if want.state == "done":
            assert (cell["rows"], cell["error"], cell["extracted"]) == (want.rows, None, None), where
            assert finished is not None and night.started <= finished <= night.ended, where
        elif want.state == "failed":
            assert cell["rows"] is None and cell["error"] and want.error and want.error in cell["error"], where
            assert cell["error"].startswith("ExtractTable: "), where
            assert cell["extracted"] is False, where  # the extract failed: no manifest on the lake
            assert finished == dt.datetime.fromisoformat(reports[key[2]]["generated_at"]), where
            assert night.started <= finished <= night.ended, where
        else:
            assert (cell["rows"], cell["finished_at"], cell["error"]) == (None, None, None), where
            assert cell["extracted"] is (None if key[1] == DBT else False), where


# ------------------------------------------------------------------------------------------------ text


def check_text(text: str, wanted: dict[Key, Want], profile: str) -> None:
    """The grid: the headline's counts, one symbol per cell under its day, each failed cell with its error
    and rerun command, and the backfill command for the missing cells."""
    lines = text.splitlines()
    days = sorted({key[2] for key in wanted})
    n = counts(wanted)
    assert lines[0] == (
        f"Completeness {days[0]} .. {days[-1]} (profile {profile}): {n['done']} done, "
        f"{n['missing']} missing, {n['failed']} failed"
    )
    assert lines[2].split() == [f"{d.day:02d}" for d in days]
    rows = list(dict.fromkeys((tenant, table) for tenant, table, _ in wanted))
    width = max(len(f"{tenant}.{table}") for tenant, table in rows)
    grid = {line[:width].rstrip(): line[width:].split() for line in lines[3 : 3 + len(rows)]}
    assert grid == {
        f"{tenant}.{table}": [SYMBOLS[wanted[(tenant, table, d)].state] for d in days] for tenant, table in rows
    }
    assert lines[3 + len(rows)].startswith("legend: # done  . missing  X failed")
    rest = "\n".join(lines[4 + len(rows) :])
    for (tenant, table, day), want in wanted.items():
        if want.state == "failed":
            line = next(x for x in lines if x.startswith(f"  X {tenant}.{table} {day} failed: "))
            assert want.error and want.error in line, line
            option = "" if table == DBT else f" --table {table}"
            assert f"      rerun: mozart rerun --tenant {tenant}{option} --date {day}" in rest
    missing = [(d, t) for d in days for t, x in rows if wanted[(t, x, d)].state == "missing"]
    if missing:  # one backfill over the dates with missing cells, for the tenants that have them
        tenants = "".join(f" --tenant {t}" for t in dict.fromkeys(t for _, t in missing))
        assert f"missing: mozart backfill --from {missing[0][0]} --to {missing[-1][0]}{tenants} --only-missing" in lines


# ------------------------------------------------------------------------------------------------ HTML


class GridCells(HTMLParser):
    """The page's grid cells: ``{(tenant, table, date): attributes}`` (the parser unescapes attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], dict[str, str]] = {}
        self.tags: set[str] = set()
        self._row: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        attr = {k: v or "" for k, v in attrs}
        if tag == "tr":
            self._row = attr
        if tag == "td" and "data-date" in attr:
            self.cells[(self._row["data-tenant"], self._row["data-table"], attr["data-date"])] = attr


def check_dom(dom: str, wanted: dict[Key, Want]) -> None:
    """Each cell of the page: its state class and ``data-state``, its hover text (rows when done, the error
    when failed, the rerun command when not done)."""
    page = GridCells()
    page.feed(dom)
    assert set(page.cells) == {(t, x, d.isoformat()) for t, x, d in wanted}
    for (tenant, table, day), want in wanted.items():
        attr = page.cells[(tenant, table, day.isoformat())]
        where = f"{tenant}.{table} {day}: {attr}"
        assert attr["class"].split() == ["cell", want.state] and attr["data-state"] == want.state, where
        title = attr["title"]
        assert title.startswith(f"{tenant}.{table} {day}: {want.state}"), where
        if want.state == "done":
            unit = "models" if table == DBT else "rows"
            assert f"\n{want.rows:,} {unit}, finished " in title, where
        if want.state == "failed":
            assert want.error and want.error in title, where
        option = "" if table == DBT else f" --table {table}"
        assert (f"rerun: mozart rerun --tenant {tenant}{option} --date {day}" in title) is (want.state != "done")
    assert "script" not in page.tags


def chromium(
    page: Path, folder: Path, request: pytest.FixtureRequest, name: str, size: tuple[int, int] = (1400, 900)
) -> tuple[str, Path]:
    """``page`` in headless Chromium: its DOM as Chromium built it, and a screenshot (PNG of ``size``) in
    ``folder``, copied to ``.pytest_cache/d/{name}/`` (git-ignored) so it outlives the tmp folder. Skips
    when Chromium is not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={folder / 'chromium-profile'}",
        f"--window-size={size[0]},{size[1]}",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90, check=True
    ).stdout
    shot = folder / f"{name}.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=90, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == size
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    kept = cache.mkdir(name) / shot.name if cache else shot
    if kept != shot:
        shutil.copyfile(shot, kept)
    print(f"screenshot: {shot} (copy: {kept})")
    return dom, kept


# ------------------------------------------------------------------------------------------- small dbt

_SMALL_PROJECT = """\
# A one-model dbt project for the week tests (MOZART_DBT_PROJECT_DIR): a real dbt build per tenant and night
# through DbtRun, at a fraction of the shop project's cost (that one is tested by test_demo_e2e, test_dbt_*).
name: mozart_week
version: "1.0.0"
config-version: 2
profile: mozart
model-paths: ["models"]
macro-paths: ["macros"]
flags: {send_anonymous_usage_stats: false, use_colors: false}
models:
  mozart_week:
    +materialized: view
    +schema: mart
"""
_SMALL_SOURCES = """\
version: 2
sources:
  - name: raw
    schema: "{{ var('tenant') }}"
    tables: [{name: orders}]
models:
  - name: orders_to_date
    columns:
      - name: order_rows
        data_tests: [not_null]
"""
_SMALL_MODEL = """\
select count(*) as order_rows
from {{ source('raw', 'orders') }}
where _mozart_date <= date '{{ mozart_run_date() }}'
"""
SMALL_MODELS = 1


def small_dbt_project(folder: Path, repo: Path) -> Path:
    """Write the one-model project (the shop project's profiles.yml and schema macros) under ``folder``."""
    (folder / "models").mkdir(parents=True)
    (folder / "macros").mkdir()
    (folder / "dbt_project.yml").write_text(_SMALL_PROJECT)
    (folder / "models" / "_models.yml").write_text(_SMALL_SOURCES)
    (folder / "models" / "orders_to_date.sql").write_text(_SMALL_MODEL)
    shutil.copy(repo / "dbt" / "profiles.yml", folder / "profiles.yml")
    for macro in ("generate_schema_name.sql", "tenant.sql"):
        shutil.copy(repo / "dbt" / "macros" / macro, folder / "macros" / macro)
    return folder
