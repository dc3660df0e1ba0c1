"""Run records: one JSON line per run, appended to ``{MOZART_REPORT_DIR}/runs.jsonl``, never rewritten.

Every entry point writes one: ``mozart run``/``rerun``/``backfill``/``demo`` when they finish (see
:mod:`mozart_luigi.cli`), ``luigi --module mozart_luigi ...`` (``AllTenants``, ``RangeDaily``) at process exit
(see :mod:`mozart_luigi.run_events`), and so cron, which runs ``mozart run``. A record::

    {"run_id": "20261129T021640Z-4242", "started_at": "...", "finished_at": "...", "seconds": 41.2,
     "user": "etl@host", "entry_point": "mozart run", "argv": ["mozart", "run", "--date", "2026-11-28"],
     "profile": "local", "dates": ["2026-11-28"], "tenants": [], "exit_code": 30, "status": "FAILED",
     "log_file": ".../logs/mozart-run-....log", "counts": {"done": 27, "failed": 4},
     "tasks": [{"task": "ExtractTable", "tenant": "demo_west", "table": "orders", "date": "2026-11-28",
                "outcome": "failed", "seconds": 0.4, "rows": null, "error": "ExtractTable: SourceError: ...",
                "dbt_failed_tests": []}]}

``tenants`` is empty when the run covered every tenant. ``tasks`` lists what the run did or could not do
(tasks already complete are left out). ``dbt_failed_tests`` of a failed ``DbtRun`` are read from the
``run_results.json`` the task keeps under ``{report_dir}/dbt/{tenant}/{date}/`` (only when that file was
written during the run).

Appending is safe with concurrent writers: the file is opened with ``O_APPEND`` and each record is one
``write(2)`` of one line, so lines never interleave and a reader never sees half a record from a writer that
finished (a reader skips a last line without its newline).
"""

from __future__ import annotations

__all__ = [
    "RUNS_FILE",
    "append_record",
    "dbt_failed_tests",
    "format_records",
    "new_run_id",
    "read_records",
    "runs_path",
    "short_error",
    "user_at_host",
]

import datetime as dt
import getpass
import json
import logging
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mozart_luigi.dbt_runner import read_run_results
from mozart_luigi.errors import MozartError
from mozart_luigi.settings import Settings

log = logging.getLogger(__name__)

RUNS_FILE = "runs.jsonl"
_QUALIFIED = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+([A-Z]\w*(?:Error|Exception|Failure))\b")


def short_error(error: str) -> str:
    """``mozart_luigi.errors.SourceError: ...`` -> ``SourceError: ...`` for the terminal (records keep it all)."""
    return _QUALIFIED.sub(r"\1", error)


def runs_path(settings: Settings) -> Path:
    return settings.report_dir / RUNS_FILE


def new_run_id(started: dt.datetime) -> str:
    return f"{started.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"


def user_at_host() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append one record as one line: ``O_APPEND`` and a single ``write``. Raises ``OSError``."""
    data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
    finally:
        os.close(fd)
    if written != len(data):  # a full disk; the line is cut and the next reader skips it
        raise OSError(f"{path}: wrote {written} of {len(data)} bytes of a run record")


def read_records(path: Path, *, date: dt.date | None = None) -> list[dict[str, Any]]:
    """The records, oldest first; with ``date`` only the runs that covered it. Unreadable lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if not line.endswith("\n"):
            break  # a record being written
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("%s:%d: not a run record; skipped", path, number)
            continue
        if isinstance(record, dict) and (date is None or date.isoformat() in record.get("dates", [])):
            out.append(record)
    return out


def dbt_failed_tests(settings: Settings, tenant: str, date: dt.date, *, since: dt.datetime) -> list[str]:
    """The names of the dbt tests that failed in the ``run_results.json`` kept for ``tenant`` and ``date``,
    when that file was written at or after ``since`` (a file of an earlier run says nothing of this one)."""
    path = settings.report_dir / "dbt" / tenant / date.isoformat() / "run_results.json"
    try:
        if path.stat().st_mtime < since.timestamp():
            return []
        result = read_run_results(path, tenant=tenant, run_date=date, target="")
    except (OSError, MozartError):
        return []
    return [node.name for node in result.failed if node.resource_type == "test"]


# ------------------------------------------------------------------------------------------------ text


def format_records(records: Sequence[Mapping[str, Any]]) -> str:
    """``mozart runs``: one line per run, then one line per failed task of it."""
    if not records:
        return "no run recorded yet"
    lines: list[str] = []
    for record in records:
        lines.append(_headline(record))
        for task in record.get("tasks", []):
            if task.get("outcome") in ("failed", "scheduling error"):
                lines.append(f"    {_task_label(task)} {task.get('outcome')}: {short_error(task.get('error') or '-')}")
                tests = task.get("dbt_failed_tests") or []
                if tests:
                    lines.append(f"      failing dbt tests: {', '.join(tests)}")
    return "\n".join(lines)


def _headline(record: Mapping[str, Any]) -> str:
    started = str(record.get("started_at", "?"))[:19].replace("T", " ")
    dates = _span(record.get("dates", []))
    tenants = ",".join(record.get("tenants") or []) or "all tenants"
    counts = ", ".join(f"{n} {what}" for what, n in sorted((record.get("counts") or {}).items()))
    seconds = record.get("seconds")
    took = f"{seconds:.0f} s" if isinstance(seconds, int | float) else "?"
    return (
        f"{started}  exit {record.get('exit_code', '?'):>2}  {took:>6}  {record.get('entry_point', '?')}  "
        f"{dates} ({tenants})  {record.get('user', '?')}  {counts or 'nothing to do'}"
    )


def _span(dates: Iterable[str]) -> str:
    days = sorted(dates)
    if not days:
        return "-"
    return days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"


def _task_label(task: Mapping[str, Any]) -> str:
    where = f"{task.get('tenant')}.{task['table']}" if task.get("table") else f"{task.get('tenant')}"
    what = {"ExtractTable": "extract", "LoadIceberg": "load", "DbtRun": "(dbt build)"}.get(task.get("task", ""), "")
    return f"{where} {what} {task.get('date') or ''}".replace("  ", " ").strip()
