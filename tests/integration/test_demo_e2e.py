"""The embedded default end to end, as the README tells a newcomer: ``make demo`` twice (cold, then warm),
then every command of the README's "Using it" and "Backfills" sections against the demo's data.

Profile ``local``: no services needed (SQLite sources, a lake folder, DuckDB, dbt-duckdb). Marked
``integration`` because it runs the whole pipeline (about two to four minutes cold)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DEMO_DAYS = ("2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28")


def _section(title: str) -> list[str]:
    readme = (REPO / "README.md").read_text()
    body = readme.split(f"\n{title}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", body, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    data = tmp_path_factory.mktemp("demo") / "data"
    env = {
        **os.environ,
        "MOZART_DATA_DIR": str(data),
        "MOZART_PROFILE": "local",
        "MOZART_CONFIG_DIR": str(REPO / "config"),
    }
    for name in ("MOZART_LAKE_URL", "MOZART_DUCKDB_PATH", "MOZART_REPORT_DIR", "MOZART_DEMO_DATE"):
        env.pop(name, None)
    # the venv first, so neither timed run includes a (re)install
    subprocess.run(["make", "venv"], cwd=REPO, env=env, capture_output=True, timeout=1200, check=True)
    runs = []
    for _ in range(2):
        started = time.monotonic()
        done = subprocess.run(
            ["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False
        )
        runs.append((done, time.monotonic() - started))
    return {"env": env, "data": data, "runs": runs}


def test_make_demo_cold_then_warm(demo: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    (cold, cold_s), (warm, warm_s) = demo["runs"]  # type: ignore[misc]
    assert cold.returncode == 0, cold.stdout[-4000:] + cold.stderr[-4000:]
    assert "Running AllTenants for 4 day(s) of 2026-11-25..2026-11-28" in cold.stdout
    assert "15 done, 0 missing, 0 failed" in cold.stdout
    for tenant in ("demo_north", "demo_south", "demo_west"):
        assert f"source {tenant}: generated" in cold.stdout
        assert f"{tenant}_mart.daily_revenue" in cold.stdout
    # the quiet terminal: a line per tenant and day, the report, one compact mart table (make echoes a line)
    assert len(cold.stdout.splitlines()) <= 60, cold.stdout
    days = [line for line in cold.stdout.splitlines() if re.match(r"demo_\w+ 2026-11-2[5-8]: 4 table\(s\)", line)]
    assert len(days) == 12, cold.stdout
    assert "Traceback" not in cold.stdout + cold.stderr and "luigi-interface" not in cold.stdout + cold.stderr
    assert warm.returncode == 0, warm.stdout[-4000:] + warm.stderr[-4000:]
    assert "Everything is already done for 2026-11-25..2026-11-28: nothing to run." in warm.stdout
    assert "source demo_north: up to date" in warm.stdout
    assert "15 done, 0 missing, 0 failed" in warm.stdout
    assert len(warm.stdout.splitlines()) <= 60, warm.stdout
    # the warm time is reported, not asserted: speed is for benchmarks, never a timed test
    with capsys.disabled():
        print(f"\nmake demo (venv ready): cold {cold_s:.1f}s (4 days x 3 tenants), warm {warm_s:.1f}s")


def test_every_demo_day_is_reported_done(demo: dict[str, object]) -> None:
    data: Path = demo["data"]  # type: ignore[assignment]
    for day in DEMO_DAYS:
        report = json.loads((data / "reports" / day / "report.json").read_text())
        assert report["ok"] is True, day
        assert all(r["rows_extracted"] == r["rows_loaded"] and r["seconds"] is not None for r in report["tables"])
        assert report["run"] == {"status": "SUCCESS", "exit_code": 0}


@pytest.mark.parametrize("command", _section("## Using it") + _section("**Backfills.**"))
def test_readme_commands_run_against_the_demo(demo: dict[str, object], command: str) -> None:
    """With the demo's four days done, each README command succeeds and finds the work already done."""
    env: dict[str, str] = demo["env"]  # type: ignore[assignment]
    done = subprocess.run(
        shlex.split(command), cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "ran successfully" not in output  # everything was done by the demo
    assert not re.search(r" (extracted|loaded) [\d,]+ rows in ", output)  # no task line: nothing ran
    if " status " in command and "--from" in command:  # the completeness matrix: 4 days x 3 tenants x 5 cells
        if "--json" in command:
            matrix = json.loads(done.stdout)
            assert matrix["cells"] == [] if "--missing" in command else len(matrix["cells"]) == 60
        else:
            assert "60 done, 0 missing" in done.stdout
    elif " status " in command and "--json" in command:
        report = json.loads(done.stdout)
        assert report["ok"] is True and {r["tenant"] for r in report["tables"]} == {"demo_north"}
    elif " status " in command:
        assert "15 done, 0 missing, 0 failed" in done.stdout


def test_cron_script_on_the_demo(demo: dict[str, object], tmp_path: Path) -> None:
    env = {**demo["env"], "MOZART_LOG_DIR": str(tmp_path / "logs")}  # type: ignore[dict-item]
    done = subprocess.run(
        [REPO / "scripts" / "cron" / "mozart-daily", "--date", "2026-11-28"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "logs" / "mozart-daily-2026-11-28.log").read_text()
    assert "15 done, 0 missing, 0 failed" in log
    assert "end: exit code 0" in log
