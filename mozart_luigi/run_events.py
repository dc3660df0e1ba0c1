"""What each task of a run did, seen from every process of the run, and the session that records the run.

Luigi fires a task's ``START``, ``PROCESSING_TIME``, ``SUCCESS`` and ``FAILURE`` events (its public
``luigi.Task.event_handler`` API) in the process that runs the task: the main process with one worker, a
forked process per task with ``--workers`` > 1. The handlers here append one :class:`TaskEvent` per event
(rows and seconds of a finished task, the error's meaningful line of a failed one) to the run's *spool*, a
JSON-lines file under ``{report_dir}/.spool/`` opened with ``O_APPEND`` (each event one short ``write``), which
the main process reads: :class:`~mozart_luigi.terminal.Terminal` follows it to print one line per finished
task, and :meth:`RunSession.finish` folds it into the run record (:mod:`mozart_luigi.runlog`).

The spool of the running session is module state: a forked task process inherits it, which is how its event
handlers find it. Without an active session the handlers do nothing.

``luigi --module mozart_luigi ...`` (``AllTenants``, ``RangeDaily``) records its runs too, through
:class:`LuigiRunRecorder`, a logging handler named in ``config/logging.ini`` (see its docstring).
"""

from __future__ import annotations

__all__ = ["LuigiRunRecorder", "RunSession", "Spool", "TaskEvent", "install"]

import atexit
import datetime as dt
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import luigi

from mozart_luigi.config import get_config
from mozart_luigi.errors import MozartError
from mozart_luigi.runlog import append_record, dbt_failed_tests, new_run_id, runs_path, user_at_host
from mozart_luigi.runner import TaskOutcome, config_secrets, error_line, retcodes
from mozart_luigi.secrets import redact
from mozart_luigi.settings import Settings

log = logging.getLogger(__name__)

START, DONE, FAILED = "start", "done", "failed"
_FACTS_ERRORS = (MozartError, OSError, ValueError, KeyError)


@dataclass(frozen=True)
class TaskEvent:
    """One event of one task. ``tenant`` is None for tasks that are not mozart's (``AllTenants``, ...)."""

    kind: str
    task_id: str
    family: str
    tenant: str | None = None
    date: str | None = None
    table: str | None = None
    seconds: float | None = None
    rows: int | None = None
    models: int | None = None
    tests: int | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskEvent:
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


class Spool:
    """The run's event file: appended to by every process of the run, read by its main process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def append(self, event: TaskEvent) -> None:
        data = (json.dumps({k: v for k, v in asdict(event).items() if v is not None}) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def read_new(self) -> list[TaskEvent]:
        """The events appended since the last call (whole lines only)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        out = []
        for line in complete.splitlines():
            try:
                out.append(TaskEvent.from_dict(json.loads(line)))
            except (ValueError, TypeError):  # a line cut by a full disk: its task keeps no detail
                log.debug("%s: skipped a damaged event line", self.path)
        return out

    def read_all(self) -> list[TaskEvent]:
        return Spool(self.path).read_new()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- the session

_ACTIVE: dict[str, Any] = {"spool": None, "luigi_run": None}
_SECONDS: dict[str, float] = {}


class RunSession:
    """One run in the making: when it started, who started it how, and its spool. ``activate`` before
    ``luigi.build``, ``finish`` once after it (several builds may share a session: a backfill)."""

    def __init__(self, settings: Settings, *, entry_point: str, argv: Sequence[str]) -> None:
        self.settings = settings
        self.started = dt.datetime.now(dt.UTC)
        self.run_id = new_run_id(self.started)
        self.entry_point = entry_point
        self.argv = list(argv)
        self.spool = Spool(settings.report_dir / ".spool" / f"{self.run_id}.jsonl")

    def activate(self) -> None:
        install()
        _ACTIVE["spool"] = self.spool

    def deactivate(self) -> None:
        if _ACTIVE["spool"] is self.spool:
            _ACTIVE["spool"] = None

    def finish(
        self,
        *,
        exit_code: int,
        status: str,
        tasks: Iterable[TaskOutcome],
        dates: Iterable[dt.date],
        tenants: Sequence[str] = (),
        log_file: Path | None = None,
    ) -> dict[str, Any]:
        """Append the run record (a failure to write it is logged, never raised) and remove the spool."""
        self.deactivate()
        finished = dt.datetime.now(dt.UTC)
        events = {e.task_id: e for e in self.spool.read_all() if e.kind != START}
        entries = [self._entry(task, events.get(task.task_id)) for task in tasks]
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        record = {
            "run_id": self.run_id,
            "started_at": self.started.isoformat(),
            "finished_at": finished.isoformat(),
            "seconds": round((finished - self.started).total_seconds(), 1),
            "user": user_at_host(),
            "entry_point": self.entry_point,
            "argv": self.argv,
            "profile": self.settings.profile,
            "dates": sorted({d.isoformat() for d in dates}),
            "tenants": list(tenants),
            "exit_code": exit_code,
            "status": status,
            "log_file": str(log_file) if log_file else None,
            "counts": counts,
            "tasks": entries,
        }
        try:
            append_record(runs_path(self.settings), record)
        except OSError as exc:
            log.warning("run record not written to %s: %s", runs_path(self.settings), exc)
        self.spool.remove()
        return record

    def _entry(self, task: TaskOutcome, event: TaskEvent | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "task": task.family,
            "tenant": task.tenant,
            "table": task.table,
            "date": task.date.isoformat() if task.date else None,
            "outcome": task.outcome,
            "seconds": event.seconds if event else None,
            "rows": event.rows if event else None,
            "error": task.error or (event.error if event and task.outcome == FAILED else None),
        }
        if task.family == "DbtRun":
            entry["models"], entry["tests"] = (event.models, event.tests) if event else (None, None)
            failed = task.outcome == FAILED and task.date is not None
            entry["dbt_failed_tests"] = (
                dbt_failed_tests(self.settings, task.tenant, task.date, since=self.started)
                if failed and task.date
                else []
            )
        return entry


# ---------------------------------------------------------------------------------------- event handlers

_INSTALLED: list[bool] = []


def install() -> None:
    """Register the event handlers (once per process; they act only while a session is active)."""
    if _INSTALLED:
        return
    _INSTALLED.append(True)
    handlers = (
        (luigi.Event.START, _on_start),
        (luigi.Event.PROCESSING_TIME, _on_processing_time),
        (luigi.Event.SUCCESS, _on_success),
        (luigi.Event.FAILURE, _on_failure),
        (luigi.Event.DEPENDENCY_DISCOVERED, _on_discovered),
        (luigi.Event.DEPENDENCY_PRESENT, _on_present),
        (luigi.Event.DEPENDENCY_MISSING, _on_broken),
        (luigi.Event.BROKEN_TASK, _on_broken),
    )
    for event, handler in handlers:
        luigi.Task.event_handler(event)(handler)


def _spool() -> Spool | None:
    spool: Spool | None = _ACTIVE["spool"]
    return spool


def _is_mozart(task: luigi.Task) -> bool:
    """A task that does work for one tenant (not a wrapper such as ``TenantPipeline``)."""
    return isinstance(getattr(task, "tenant", None), str) and not isinstance(task, luigi.WrapperTask)


def _event(kind: str, task: luigi.Task, **facts: Any) -> TaskEvent:
    tenant = getattr(task, "tenant", None) if _is_mozart(task) else None
    date = getattr(task, "date", None)
    return TaskEvent(
        kind=kind,
        task_id=task.task_id,
        family=task.get_task_family(),
        tenant=tenant if isinstance(tenant, str) else None,
        date=date.isoformat() if isinstance(date, dt.date) else None,
        table=getattr(task, "table", None),
        **facts,
    )


def _append(spool: Spool, event: TaskEvent) -> None:
    try:
        spool.append(event)
    except OSError as exc:  # the record loses this task's detail; the run goes on
        log.warning("could not note %s in %s: %s", event.task_id, spool.path, exc)


def _on_start(task: luigi.Task) -> None:
    spool = _spool()
    if spool is not None and _is_mozart(task):
        _append(spool, _event(START, task))


def _on_processing_time(task: luigi.Task, seconds: float) -> None:
    _SECONDS[task.task_id] = float(seconds)


def _on_success(task: luigi.Task) -> None:
    spool = _spool()
    if spool is None:
        return
    seconds = _SECONDS.pop(task.task_id, None)
    facts = _facts(task) if _is_mozart(task) else {}
    _append(spool, _event(DONE, task, seconds=None if seconds is None else round(seconds, 2), **facts))


def _on_failure(task: luigi.Task, exc: BaseException) -> None:
    spool = _spool()
    if spool is not None:
        _append(spool, _event(FAILED, task, error=_error_of(task, exc)))


def _facts(task: Any) -> dict[str, Any]:
    """Rows of a finished extract or load (its manifest), models and tests of a dbt build (its results)."""
    from mozart_luigi.dbt_runner import read_run_results
    from mozart_luigi.lake import Lake

    family, settings = task.get_task_family(), get_config().settings
    try:
        if family in ("ExtractTable", "LoadIceberg"):
            return {"rows": Lake.from_settings(settings).read_manifest(task.tenant, task.table, task.date).row_count}
        if family == "DbtRun":
            path = settings.report_dir / "dbt" / task.tenant / task.date.isoformat() / "run_results.json"
            result = read_run_results(path, tenant=task.tenant, run_date=task.date, target="")
            return {"models": result.models_built, "tests": sum(n.resource_type == "test" for n in result.nodes)}
    except _FACTS_ERRORS as exc:
        log.debug("no facts for %s: %s", task.task_id, exc)
    return {}


def _error_of(task: luigi.Task, exc: BaseException) -> str:
    """``Family: the exception's own line``, secrets redacted (as :func:`mozart_luigi.runner.failures_of`)."""
    try:
        secrets = config_secrets(get_config())
    except MozartError:
        secrets = []
    text = "".join(traceback.format_exception(exc))
    return f"{task.get_task_family()}: {redact(error_line(text), secrets)[:300]}"


# ------------------------------------------------------------------------------ `luigi --module` runs


class LuigiRunRecorder(logging.Handler):
    """Records the runs of the ``luigi`` command (``luigi --module mozart_luigi AllTenants``, ``RangeDaily``);
    handles no log record.

    The mechanism, and why: ``luigi`` sets up logging from ``[core] logging_conf_file`` (``config/logging.ini``,
    named by the project's ``luigi.cfg``) before it schedules anything, and ``logging.config.fileConfig``
    imports and instantiates the handler classes that file names: the one public hook that runs inside the
    unmodified ``luigi`` command. When the process is that command, the instance registers the event handlers
    of :func:`install` (Luigi's public ``luigi.Task.event_handler`` API), starts the run's session (before any
    task process is forked, so ``--workers`` task processes inherit its spool) and registers an ``atexit`` hook;
    the scheduling events of the main process tell it the graph and what was already complete. At exit the
    record is written with the outcome of every mozart task seen and the exit code Luigi's ``[retcode]`` rules
    give for those outcomes (an exit hook cannot read the code ``sys.exit`` was given). luigid reads the same
    file; there, and in any process that is not the ``luigi`` command, it does nothing. A ``luigi`` run from
    elsewhere (no ``luigi.cfg``, another ``logging_conf_file``) is not recorded.
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        if _is_luigi_command() and _ACTIVE["luigi_run"] is None:
            install()
            _ACTIVE["luigi_run"] = run = _LuigiCliRun()
            run.start()
            atexit.register(_finish_luigi_run)

    def emit(self, record: logging.LogRecord) -> None:
        return


def _is_luigi_command() -> bool:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name in ("luigi", "luigi.exe") or sys.argv[0].endswith(os.path.join("luigi", "__main__.py"))


class _LuigiCliRun:
    """What the main process of a ``luigi`` run sees while scheduling: the graph and what was complete."""

    def __init__(self) -> None:
        self.session: RunSession | None = None
        self.pid = os.getpid()
        self.tasks: dict[str, luigi.Task] = {}
        self.deps: set[str] = set()
        self.present: set[str] = set()
        self.broken: dict[str, str] = {}

    def start(self) -> None:
        """The session, before anything is scheduled (so forked task processes inherit its spool)."""
        try:
            settings = get_config().settings
        except Exception as exc:  # noqa: BLE001 - recording must never stop the luigi command from running
            log.warning("this luigi run is not recorded: %s", exc)
            return
        self.session = RunSession(settings, entry_point="luigi", argv=["luigi", *sys.argv[1:]])
        self.session.activate()

    def see(self, task: luigi.Task) -> None:
        if os.getpid() == self.pid:
            self.tasks.setdefault(task.task_id, task)

    def finish(self) -> None:
        if self.session is None or os.getpid() != self.pid:
            return
        events = {e.task_id: e for e in self.session.spool.read_all() if e.kind != START}
        outcomes = [
            self._outcome(task, events.get(tid))
            for tid, task in self.tasks.items()
            if _is_mozart(task) and tid not in self.present
        ]
        outcomes += [_from_event(e) for tid, e in events.items() if e.tenant and tid not in self.tasks]
        roots = [tid for tid in self.tasks if tid not in self.deps]
        code, status = self._exit_code(events, roots)
        root_tenants = [t for tid in roots for t in getattr(self.tasks[tid], "tenants", ()) or ()]
        dates = {o.date for o in outcomes if o.date} | {
            d for tid in roots if isinstance(d := getattr(self.tasks[tid], "date", None), dt.date)
        }
        self.session.finish(exit_code=code, status=status, tasks=outcomes, dates=dates, tenants=root_tenants)

    def _outcome(self, task: Any, event: TaskEvent | None) -> TaskOutcome:
        date = getattr(task, "date", None)
        day = date if isinstance(date, dt.date) else None
        error: str | None
        if task.task_id in self.broken:
            outcome, error = "scheduling error", self.broken[task.task_id]
        elif event is not None:
            outcome, error = event.kind, event.error
        else:
            outcome, error = "not run", None
        return TaskOutcome(
            task.task_id, task.get_task_family(), task.tenant, day, getattr(task, "table", None), outcome, error
        )

    def _exit_code(self, events: Mapping[str, TaskEvent], roots: Sequence[str]) -> tuple[int, str]:
        codes = retcodes()
        failed = any(e.kind == FAILED for e in events.values())
        code = max(codes["task_failed"] if failed else 0, codes["scheduling_error"] if self.broken else 0)
        if code:
            return code, "FAILED" if failed else "SCHEDULING_FAILED"
        finished = {tid for tid, e in events.items() if e.kind == DONE} | self.present
        if any(root not in finished for root in roots):
            return codes["not_run"] or 1, "NOT_RUN"
        return 0, "SUCCESS"


def _from_event(event: TaskEvent) -> TaskOutcome:
    """The outcome of a task only the spool knows (run without any scheduling event: a root without
    dependencies)."""
    day = dt.date.fromisoformat(event.date) if event.date else None
    return TaskOutcome(event.task_id, event.family, event.tenant or "", day, event.table, event.kind, event.error)


def _luigi_run() -> _LuigiCliRun | None:
    run: _LuigiCliRun | None = _ACTIVE["luigi_run"]
    return run


def _on_discovered(task: luigi.Task, dependency: luigi.Task) -> None:
    run = _luigi_run()
    if run is not None:
        run.see(task)
        run.see(dependency)
        run.deps.add(dependency.task_id)


def _on_present(task: luigi.Task) -> None:
    run = _luigi_run()
    if run is not None:
        run.see(task)
        run.present.add(task.task_id)


def _on_broken(task: luigi.Task, exc: BaseException | None = None) -> None:
    """``BROKEN_TASK`` (``requires()`` raised) or ``DEPENDENCY_MISSING`` (``complete()`` raised; or an
    external task without its data, which is no scheduling error and is left out)."""
    run = _luigi_run()
    external = getattr(task, "run", None) is None
    if run is not None and not (external and exc is None):
        run.see(task)
        why = _error_of(task, exc) if exc is not None else f"{task.get_task_family()}: complete() failed"
        run.broken[task.task_id] = why


def _finish_luigi_run() -> None:
    run = _luigi_run()
    if run is None:
        return
    try:
        run.finish()
    except Exception as exc:  # noqa: BLE001 - an exit hook must not turn a finished run into a traceback
        log.warning("the run record of this luigi run was not written: %s", exc)
