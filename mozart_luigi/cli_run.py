"""How ``mozart run``, ``rerun``, ``backfill`` and ``demo`` run: scheduler choice, run lock, log file, the quiet
terminal, run reports and the run record.

Scheduler: the local one in profile ``local`` (or with ``--local-scheduler``), luigid in profile ``stack`` or
when asked (``--luigid``, ``--scheduler-host``, ``--scheduler-port``). luigid is probed once with a short
timeout before anything is built: when it does not answer, the command exits :data:`EXIT_LUIGID_UNREACHABLE`
(45) within seconds instead of going through Luigi's RPC retries (about a minute). (Setting Luigi's
``[core] rpc-retry-attempts`` from here is no option: Luigi then warns that ``core`` does not consume it.)
"""

from __future__ import annotations

__all__ = [
    "EXIT_LUIGID_UNREACHABLE",
    "Scheduler",
    "execute",
    "run_demo_recorded",
    "scheduler_of",
]

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mozart_luigi.config import Config
from mozart_luigi.errors import ConfigError, MozartError
from mozart_luigi.luigid_api import DisabledTask, LuigidClient, LuigidUnreachable
from mozart_luigi.run_events import RunSession
from mozart_luigi.runner import RunLocked, RunOutcome, TaskOutcome, config_secrets, local_run_lock, retcodes
from mozart_luigi.terminal import Terminal, closing_lines, log_file

if TYPE_CHECKING:
    from mozart_luigi.tasks.pipeline import AllTenants

EXIT_LUIGID_UNREACHABLE = 45


@dataclass(frozen=True)
class Scheduler:
    """The local scheduler, or luigid at ``host``/``port`` (None: ``[core]`` of luigi.cfg)."""

    local: bool
    host: str | None = None
    port: int | None = None

    def client(self) -> LuigidClient:
        import luigi.interface

        core = luigi.interface.core()
        return LuigidClient(self.host or core.scheduler_host, self.port or core.scheduler_port)


def scheduler_of(args: argparse.Namespace, config: Config) -> Scheduler:
    """``--local-scheduler``, else luigid when asked for, else the profile's default (local: the local one)."""
    asked = bool(args.luigid or args.scheduler_host or args.scheduler_port)
    if args.local_scheduler and asked:
        raise ValueError("--local-scheduler and --luigid/--scheduler-host/--scheduler-port exclude each other")
    local = args.local_scheduler or (not asked and config.settings.profile == "local")
    return Scheduler(local, None if local else args.scheduler_host, None if local else args.scheduler_port)


@dataclass
class _Run:
    """One command's run: what it chose and what it has done so far."""

    config: Config
    args: argparse.Namespace
    scheduler: Scheduler
    session: RunSession
    terminal: Terminal
    codes: dict[dt.date, int]
    tasks: list[TaskOutcome]


def execute(
    config: Config,
    args: argparse.Namespace,
    roots: Sequence[AllTenants],
    *,
    headers: bool = False,
    epilogue: Callable[[Mapping[dt.date, int]], str] | None = None,
) -> dict[dt.date, int] | int:
    """Run each root (one ``AllTenants`` per date), oldest first; print task lines and a closing block per
    date (``headers``: a ``--- date ---`` line before each), then ``epilogue``'s line and the log file's path;
    write each date's report and one run record. Returns ``{date: exit code}``, or the exit code of a run that
    could not start or go on (10 locked, 45 luigid unreachable)."""
    scheduler = scheduler_of(args, config)
    session = RunSession(config.settings, entry_point=f"mozart {args.command}", argv=["mozart", *args.argv])
    code, status = retcodes()["unhandled_exception"], "ERROR"
    codes: dict[dt.date, int] = {}
    tasks: list[TaskOutcome] = []
    with ExitStack() as stack:
        log_path = stack.enter_context(
            log_file(config.settings.data_dir, args.command, level=args.level, quiet=not args.verbose)
        )
        terminal = stack.enter_context(Terminal())
        try:
            code, status = _start(
                _Run(config, args, scheduler, session, terminal, codes, tasks), roots, headers=headers, stack=stack
            )
        finally:
            session.finish(
                exit_code=code,
                status=status,
                tasks=tasks,
                dates=[r.date for r in roots],
                tenants=list(args.tenants or ()),
                log_file=log_path,
            )
        started = status in ("SUCCESS", "FAILED")
        if started and epilogue is not None:
            terminal.line(epilogue(codes))
        terminal.line(f"log: {log_path}")
    return codes if started else code


def _start(run: _Run, roots: Sequence[AllTenants], *, headers: bool, stack: ExitStack) -> tuple[int, str]:
    """Probe luigid, take the run lock, run every root. Returns (exit code of the run, status)."""
    from luigi.rpc import RPCError

    codes = retcodes()
    if roots and not run.scheduler.local:
        try:
            run.scheduler.client().probe()
        except LuigidUnreachable as exc:
            return _unreachable(exc), "LUIGID_UNREACHABLE"
    try:
        stack.enter_context(local_run_lock(run.config.settings.data_dir, enabled=run.scheduler.local and bool(roots)))
    except RunLocked as exc:
        print(f"error: {exc}; it runs this night's tasks already (or use luigid for several workers)", file=sys.stderr)
        return codes["already_running"], "ALREADY_RUNNING"
    run.session.activate()
    try:
        for root in roots:
            if headers:
                run.terminal.line(f"--- {root.date.isoformat()} ---")
            run.codes[root.date] = _run_root(run, root)
    except RPCError as exc:
        return _unreachable(exc), "LUIGID_UNREACHABLE"
    code = max(run.codes.values(), default=0)
    return code, "SUCCESS" if code == 0 else "FAILED"


def _run_root(run: _Run, root: AllTenants) -> int:
    from mozart_luigi.runner import run_tasks

    with run.terminal.follow(run.session.spool):
        outcome = run_tasks(
            [root],
            workers=run.args.workers,
            local_scheduler=run.scheduler.local,
            scheduler_host=run.scheduler.host,
            scheduler_port=run.scheduler.port,
            secrets=config_secrets(run.config),
        )
    run.tasks.extend(outcome.tasks)
    for line in _after(run, root, outcome):
        run.terminal.line(line)
    return outcome.exit_code


def _after(run: _Run, root: AllTenants, outcome: RunOutcome) -> list[str]:
    """Write the date's report (merged) and return its closing block."""
    from mozart_luigi.report import build_report, write_report

    tenants = root.tenant_ids(run.config)
    failures = outcome.failures_for(root.date)
    try:
        report = build_report(run.config, root.date, tenants=tenants, failures=failures, run=outcome.as_dict())
        path = write_report(report, run.config.settings)
    except MozartError as exc:
        return [f"warning: no run report: {exc}"]
    disabled = [] if run.scheduler.local else _disabled(run.scheduler, tenants, root.date)
    return closing_lines(
        report,
        failures,
        config=run.config,
        exit_code=outcome.exit_code,
        since=run.session.started,
        disabled=disabled,
        report_path=path,
    )


def _disabled(scheduler: Scheduler, tenants: Sequence[str], date: dt.date) -> list[DisabledTask]:
    try:
        return scheduler.client().disabled(tenants=tenants, date=date)
    except LuigidUnreachable as exc:
        print(f"warning: {exc}: disabled tasks are not shown", file=sys.stderr)
        return []


def _unreachable(exc: Exception) -> int:
    print(f"error: {exc}: start luigid (make luigid) or pass --local-scheduler", file=sys.stderr)
    return EXIT_LUIGID_UNREACHABLE


# ------------------------------------------------------------------------------------------------- demo


def run_demo_recorded(args: argparse.Namespace) -> int:
    """``mozart demo`` with the quiet terminal (one line per tenant and day), a log file and a run record."""
    from mozart_luigi.demo import run_demo

    outcomes: list[RunOutcome] = []
    code, status = retcodes()["unhandled_exception"], "ERROR"
    with _demo_session(args) as (session, terminal, log_path):
        try:
            with terminal.follow(session.spool):
                code = run_demo(end=args.date, workers=args.workers, out=terminal.writer(), outcomes=outcomes)
            status = "SUCCESS" if code == 0 else "FAILED"
        except ConfigError:  # e.g. a file the demo did not generate at a source path: nothing written or run
            code, status = 2, "CONFIG_ERROR"  # main() prints the problems and exits 2
            raise
        finally:
            session.finish(
                exit_code=code,
                status=status,
                tasks=[t for outcome in outcomes for t in outcome.tasks],
                dates=_demo_dates(args),
                log_file=log_path,
            )
        terminal.line(f"log: {log_path}")
    return code


@contextmanager
def _demo_session(args: argparse.Namespace) -> Iterator[tuple[RunSession, Terminal, Path]]:
    """The demo's profile (``local``, as :func:`~mozart_luigi.demo.run_demo` forces it), its log and session."""
    import os

    from mozart_luigi.config import get_config, reset_config_cache

    before = os.environ.get("MOZART_PROFILE", "local")
    os.environ["MOZART_PROFILE"] = "local"
    reset_config_cache()
    settings = get_config().settings
    session = RunSession(settings, entry_point="mozart demo", argv=["mozart", *args.argv])
    with (
        log_file(settings.data_dir, "demo", level=args.level, quiet=not args.verbose) as path,
        Terminal(grouped=True) as terminal,
    ):
        if before != "local":
            terminal.line(f"note: the demo runs the local profile (MOZART_PROFILE was {before!r})")
        session.activate()
        try:
            yield session, terminal, path
        finally:
            session.deactivate()


def _demo_dates(args: argparse.Namespace) -> list[dt.date]:
    from mozart_luigi.demo import DEMO_DATE, demo_dates

    return demo_dates(args.date or _env_date() or DEMO_DATE)


def _env_date() -> dt.date | None:
    import os

    raw = os.environ.get("MOZART_DEMO_DATE")
    return dt.date.fromisoformat(raw) if raw else None
