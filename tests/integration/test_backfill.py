"""Backfills: ``luigi --module mozart_luigi RangeDaily --of AllTenants`` runs the missing days
(``--task-limit`` of them per invocation), and the next invocation finds them done through
``AllTenants.bulk_complete`` (one warehouse query, logged), scheduling nothing but the range itself."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pipeline_helpers import BIN, Setup, cleanup, local_setup, run, stack_setup, unique

pytestmark = pytest.mark.integration
# RangeDaily clips the range to --days-back (100) days before "now": pin now, so the test works any day.
NOW = str(int(dt.datetime(2026, 11, 29, 6, tzinfo=dt.UTC).timestamp()))


def _range(setup: Setup, start: str, stop: str, *extra: str, log: Path) -> str:
    argv = [
        str(BIN / "luigi"),
        "--module",
        "mozart_luigi",
        "RangeDaily",
        "--of",
        "AllTenants",
        "--start",
        start,
        "--stop",
        stop,
        "--now",
        NOW,
        "--local-scheduler",
        *extra,
    ]
    done = run(argv, setup, log=log)
    assert done.returncode == 0, log.read_text()[-6000:]
    return done.stderr


def _dbt_done(setup: Setup, day: str) -> set[str]:
    done = run([str(BIN / "mozart"), "status", "--date", day, "--json"], setup)
    report = json.loads(done.stdout)
    return {row["tenant"] for row in report["dbt"] if row["status"] == "done"}


def test_backfill_local_with_task_limit(tmp_path: Path) -> None:
    setup = local_setup(tmp_path, ["demo_west"])
    log = tmp_path / "backfill.log"
    days = ["2026-11-25", "2026-11-26", "2026-11-27"]
    first = _range(setup, days[0], "2026-11-28", "--task-limit", "2", log=log)
    assert "bulk_complete: 0 of 3 date(s) already complete" in first
    assert [_dbt_done(setup, d) for d in days] == [{"demo_west"}, {"demo_west"}, set()]  # oldest first
    second = _range(setup, days[0], "2026-11-28", "--task-limit", "2", log=log)
    assert "bulk_complete: 2 of 3 date(s) already complete" in second
    assert _dbt_done(setup, days[2]) == {"demo_west"}
    third = _range(setup, days[0], "2026-11-28", log=log)
    assert "bulk_complete: 3 of 3 date(s) already complete" in third
    assert "ran successfully" not in third  # nothing ran: only the (complete) range was scheduled
    assert "AllTenants(" not in third.split("Luigi Execution Summary")[-2]


def test_backfill_stack_fills_the_gaps(stack_env: dict[str, str], tmp_path: Path) -> None:
    """The newest day runs first (the sample shop's order items point at orders updated on later days, so
    dbt's relationships tests hold once the newest day is in); the backfill then finds it done and fills
    the two days before it, which build as of the newest day."""
    setup = stack_setup(tmp_path, stack_env, unique("t_backfill"), ["acme"])
    log = tmp_path / "backfill.log"
    of_params = json.dumps({"tenants": setup.tenants})
    days = ("2026-11-26", "2026-11-27", "2026-11-28")
    try:
        newest = run([str(BIN / "mozart"), "run", "--date", days[-1], "--local-scheduler"], setup, log=log)
        assert newest.returncode == 0, log.read_text()[-6000:]
        first = _range(setup, days[0], "2026-11-29", "--of-params", of_params, "--workers", "2", log=log)
        assert "bulk_complete: 1 of 3 date(s) already complete" in first
        assert "AllTenants(date=2026-11-28" not in first.split("Luigi Execution Summary")[-2]
        for day in days:
            assert _dbt_done(setup, day) == set(setup.tenants), day
        second = _range(setup, days[0], "2026-11-29", "--of-params", of_params, log=log)
        assert "bulk_complete: 3 of 3 date(s) already complete" in second
        assert "ran successfully" not in second
    finally:
        cleanup(setup)
