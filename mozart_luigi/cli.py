"""The ``mozart`` command: ``validate``, ``plan``, ``status``, ``run``, ``rerun``, ``backfill``, ``demo``.

Exit codes: 0 ok; 2 invalid configuration or arguments; ``run`` and ``demo`` exit with the ``[retcode]``
codes of ``luigi.cfg`` (30 a task failed, 35 scheduling error, ...), ``backfill`` with the highest code of its
dates; ``status`` exits 1 when something is not done. Nothing here prints a secret: sources are shown through
``SourceConfig.describe()``.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import luigi
import luigi.configuration

from mozart_luigi import __version__
from mozart_luigi.config import Config, load_config
from mozart_luigi.errors import ConfigError, MozartError
from mozart_luigi.runner import RunOutcome
from mozart_luigi.secrets import Secret
from mozart_luigi.tasks.base import yesterday

log = logging.getLogger(__name__)

EXIT_OK, EXIT_NOT_DONE, EXIT_CONFIG = 0, 1, 2


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = sub.add_parser("validate", help="check the configuration; print every problem (exit 2 on error)")
    validate.add_argument("--connect", action="store_true",
                          help="also reach each source (and S3, catalog, Trino); check the named columns")  # fmt: skip
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
        cmd.add_argument("--local-scheduler", action="store_true", help="no luigid: schedule in this process")
        cmd.add_argument("--scheduler-host", help="luigid host (default: [core] of luigi.cfg)")
        cmd.add_argument("--scheduler-port", type=int, help="luigid port (default: [core] of luigi.cfg)")
    demo = sub.add_parser("demo", help="generate the SQLite demo shops and run the local pipeline")
    demo.add_argument("--date", type=_date, default=None, help="last demo day (default 2026-11-28)")
    demo.add_argument("--workers", type=int, default=1, help="parallel Luigi workers (default 1)")
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
    args = _parser().parse_args(argv)
    if args.config_dir:
        os.environ["MOZART_CONFIG_DIR"] = args.config_dir
    if args.profile:
        os.environ["MOZART_PROFILE"] = args.profile
    _setup_logging(args.log_level or ("INFO" if args.command in ("run", "backfill", "demo") else "WARNING"))
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_CONFIG
    except MozartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_DONE


def _setup_logging(level: str) -> None:
    """Log to stderr; Luigi is told not to add its own handlers on top (no duplicated lines)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")
    for noisy in ("botocore", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
    return bool(getattr(args, "luigid", False) or getattr(args, "scheduler_host", None)
                or getattr(args, "scheduler_port", None))  # fmt: skip


def _luigid_states(args: argparse.Namespace, tenants: Sequence[str], start: dt.date, end: dt.date) -> dict:
    """What luigid holds as running or disabled; a warning (and no such states) when it does not answer."""
    import luigi.interface

    from mozart_luigi.status_grid import luigid_task_list, scheduler_states

    core = luigi.interface.core()
    host, port = args.scheduler_host or core.scheduler_host, args.scheduler_port or core.scheduler_port
    try:
        return scheduler_states(luigid_task_list(host, port), tenants, start, end)
    except (OSError, ValueError) as exc:
        print(f"warning: luigid at {host}:{port} did not answer ({exc}): running and disabled are not shown",
              file=sys.stderr)  # fmt: skip
        return {}


def cmd_run(args: argparse.Namespace) -> int:
    from luigi.rpc import RPCError

    from mozart_luigi.runner import RunLocked, local_run_lock, retcodes

    config = _config()
    root = _all_tenants(config, args.date, args.tenants)
    try:
        with local_run_lock(config.settings.data_dir, enabled=bool(args.local_scheduler)):
            return _run_and_report(config, root, args)
    except RPCError as exc:
        return _luigid_unreachable(exc)
    except RunLocked as exc:
        print(f"error: {exc}; it runs this night's tasks already (or use luigid for several workers)",
              file=sys.stderr)  # fmt: skip
        return retcodes()["already_running"]


def cmd_backfill(args: argparse.Namespace) -> int:
    """``AllTenants`` for each date of ``--from`` .. ``--to``, oldest first, one Luigi run and report per date.

    A failed date does not stop the next ones; the exit code is the highest of the dates' codes. With
    ``--local-scheduler`` the whole backfill holds the run lock of ``mozart run`` (exit 10 when it is taken).
    """
    from luigi.rpc import RPCError

    from mozart_luigi.runner import RunLocked, local_run_lock, retcodes
    from mozart_luigi.status_grid import date_range

    config = _config()
    end = args.to_date or yesterday()
    if args.from_date > end:
        return _usage_error(f"--from {args.from_date.isoformat()} is after --to {end.isoformat()}")
    dates = date_range(args.from_date, end)
    roots = [_all_tenants(config, d, args.tenants) for d in dates]
    skipped = _complete_dates(dates, args.tenants) if args.only_missing else set()
    todo = [root for root in roots if root.date not in skipped]
    print(f"backfill {dates[0].isoformat()} .. {dates[-1].isoformat()} (profile {config.settings.profile}): "
          f"{len(todo)} date(s) to run, {len(skipped)} already complete and skipped")  # fmt: skip
    if args.dry_run:
        return _print_backfill_plan(todo)
    try:
        with local_run_lock(config.settings.data_dir, enabled=bool(args.local_scheduler and todo)):
            codes = {root.date: _run_date(config, root, args) for root in todo}
    except RPCError as exc:
        return _luigid_unreachable(exc)
    except RunLocked as exc:
        print(f"error: {exc}; wait for it, or use luigid for several workers", file=sys.stderr)
        return retcodes()["already_running"]
    failed = [f"{d.isoformat()} (exit {code})" for d, code in codes.items() if code]
    not_ok = f", not ok: {', '.join(failed)}" if failed else ""
    print(f"backfill done: {len(codes) - len(failed)} date(s) ok{not_ok}")
    return max(codes.values(), default=EXIT_OK)


def _run_date(config: Config, root: luigi.Task, args: argparse.Namespace) -> int:
    print(f"--- {root.date.isoformat()} ---", flush=True)
    return _run_and_report(config, root, args)


def _complete_dates(dates: Sequence[dt.date], tenants: Sequence[str] | None) -> set[dt.date]:
    """The dates whose every (chosen) tenant is done: ``AllTenants.bulk_complete``, as ``RangeDaily`` calls it."""
    import functools

    from mozart_luigi.tasks.pipeline import AllTenants

    factory = functools.partial(AllTenants, tenants=tuple(tenants or ()))
    return set(AllTenants.bulk_complete.__func__(factory, list(dates)))


def _print_backfill_plan(roots: Sequence[luigi.Task]) -> int:
    from mozart_luigi.plan import plan_lines

    for root in roots:
        lines, counts = plan_lines(root)
        if not counts["to run"] and not counts["error"]:
            print(f"{root.date.isoformat()}: complete, nothing would run")
            continue
        print(f"{root.date.isoformat()}: would run {counts['to run']} task(s) ({counts['done']} complete, "
              f"{counts['error']} error(s))")  # fmt: skip
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
    from mozart_luigi.demo import run_demo

    return run_demo(end=args.date, workers=args.workers)


_COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "status": cmd_status,
    "run": cmd_run,
    "rerun": cmd_rerun,
    "backfill": cmd_backfill,
    "demo": cmd_demo,
}


# ----------------------------------------------------------------------------------------------- helpers


def _all_tenants(config: Config, date: dt.date | None, tenants: Sequence[str] | None) -> luigi.Task:
    from mozart_luigi.tasks.pipeline import AllTenants

    task = AllTenants(date=date or yesterday(), tenants=tuple(tenants or ()))
    task.tenant_ids(config)  # unknown tenants -> ConfigError (exit 2) before anything runs
    return task


def _secrets(config: Config) -> list[Secret]:
    out: list[Secret] = list(config.settings.secrets())
    for tenant in config.tenants.values():
        out += tenant.source.secrets()
    return out


def _run_and_report(config: Config, root: luigi.Task, args: argparse.Namespace) -> int:
    """Run one ``AllTenants`` (``run``, ``backfill``), print and write its report; ``RPCError`` propagates."""
    from mozart_luigi.runner import run_tasks

    outcome = run_tasks(
        [root],
        workers=args.workers,
        local_scheduler=args.local_scheduler,
        scheduler_host=args.scheduler_host,
        scheduler_port=args.scheduler_port,
        secrets=_secrets(config),
    )
    _report_after_run(config, root, outcome)
    return outcome.exit_code


def _luigid_unreachable(exc: Exception) -> int:
    from mozart_luigi.runner import retcodes

    print(f"error: {exc}: start luigid (make luigid) or pass --local-scheduler", file=sys.stderr)
    return retcodes()["unhandled_exception"]


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _report_after_run(config: Config, root: luigi.Task, outcome: RunOutcome) -> None:
    from mozart_luigi.report import build_report, write_report

    try:
        report = build_report(
            config,
            root.date,
            tenants=root.tenant_ids(config),
            failures=outcome.failures_for(root.date),
            run=outcome.as_dict(),
        )
        path = write_report(report, config.settings)
    except MozartError as exc:
        print(f"warning: no run report: {exc}", file=sys.stderr)
        return
    print(report.to_text())
    print(f"report: {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
