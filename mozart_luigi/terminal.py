"""The quiet, human terminal of ``mozart run``, ``rerun``, ``backfill`` and ``demo``.

- One line per finished task, from the run's task events (:mod:`mozart_luigi.run_events`)::

      acme.orders 2026-11-28 extracted 1,204,311 rows in 3.1 s
      acme.orders 2026-11-28 loaded 1,204,311 rows in 2.0 s
      acme (dbt build) 2026-11-28 9 models, 38 tests in 18.2 s
      globex.orders 2026-11-28 extract FAILED: ExtractTable: SourceError: ...

  (``grouped``, for the demo's four days: one line per tenant and day instead, failures still one each.)
- On a TTY only, a live progress line under them (``rich``): what is running, how many done, for how long.
- Logging (Luigi's chatter, full tracebacks) goes to one file per run, ``{MOZART_DATA_DIR}/logs/`` (:func:`log_file`);
  ``mozart -v`` also shows it on stderr.
- A closing block per date (:func:`closing_lines`): the counts, what failed grouped by tenant with the
  configuration or source to look at and the exact rerun command, what luigid holds disabled and the
  ``mozart enable`` that re-enables it, and the report's path.
"""

from __future__ import annotations

__all__ = ["Terminal", "closing_lines", "log_file", "task_line"]

import contextlib
import datetime as dt
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from mozart_luigi.config import Config
from mozart_luigi.luigid_api import DisabledTask
from mozart_luigi.report import DONE, FAILED, MISSING, RunReport
from mozart_luigi.run_events import DONE as EVENT_DONE
from mozart_luigi.run_events import FAILED as EVENT_FAILED
from mozart_luigi.run_events import START, Spool, TaskEvent
from mozart_luigi.runlog import dbt_failed_tests
from mozart_luigi.runlog import short_error as _short

_VERB = {"ExtractTable": "extract", "LoadIceberg": "load", "DbtRun": "dbt build"}
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


# ------------------------------------------------------------------------------------------------ logging


@contextlib.contextmanager
def log_file(data_dir: Path, command: str, *, level: str = "INFO", quiet: bool = True) -> Iterator[Path]:
    """Send logging to ``{data_dir}/logs/mozart-{command}-{UTC time}-{pid}.log`` for the block (``quiet``: and
    nowhere else: stream handlers on the root logger are set aside meanwhile). Yields the file's path."""
    folder = data_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mozart-{command}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    aside = [h for h in root.handlers if type(h) is logging.StreamHandler] if quiet else []
    for old in aside:
        root.removeHandler(old)
    root.addHandler(handler)
    level_before = root.level
    root.setLevel(level.upper())
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level_before)
        for old in aside:
            root.addHandler(old)


# ----------------------------------------------------------------------------------------------- task lines


def task_line(event: TaskEvent) -> str | None:
    """The line of a finished or failed task (None for a start, or a task that is not mozart's)."""
    if event.tenant is None or event.kind == START:
        return None
    where = f"{event.tenant}.{event.table}" if event.table else f"{event.tenant} (dbt build)"
    head = f"{where} {event.date}"
    if event.kind == EVENT_FAILED:
        return f"{head} {_VERB.get(event.family, event.family)} FAILED: {_short(event.error or 'see the log')}"
    took = f" in {event.seconds:.1f} s" if event.seconds is not None else ""
    if event.family == "DbtRun":
        return f"{head} {_n(event.models)} models, {_n(event.tests)} tests{took}"
    verb = "extracted" if event.family == "ExtractTable" else "loaded"
    return f"{head} {verb} {_n(event.rows)} rows{took}"


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


class _Groups:
    """``grouped`` mode: one line per tenant and day, when its dbt build finishes (or at the end)."""

    def __init__(self) -> None:
        self._days: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, event: TaskEvent) -> str | None:
        day = self._days.setdefault((event.tenant or "", event.date or ""), {"tables": 0, "rows": 0})
        if event.family == "ExtractTable":
            day["tables"] += 1
            day["rows"] += event.rows or 0
        if event.family != "DbtRun":
            return None
        del self._days[(event.tenant or "", event.date or "")]
        took = f" in {event.seconds:.1f} s" if event.seconds is not None else ""
        return (
            f"{event.tenant} {event.date}: {self._tables(day)}dbt {_n(event.models)} models, "
            f"{_n(event.tests)} tests{took}"
        )

    def rest(self) -> list[str]:
        lines = [
            f"{tenant} {date}: {self._tables(day)}no dbt build"
            for (tenant, date), day in self._days.items()
            if day["tables"]
        ]
        self._days.clear()
        return lines

    @staticmethod
    def _tables(day: Mapping[str, int]) -> str:
        return f"{day['tables']} table(s), {day['rows']:,} rows extracted and loaded; " if day["tables"] else ""


class Terminal:
    """Prints task lines (and, on a TTY, a live progress line) while a run goes on. Thread-safe; a closed
    stdout (``mozart run | head``) stops the printing, never the run."""

    def __init__(self, out: TextIO | None = None, *, live: bool | None = None, grouped: bool = False) -> None:
        self.out = out or sys.stdout
        self._live_wanted = _isatty(self.out) if live is None else live
        self._groups = _Groups() if grouped else None
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}
        self._done = self._failed = 0
        self._since = time.monotonic()
        self._live: Any = None
        self._closed = False

    def __enter__(self) -> Terminal:
        if self._live_wanted:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out, highlight=False, markup=False, emoji=False, soft_wrap=True)
            self._live = Live(console=console, get_renderable=self._status, transient=True, refresh_per_second=4)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for line in self._groups.rest() if self._groups else []:
            self.line(line)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def line(self, text: str) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._live is not None:
                    self._live.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
                else:
                    print(text, file=self.out, flush=True)
            except (BrokenPipeError, ValueError):  # stdout closed by the reader
                self._closed = True

    def writer(self) -> _LineWriter:
        """A text stream for ``print(..., file=...)`` whose lines go through :meth:`line`."""
        return _LineWriter(self)

    def event(self, event: TaskEvent) -> None:
        label = f"{event.tenant}.{event.table}" if event.table else f"{event.tenant}"
        with self._lock:
            if event.kind == START:
                self._running[event.task_id] = f"{label} {_VERB.get(event.family, event.family)}"
                return
            self._running.pop(event.task_id, None)
            self._done += event.kind == EVENT_DONE and event.tenant is not None
            self._failed += event.kind == EVENT_FAILED
        if self._groups is not None and event.kind == EVENT_DONE and event.tenant is not None:
            text = self._groups.add(event)
        else:
            text = task_line(event)
        if text:
            self.line(text)

    @contextlib.contextmanager
    def follow(self, spool: Spool, *, every: float = 0.2) -> Iterator[None]:
        """Print the events the run's processes append to ``spool`` while the block runs, and the rest after."""
        stop = threading.Event()

        def pump() -> None:
            while not stop.wait(every):
                self._feed(spool)

        thread = threading.Thread(target=pump, name="mozart-terminal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self._feed(spool)

    def _feed(self, spool: Spool) -> None:
        for event in spool.read_new():
            self.event(event)

    def _status(self) -> Any:
        from rich.text import Text

        with self._lock:
            running = sorted(self._running.values())
            done, failed = self._done, self._failed
        elapsed = int(time.monotonic() - self._since)
        shown = ", ".join(running[:3]) + (f" and {len(running) - 3} more" if len(running) > 3 else "")
        text = f"{done} done, {failed} failed, {elapsed // 60}:{elapsed % 60:02d}" + (
            f" | running: {shown}" if running else ""
        )
        return Text(text, no_wrap=True, overflow="ellipsis", style="dim")


class _LineWriter:
    """The ``write``/``flush`` of a text stream, one :meth:`Terminal.line` per complete line."""

    def __init__(self, terminal: Terminal) -> None:
        self._terminal = terminal
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._terminal.line(line)
        return len(text)

    def flush(self) -> None:
        return

    def isatty(self) -> bool:
        return False


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------- the closing block


def closing_lines(
    report: RunReport,
    failures: Mapping[tuple[str, str | None], str],
    *,
    config: Config,
    exit_code: int,
    since: dt.datetime,
    disabled: Sequence[DisabledTask] = (),
    report_path: Path | None = None,
) -> list[str]:
    """What a run of ``report.date`` left: counts, failures (grouped, with where to look and the rerun
    command), luigid's disabled tasks with the ``mozart enable`` command, and the report's path."""
    date = report.date.isoformat()
    counts = report.counts()
    head = (
        f"Run report for {date} (profile {report.profile}): {counts[DONE]} done, {counts[MISSING]} missing, "
        f"{counts[FAILED]} failed"
    )
    out = [head + ("" if exit_code == 0 else f" (exit {exit_code})")]
    for (tenant, family, error), tables in _groups(failures, config).items():
        what = ", ".join(tables) if family != "DbtRun" else "(dbt build)"
        out += [
            f"FAILED {tenant} {what}: {error}",
            f"  look at: {_look_at(config, tenant, family, error, date=report.date, since=since)}",
            f"  rerun:   {_rerun(config, tenant, family, tables, date)}",
        ]
    for (tenant, day), tasks in _by_tenant_date(disabled).items():
        out += [
            f"DISABLED by luigid after repeated failures (not run until re-enabled): "
            f"{', '.join(t.label for t in tasks)} {day}",
            f"  after fixing the cause: mozart enable --tenant {tenant} --date {day}",
        ]
    if counts[MISSING] and not failures and not disabled and exit_code:
        out.append(f"not done: {counts[MISSING]} row(s) missing; `mozart status --date {date}` shows them")
    if report_path is not None:
        out.append(f"report: {report_path}")
    return out


def _groups(failures: Mapping[tuple[str, str | None], str], config: Config) -> dict[tuple[str, str, str], list[str]]:
    """``{(tenant, task family, error): [tables]}``: the tables of a tenant that failed the same way (errors
    equal but for the table's name, then shown as ``'*'``), tenants and tables in configuration order."""
    rank = {name: i for i, name in enumerate([*config.tenants, *config.tables])}

    def place(item: tuple[tuple[str, str | None], str]) -> tuple[int, int, str]:
        (tenant, table), _ = item
        return rank.get(tenant, len(rank)), rank.get(table or "", len(rank)), table or ""

    found: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for (tenant, table), error in sorted(failures.items(), key=place):
        family = error.split(":", 1)[0] if table else "DbtRun"
        shown = _short(error)
        alike = shown.replace(f"table '{table}'", "table '*'") if table else shown
        found.setdefault((tenant, family, alike), []).append((table or "(dbt build)", shown))
    return {
        (tenant, family, alike if len(items) > 1 else items[0][1]): [name for name, _ in items]
        for (tenant, family, alike), items in found.items()
    }


def _look_at(config: Config, tenant: str, family: str, error: str, *, date: dt.date, since: dt.datetime) -> str:
    settings = config.settings
    tenants_file = config.config_dir / "tenants.yaml"
    if "ConfigError" in error:
        return f"{tenants_file} and {config.config_dir / 'tables.yaml'} (`mozart validate` lists every problem)"
    if family == "DbtRun":
        results = settings.report_dir / "dbt" / tenant / date.isoformat() / "run_results.json"
        tests = dbt_failed_tests(settings, tenant, date, since=since)
        failing = f"; failing tests: {', '.join(tests)}" if tests else ""
        return f"dbt's results {results}{failing}; the models under dbt/models/; the warehouse, {_warehouse(config)}"
    if family == "LoadIceberg":
        return f"the lake {settings.lake_url} and the warehouse, {_warehouse(config)}; `mozart validate --connect`"
    if any(kind in error for kind in ("SchemaDriftError", "TypeMappingError")):
        return f"the table's columns: tables.yaml under {config.config_dir}, and the source {_source(config, tenant)}"
    return f"the source of {tenant}: tenants.{tenant}.source in {tenants_file} ({_source(config, tenant)})"


def _warehouse(config: Config) -> str:
    settings = config.settings
    if settings.profile == "local":
        return f"DuckDB {settings.duckdb_path}"
    return f"Trino {settings.trino_host}:{settings.trino_port} (catalog {settings.iceberg_rest_uri})"


def _source(config: Config, tenant: str) -> str:
    found = config.tenants.get(tenant)
    return found.source.describe() if found is not None else "not configured in this profile"


def _rerun(config: Config, tenant: str, family: str, tables: Sequence[str], date: str) -> str:
    if family == "DbtRun":
        return f"mozart run --date {date} --tenants {tenant}"
    found = config.tenants.get(tenant)
    every = found is not None and set(tables) >= {t.name for t in config.tables_for(tenant)}
    chosen = "" if every else "".join(f" --table {t}" for t in tables)
    return f"mozart rerun --tenant {tenant}{chosen} --date {date}"


def _by_tenant_date(tasks: Sequence[DisabledTask]) -> dict[tuple[str, str], list[DisabledTask]]:
    out: dict[tuple[str, str], list[DisabledTask]] = {}
    for task in tasks:
        out.setdefault((task.tenant, task.date), []).append(task)
    return out
