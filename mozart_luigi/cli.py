"""The ``mozart`` command: ``validate``, ``plan``, ``status``, ``run``, ``rerun``, ``backfill``, ``demo``,
``runs``, ``enable``, ``audit``.

Exit codes: 0 ok; 2 invalid configuration or arguments; ``run`` and ``demo`` exit with the ``[retcode]``
codes of ``luigi.cfg`` (30 a task failed, 35 scheduling error, ...), ``backfill`` with the highest code of its
dates; 45 when luigid does not answer (``run``, ``rerun``, ``backfill``, ``enable``); ``status`` exits 1 when
something is not done; 141 when the reader of stdout went away (``mozart plan | head``), without a
traceback. Nothing here prints a secret: sources are shown through ``SourceConfig.describe()``.

``run``, ``rerun``, ``backfill`` and ``demo`` are quiet (:mod:`mozart_luigi.terminal`): task lines and a
closing block on stdout, logging in a file under ``{MOZART_DATA_DIR}/logs/``; ``-v`` also logs to stderr.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import luigi
import luigi.configuration

from mozart_luigi import __version__
from mozart_luigi.config import Config, load_config
from mozart_luigi.errors import ConfigError, MozartError
from mozart_luigi.tasks.base import yesterday

if TYPE_CHECKING:
    from mozart_luigi.status_grid import CellKey
    from mozart_luigi.tasks.pipeline import AllTenants

log = logging.getLogger(__name__)

EXIT_OK, EXIT_NOT_DONE, EXIT_CONFIG, EXIT_BROKEN_PIPE = 0, 1, 2, 141
RUN_COMMANDS = ("run", "rerun", "backfill", "demo")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mozart", description="Multi-tenant ETL orchestrated by Luigi.")
    parser.add_argument("--version", action="version", version=f"mozart {__version__}")
    parser.add_argument("--config-dir", help="folder with tenants.yaml and tables.yaml (MOZART_CONFIG_DIR)")
    parser.add_argument("--profile", choices=("local", "stack"), help="MOZART_PROFILE for this command")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default: INFO for run/demo)")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="run/rerun/backfill/demo: also show the log (Luigi, tracebacks) on stderr",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = sub.add_parser("validate", help="check the configuration; print every problem (exit 2 on error)")
    validate.add_argument(
        "--connect",
        action="store_true",
        help="also reach each source (and S3, catalog, Trino); check the named columns",
    )
    for name, text in (
        ("plan", "show the tasks a run would execute; nothing runs"),
        ("status", "the run report of a date, read from the lake and the warehouse"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--date", type=_date, default=None, help="YYYY-MM-DD (default: yesterday)")
        cmd.add_argument("--tenant", action="append", dest="tenants", help="only this tenant (repeatable)")
        cmd.add_argument("--json", action="store_true", help="machine-readable output")
    _status_matrix_options(sub.choices["status"])
    run = sub.add_parser("run", help="run AllTenants for a date, print and write the run report")
    run.add_argument("--date", type=_date, default=None, help="YYYY-MM-DD (default: yesterday)")
    run.add_argument("--tenants", nargs="+", default=None, help="only these tenants")
    rerun = sub.add_parser("rerun", help="forget what is done for a tenant (table) and date, then run it again")
    rerun.add_argument("--tenant", required=True, help="the tenant")
    rerun.add_argument("--table", action="append", dest="tables", help="only this table (repeatable)")
    rerun.add_argument("--date", type=_date, required=True, help="YYYY-MM-DD")
    rerun.add_argument("--from-extract", action="store_true", help="also extract again (moves _SUCCESS aside)")
    backfill = sub.add_parser("backfill", help="run AllTenants for every date of a range, oldest first")
    _range_options(backfill)
    backfill.add_argument("--tenant", action="append", dest="tenants", help="only this tenant (repeatable)")
    backfill.add_argument("--only-missing", action="store_true", help="skip the dates already complete")
    backfill.add_argument("--dry-run", action="store_true", help="print the dates and tasks; run nothing")
    for cmd in (run, rerun, backfill):
        cmd.add_argument("--workers", type=int, default=1, help="parallel Luigi workers (default 1)")
        cmd.add_argument(
            "--local-scheduler",
            action="store_true",
            help="no luigid: schedule in this process (the default in profile local)",
        )
        cmd.add_argument("--luigid", action="store_true", help="use luigid ([core] of luigi.cfg)")
        cmd.add_argument("--scheduler-host", help="luigid host (default: [core] of luigi.cfg; implies --luigid)")
        cmd.add_argument("--scheduler-port", type=int, help="luigid port (default: [core]; implies --luigid)")
    demo = sub.add_parser("demo", help="generate the SQLite demo shops and run the local pipeline")
    demo.add_argument("--date", type=_date, default=None, help="last demo day (default 2026-11-28)")
    demo.add_argument("--workers", type=int, default=1, help="parallel Luigi workers (default 1)")
    for cmd in (run, rerun, backfill, demo):
        cmd.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="also show the log (Luigi, tracebacks) on stderr",
        )
    runs = sub.add_parser("runs", help="the run records: who ran what, when, how it ended (runs.jsonl)")
    runs.add_argument("--date", type=_date, default=None, help="only the runs that covered this date")
    runs.add_argument("--limit", type=int, default=20, help="the newest N runs (default 20; 0: all)")
    runs.add_argument("--json", action="store_true", help="the records as a JSON list")
    audit = sub.add_parser("audit", help="loaded days of incremental tables whose source row count differs now")
    _range_options(audit)
    audit.add_argument("--tenant", action="append", dest="tenants", help="only this tenant (repeatable)")
    audit.add_argument("--json", action="store_true", help="the differing days as a JSON list")
    enable = sub.add_parser("enable", help="re-enable the tasks luigid disabled after repeated failures")
    enable.add_argument("--tenant", action="append", dest="tenants", help="only this tenant (repeatable)")
    enable.add_argument("--date", type=_date, default=None, help="only this date")
    enable.add_argument("--scheduler-host", help="luigid host (default: [core] of luigi.cfg)")
    enable.add_argument("--scheduler-port", type=int, help="luigid port (default: [core] of luigi.cfg)")
    return parser


def _range_options(cmd: argparse.ArgumentParser, *, required: bool = True) -> None:
    cmd.add_argument("--from", dest="from_date", type=_date, required=required, help="first date, YYYY-MM-DD")
    cmd.add_argument("--to", dest="to_date", type=_date, help="last date, included (default: yesterday)")


def _status_matrix_options(status: argparse.ArgumentParser) -> None:
    """``status --from D1 --to D2``: the completeness matrix instead of one date's report."""
    _range_options(status, required=False)
    status.add_argument("--missing", action="store_true", help="matrix: only the cells that are not done")
    status.add_argument("--html", metavar="FILE", help="matrix: also write a static HTML page to FILE")
    status.add_argument("--luigid", action="store_true", help="matrix: ask luigid what is running or disabled")
    status.add_argument("--scheduler-host", help="matrix: luigid host (implies --luigid)")
    status.add_argument("--scheduler-port", type=int, help="matrix: luigid port (implies --luigid)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    if args.config_dir:
        os.environ["MOZART_CONFIG_DIR"] = args.config_dir
    if args.profile:
        os.environ["MOZART_PROFILE"] = args.profile
    args.level = (args.log_level or ("INFO" if args.command in RUN_COMMANDS else "WARNING")).upper()
    _setup_logging(args.level, quiet=args.command in RUN_COMMANDS and not args.verbose)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    except MozartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_DONE
    except BrokenPipeError:
        return _stdout_gone()


def _setup_logging(level: str, *, quiet: bool = False) -> None:
    """Log to stderr, or (``quiet``: run commands without ``-v``) nowhere until the run's log file is opened
    (:func:`mozart_luigi.terminal.log_file`). Luigi is told not to add its own handlers (no duplicated lines)."""
    root = logging.getLogger()
    if quiet:
        root.setLevel(level)
        if not root.handlers:
            root.addHandler(logging.NullHandler())  # not logging's last resort (stderr) either
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")
    for noisy in ("botocore", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _stdout_gone() -> int:
    """The reader of stdout closed it (``mozart plan | head``): no traceback, and none at exit when Python
    flushes stdout either (it is pointed at /dev/null)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests); nothing to flush at exit
        pass
    return EXIT_BROKEN_PIPE


def _print_problems(exc: ConfigError) -> None:
    print(f"configuration invalid: {len(exc.problems)} problem(s)", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


def _config() -> Config:
    return load_config()


# ---------------------------------------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    config = _config()
    s = config.settings
    print(f"configuration OK: {config.config_dir}")
    counts = f"{len(config.tenants)} tenant(s), {len(config.tables)} table(s)"
    print(f"profile {s.profile}; lake {s.lake_url}; {counts}")
    for tenant in config.tenants.values():
        print(f"  {tenant.id}: {tenant.source.describe()} (max_connections {tenant.max_connections})")
        print(f"    tables: {', '.join(tenant.tables) or '(none)'}")
    if not getattr(args, "connect", False):
        return EXIT_OK
    from mozart_luigi.connect_check import check_all

    checks = check_all(config)
    for check in checks:
        print(check.line())
    return EXIT_OK if all(c.ok for c in checks) else EXIT_NOT_DONE


def cmd_plan(args: argparse.Namespace) -> int:
    from mozart_luigi.plan import plan_lines

    config = _config()
    root = _all_tenants(config, args.date, args.tenants)
    lines, counts = plan_lines(root)
    if args.json:
        import json

        print(
            json.dumps(
                {
                    "date": root.date.isoformat(),
                    "counts": counts,
                    "tasks": [{"depth": d, "task": t, "state": s} for d, t, s in lines],
                },
                indent=2,
            )
        )
        return EXIT_OK
    header = f"Plan for {root.date.isoformat()} (profile {config.settings.profile})"
    if counts["to run"] == 0 and counts["error"] == 0:
        print(f"{header}: everything is complete, nothing would run")
    else:
        print(f"{header}: {counts['to run']} to run, {counts['done']} complete, {counts['error']} error(s)")
    for depth, task, state in lines:
        print(f"{'  ' * depth}[{state}] {task}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from mozart_luigi.report import build_report

    if args.from_date or args.to_date or args.missing or args.html or _luigid_wanted(args):
        return _status_matrix(args)
    config = _config()
    root = _all_tenants(config, args.date, args.tenants)
    report = build_report(config, root.date, tenants=root.tenant_ids(config))
    print(report.to_json() if args.json else report.to_text())
    return EXIT_OK if report.ok else EXIT_NOT_DONE


def _status_matrix(args: argparse.Namespace) -> int:
    """The completeness matrix (tenant x table x date) of ``--from`` .. ``--to`` (``--date`` alone: that day)."""
    from mozart_luigi.status_grid import build_matrix
    from mozart_luigi.status_render import to_text, write_html

    if args.date and (args.from_date or args.to_date):
        return _usage_error("give either --date or --from/--to")
    if args.to_date and not args.from_date:
        return _usage_error("--to needs --from")
    config = _config()
    start = args.from_date or args.date or yesterday()
    end = args.to_date or args.date or yesterday()
    if start > end:
        return _usage_error(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    tenants = _all_tenants(config, start, args.tenants).tenant_ids(config)
    live = _luigid_states(args, tenants, start, end) if _luigid_wanted(args) else {}
    matrix = build_matrix(config, start, end, tenants=tenants, live=live)
    shown = matrix.not_done() if args.missing else matrix
    if args.html:
        print(f"html: {write_html(shown, Path(args.html))}", file=sys.stderr)
    print(shown.to_json() if args.json else to_text(shown))
    return EXIT_OK if matrix.ok else EXIT_NOT_DONE


def _luigid_wanted(args: argparse.Namespace) -> bool:
    return bool(
        getattr(args, "luigid", False) or getattr(args, "scheduler_host", None) or getattr(args, "scheduler_port", None)
    )


def _luigid_states(
    args: argparse.Namespace, tenants: Sequence[str], start: dt.date, end: dt.date
) -> dict[CellKey, str]:
    """What luigid holds as running or disabled; a warning (and no such states) when it does not answer."""
    import luigi.interface

    from mozart_luigi.status_grid import luigid_task_list, scheduler_states

    core = luigi.interface.core()
    host, port = args.scheduler_host or core.scheduler_host, args.scheduler_port or core.scheduler_port
    try:
        return scheduler_states(luigid_task_list(host, port), tenants, start, end)
    except OSError as exc:
        print(f"warning: {exc}: running and disabled are not shown", file=sys.stderr)
        return {}


def cmd_run(args: argparse.Namespace) -> int:
    from mozart_luigi.cli_run import execute

    config = _config()
    root = _all_tenants(config, args.date, args.tenants)
    try:
        result = execute(config, args, [root])
    except ValueError as exc:  # contradicting scheduler options
        return _usage_error(str(exc))
    return result if isinstance(result, int) else result[root.date]


def cmd_backfill(args: argparse.Namespace) -> int:
    """``AllTenants`` for each date of ``--from`` .. ``--to``, oldest first, one Luigi run and report per date,
    one run record for the whole backfill.

    A failed date does not stop the next ones; the exit code is the highest of the dates' codes. With the local
    scheduler the whole backfill holds the run lock of ``mozart run`` (exit 10 when it is taken).
    """
    from mozart_luigi.cli_run import execute
    from mozart_luigi.status_grid import date_range

    config = _config()
    end = args.to_date or yesterday()
    if args.from_date > end:
        return _usage_error(f"--from {args.from_date.isoformat()} is after --to {end.isoformat()}")
    dates = date_range(args.from_date, end)
    roots = [_all_tenants(config, d, args.tenants) for d in dates]
    skipped = _complete_dates(dates, args.tenants) if args.only_missing else set()
    todo = [root for root in roots if root.date not in skipped]
    print(
        f"backfill {dates[0].isoformat()} .. {dates[-1].isoformat()} (profile {config.settings.profile}): "
        f"{len(todo)} date(s) to run, {len(skipped)} already complete and skipped",
        flush=True,
    )
    if args.dry_run:
        return _print_backfill_plan(todo)
    try:
        codes = execute(config, args, todo, headers=True, epilogue=_backfill_done)
    except ValueError as exc:
        return _usage_error(str(exc))
    return codes if isinstance(codes, int) else max(codes.values(), default=EXIT_OK)


def _backfill_done(codes: Mapping[dt.date, int]) -> str:
    failed = [f"{d.isoformat()} (exit {code})" for d, code in codes.items() if code]
    not_ok = f", not ok: {', '.join(failed)}" if failed else ""
    return f"backfill done: {len(codes) - len(failed)} date(s) ok{not_ok}"


def _complete_dates(dates: Sequence[dt.date], tenants: Sequence[str] | None) -> set[dt.date]:
    """The dates whose every (chosen) tenant is done: ``AllTenants.bulk_complete``, as ``RangeDaily`` calls it."""
    import functools

    from mozart_luigi.tasks.pipeline import AllTenants

    factory = functools.partial(AllTenants, tenants=tuple(tenants or ()))
    # the classmethod's function with a partial for cls, as RangeDaily calls it (mypy sees only the bound method)
    return set(AllTenants.bulk_complete.__func__(factory, list(dates)))  # type: ignore[attr-defined]


def _print_backfill_plan(roots: Sequence[AllTenants]) -> int:
    from mozart_luigi.plan import plan_lines

    for root in roots:
        lines, counts = plan_lines(root)
        if not counts["to run"] and not counts["error"]:
            print(f"{root.date.isoformat()}: complete, nothing would run")
            continue
        print(
            f"{root.date.isoformat()}: would run {counts['to run']} task(s) ({counts['done']} complete, "
            f"{counts['error']} error(s))"
        )
        for depth, task, state in lines:
            if state != "done":
                print(f"  {'  ' * depth}[{state}] {task}")
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace) -> int:
    """Forget the markers (and with ``--from-extract`` the manifests) of one tenant and date, then run it."""
    from mozart_luigi.lake import Lake
    from mozart_luigi.tasks.dbt import DbtRun
    from mozart_luigi.tasks.load import LoadIceberg
    from mozart_luigi.warehouse import open_warehouse

    config = _config()
    tenant = config.tenant(args.tenant).id
    tables = [t.name for t in config.tables_for(tenant)]
    chosen = [config.table(tenant, name).name for name in args.tables] if args.tables else tables
    loads = [LoadIceberg(tenant=tenant, table=name, date=args.date) for name in chosen]
    with open_warehouse(config.settings, tenant=tenant) as warehouse:
        dbt = DbtRun(tenant=tenant, date=args.date).task_id
        warehouse.delete_markers(tenant, args.date, [t.task_id for t in loads] + [dbt])
    if args.from_extract:
        lake = Lake.from_settings(config.settings)
        stamp = f"rerun-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        for name in chosen:
            lake.move_aside(lake.manifest_url(tenant, name, args.date), stamp)
    what = "extract, load" if args.from_extract else "load"
    print(f"{tenant} {args.date}: {what} of {len(chosen)} table(s) and dbt forgotten; running them again")
    args.tenants = [tenant]
    return cmd_run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from mozart_luigi.cli_run import run_demo_recorded

    return run_demo_recorded(args)


def cmd_runs(args: argparse.Namespace) -> int:
    """The run records (``runs.jsonl``), oldest first: the newest ``--limit``, of ``--date`` when given."""
    import json

    from mozart_luigi.runlog import format_records, read_records, runs_path

    records = read_records(runs_path(_config().settings), date=args.date)
    if args.limit > 0:
        records = records[-args.limit :]
    print(json.dumps(records, indent=2) if args.json else format_records(records))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """Per tenant, incremental table and loaded day of the range: the source's row count in the day's window now
    vs the rows loaded (:mod:`mozart_luigi.audit`). Exit 0 when every day matches, 1 when some differ or a
    tenant could not be audited (its error on stderr; the other tenants are audited), 2 for bad arguments."""
    import json

    from mozart_luigi.audit import audit

    config = _config()
    end = args.to_date or yesterday()
    if args.from_date > end:
        return _usage_error(f"--from {args.from_date.isoformat()} is after --to {end.isoformat()}")
    tenants = _all_tenants(config, end, args.tenants).tenant_ids(config)
    result = audit(config, args.from_date, end, tenants=tenants)
    for tenant, error in result.errors.items():
        print(f"error: tenant {tenant}: not audited: {error}", file=sys.stderr)
    if args.json:
        print(json.dumps([f.to_dict() for f in result.findings], indent=2))
    else:
        print(
            f"audit {args.from_date.isoformat()} .. {end.isoformat()}: {len(result.checked)} loaded day(s) "
            f"compared, {len(result.findings)} differ"
            + (f", {len(result.errors)} tenant(s) failed" if result.errors else "")
        )
        for f in result.findings:
            print(
                f"  {f.tenant}.{f.table} {f.date.isoformat()}: {f.describe()}   "
                f"rerun: mozart rerun --tenant {f.tenant} --table {f.table} "
                f"--date {f.date.isoformat()} --from-extract"
            )
    return EXIT_OK if result.ok else EXIT_NOT_DONE


def cmd_enable(args: argparse.Namespace) -> int:
    """Re-enable what luigid disabled (``re_enable_task``, as the visualizer's button), of ``--tenant`` and
    ``--date`` when given. Exit 45 when luigid does not answer."""
    from mozart_luigi.cli_run import EXIT_LUIGID_UNREACHABLE, Scheduler
    from mozart_luigi.luigid_api import LuigidUnreachable

    client = Scheduler(False, args.scheduler_host, args.scheduler_port).client()
    try:
        disabled = client.disabled(tenants=args.tenants, date=args.date)
        if not disabled:
            print(f"luigid at {client.url} holds no disabled task{_which(args)}")
        for task in disabled:
            done = client.re_enable(task.task_id)
            state = "re-enabled" if done else "not re-enabled (no longer disabled by the scheduler)"
            print(f"{state}: {task.label} {task.date}")
    except LuigidUnreachable as exc:
        print(f"error: {exc}: is luigid running (make luigid)?", file=sys.stderr)
        return EXIT_LUIGID_UNREACHABLE
    if disabled:
        print("the next run runs them again: mozart run" + (f" --date {args.date.isoformat()}" if args.date else ""))
    return EXIT_OK


def _which(args: argparse.Namespace) -> str:
    tenants = f" of {', '.join(args.tenants)}" if args.tenants else ""
    return tenants + (f" for {args.date.isoformat()}" if args.date else "")


_COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "status": cmd_status,
    "run": cmd_run,
    "rerun": cmd_rerun,
    "backfill": cmd_backfill,
    "demo": cmd_demo,
    "runs": cmd_runs,
    "enable": cmd_enable,
    "audit": cmd_audit,
}


# ----------------------------------------------------------------------------------------------- helpers


def _all_tenants(config: Config, date: dt.date | None, tenants: Sequence[str] | None) -> AllTenants:
    from mozart_luigi.tasks.pipeline import AllTenants

    task = AllTenants(date=date or yesterday(), tenants=tuple(tenants or ()))
    task.tenant_ids(config)  # unknown tenants -> ConfigError (exit 2) before anything runs
    return task


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_CONFIG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
