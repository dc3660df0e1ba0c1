"""Run tasks through Luigi and turn the outcome into an exit code (``[retcode]`` semantics) and failures.

``luigi --module mozart_luigi ...`` computes its exit code in ``luigi.retcodes.run_with_retcodes``; ``mozart
run`` calls ``luigi.build`` instead and mirrors that computation here, so both exit with the codes of the
``[retcode]`` section of ``luigi.cfg``.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_RETCODES",
    "RunLocked",
    "RunOutcome",
    "TaskOutcome",
    "config_secrets",
    "error_line",
    "exit_code",
    "failures_of",
    "local_run_lock",
    "outcomes_of",
    "retcodes",
    "run_tasks",
]

import contextlib
import datetime as dt
import fcntl
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import luigi
import luigi.configuration
import luigi.execution_summary as summary
import luigi.rpc
import luigi.scheduler
import luigi.worker
from luigi.retcodes import retcode

from mozart_luigi.config import Config
from mozart_luigi.secrets import Secret, redact

log = logging.getLogger(__name__)

# The [retcode] block of the shipped luigi.cfg; used when no luigi.cfg with a [retcode] section was found
# (luigi's own defaults are all 0, which would hide every failure from cron).
DEFAULT_RETCODES = {
    "already_running": 10,
    "missing_data": 20,
    "not_run": 25,
    "task_failed": 30,
    "scheduling_error": 35,
    "unhandled_exception": 40,
}
# (retcode attribute, summary category) in luigi's order; the highest configured code wins.
_CODES = (
    ("missing_data", "still_pending_ext"),
    ("task_failed", "failed"),
    ("already_running", "run_by_other_worker"),
    ("scheduling_error", "scheduling_error"),
    ("not_run", "not_run"),
)


# Luigi's summary categories -> the outcome a run record names, first match wins ("already_done" is left out:
# a run record lists what the run did or could not do).
_OUTCOMES = (
    ("completed", "done"),
    ("failed", "failed"),
    ("scheduling_error", "scheduling error"),
    ("run_by_other_worker", "run by another worker"),
    ("still_pending_ext", "missing external data"),
    ("upstream_failure", "upstream failed"),
    ("upstream_scheduling_error", "upstream scheduling error"),
    ("upstream_missing_dependency", "upstream missing data"),
    ("upstream_run_by_other_worker", "waiting on another worker"),
    ("not_run", "not run"),
    ("still_pending", "not run"),
)


@dataclass(frozen=True)
class TaskOutcome:
    """What one run did with one mozart task (a task with a ``tenant``): ``outcome`` is ``done``, ``failed``,
    ``not run``, ... (see :data:`_OUTCOMES`); ``error`` the one-line error of a failed task."""

    task_id: str
    family: str
    tenant: str
    date: dt.date | None
    table: str | None
    outcome: str
    error: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    status: str
    exit_code: int
    failures: Mapping[tuple[dt.date | None, str, str | None], str] = field(default_factory=dict)
    summary_text: str = ""
    tasks: tuple[TaskOutcome, ...] = ()

    def failures_for(self, date: dt.date) -> dict[tuple[str, str | None], str]:
        """``{(tenant, table or None): error}`` of the failed tasks of ``date``."""
        return {(tenant, table): err for (day, tenant, table), err in self.failures.items() if day in (date, None)}

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code}


class RunLocked(Exception):
    """Another ``mozart run --local-scheduler`` on this data folder holds the run lock."""


@contextlib.contextmanager
def local_run_lock(data_dir: Path, *, enabled: bool = True) -> Iterator[None]:
    """One local-scheduler run per data folder at a time (``{data_dir}/run.lock``, ``flock``): a second one
    raises :class:`RunLocked` at once (exit ``already_running``, 10) instead of doing the same work. With
    luigid the scheduler coordinates workers, so no lock is taken."""
    if not enabled:
        yield
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "run.lock"
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"another `mozart run --local-scheduler` holds {path}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_tasks(
    tasks: Sequence[luigi.Task],
    *,
    workers: int = 1,
    local_scheduler: bool = True,
    scheduler_host: str | None = None,
    scheduler_port: int | None = None,
    secrets: Iterable[Secret] = (),
) -> RunOutcome:
    """``luigi.build`` the tasks; never raises for task failures (they are in the outcome)."""
    params: dict[str, Any] = {
        "workers": workers,
        "local_scheduler": local_scheduler,
        "detailed_summary": True,
    }
    if scheduler_host:
        params["scheduler_host"] = scheduler_host
    if scheduler_port:
        params["scheduler_port"] = scheduler_port
    factory = _SchedulerKeeper()
    result = luigi.build(list(tasks), worker_scheduler_factory=factory, **params)
    # Luigi has no public form of the summary's categories (LuigiRunResult keeps only the text and a status);
    # see docs/operations.md, "Luigi internals we rely on"
    sets = _settle_not_run(summary._summary_dict(result.worker))
    code = exit_code(sets, roots=tasks)
    failures = failures_of(sets, factory.scheduler, secrets=tuple(secrets))
    return RunOutcome(
        status=result.status.name,
        exit_code=code,
        failures=failures,
        summary_text=result.summary_text,
        tasks=outcomes_of(sets, failures),
    )


class _SchedulerKeeper:
    """``luigi.build``'s ``worker_scheduler_factory`` (a public parameter): makes the scheduler and worker as
    Luigi's default factory does, and keeps the scheduler, so failures are asked of it (``fetch_error``, its
    RPC API) without reaching into the worker's private ``_scheduler``."""

    def __init__(self) -> None:
        self.scheduler: Any = None

    def create_local_scheduler(self) -> luigi.scheduler.Scheduler:
        self.scheduler = scheduler = luigi.scheduler.Scheduler(prune_on_get_work=True, record_task_history=False)
        return scheduler

    def create_remote_scheduler(self, url: str) -> luigi.rpc.RemoteScheduler:
        self.scheduler = scheduler = luigi.rpc.RemoteScheduler(url)
        return scheduler

    def create_worker(self, scheduler: Any, worker_processes: int, assistant: bool = False) -> luigi.worker.Worker:
        return luigi.worker.Worker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)


def outcomes_of(
    sets: Mapping[str, set[luigi.Task]], failures: Mapping[tuple[dt.date | None, str, str | None], str]
) -> tuple[TaskOutcome, ...]:
    """One :class:`TaskOutcome` per mozart task of the run's summary sets that was not already done."""
    out: dict[str, TaskOutcome] = {}
    for category, outcome in _OUTCOMES:
        for task in sorted(sets.get(category, ()), key=lambda t: t.task_id):
            tenant = getattr(task, "tenant", None)
            if task.task_id in out or not isinstance(tenant, str) or isinstance(task, luigi.WrapperTask):
                continue
            date = getattr(task, "date", None)
            day = date if isinstance(date, dt.date) else None
            table = getattr(task, "table", None)
            error = failures.get((day, tenant, table)) if outcome in ("failed", "scheduling error") else None
            out[task.task_id] = TaskOutcome(task.task_id, task.get_task_family(), tenant, day, table, outcome, error)
    return tuple(out.values())


def config_secrets(config: Config) -> list[Secret]:
    """Every secret of the configuration (settings and sources): redacted from errors that are kept."""
    out: list[Secret] = list(config.settings.secrets())
    for tenant in config.tenants.values():
        out += tenant.source.secrets()
    return out


def _settle_not_run(sets: dict[str, set[luigi.Task]]) -> dict[str, set[luigi.Task]]:
    """Tasks this worker was not allowed to run because another worker ran them (luigid) count as done when
    they are complete now (asked afresh), not as ``not_run``."""
    pending = set(sets.get("not_run", ()))
    if not pending:
        return sets
    from mozart_luigi.targets import clear_marker_cache

    clear_marker_cache()
    done_elsewhere = {task for task in pending if _complete(task)}
    if done_elsewhere:
        log.info("%d task(s) were run by another worker and are complete", len(done_elsewhere))
    return {
        **sets,
        "not_run": pending - done_elsewhere,
        "already_done": set(sets.get("already_done", ())) | done_elsewhere,
    }


def _complete(task: luigi.Task) -> bool:
    try:
        return bool(task.complete())
    except Exception as exc:  # noqa: BLE001 - a check that fails leaves the task counted as not run
        log.debug("completeness of %s unknown: %s", task.task_id, exc)
        return False


def exit_code(sets: Mapping[str, set[luigi.Task]], *, roots: Sequence[luigi.Task]) -> int:
    """The exit code ``luigi`` itself would give (``luigi.retcodes``), for several root tasks, except that
    tasks left undone only because another worker runs them (or their upstream) count as
    ``already_running`` (10: someone else is running it), not as ``not_run`` (25)."""
    codes = retcodes()
    others = set(sets.get("run_by_other_worker", ())) | set(sets.get("upstream_run_by_other_worker", ()))
    adjusted = {**sets, "not_run": set(sets.get("not_run", ())) - others, "run_by_other_worker": others}
    code = max((codes[attr] if adjusted.get(category) else 0) for attr, category in _CODES)
    finished = set(sets.get("completed", ())) | set(sets.get("already_done", ()))
    if code == 0 and any(root not in finished for root in roots):
        return (codes["already_running"] if others else codes["not_run"]) or 1
    return code


def retcodes() -> dict[str, int]:
    """``[retcode]`` of luigi.cfg, or :data:`DEFAULT_RETCODES` when no config file has that section."""
    if not luigi.configuration.get_config().has_section("retcode"):
        return dict(DEFAULT_RETCODES)
    codes = retcode()
    return {name: int(getattr(codes, name)) for name in DEFAULT_RETCODES}


def failures_of(
    sets: Mapping[str, set[luigi.Task]], scheduler: Any, secrets: Sequence[Secret] = ()
) -> dict[tuple[dt.date | None, str, str | None], str]:
    """``{(date, tenant, table or None for dbt): one-line error}`` for the tasks that failed; ``scheduler`` is
    the run's (local or remote) scheduler, asked for each error."""
    out: dict[tuple[dt.date | None, str, str | None], str] = {}
    failed = set(sets.get("failed", ())) | set(sets.get("scheduling_error", ()))
    for task in sorted(failed, key=lambda t: t.task_id):
        tenant = getattr(task, "tenant", None)
        if not isinstance(tenant, str):
            continue
        date = getattr(task, "date", None)
        key = (date if isinstance(date, dt.date) else None, tenant, getattr(task, "table", None))
        out.setdefault(key, f"{task.get_task_family()}: {_error_line(scheduler, task, secrets)}")
    return out


def _error_line(scheduler: Any, task: luigi.Task, secrets: Sequence[Secret]) -> str:
    """The last line of the traceback the scheduler stored for the task (its exception message)."""
    try:
        text = scheduler.fetch_error(task.task_id).get("error") or ""
    except Exception as exc:  # noqa: BLE001 - the scheduler may be gone; the report still gets written
        log.debug("cannot fetch the error of %s: %s", task.task_id, exc)
        text = ""
    return redact(error_line(_unquote(text)), secrets)[:300]


def error_line(traceback_text: str) -> str:
    """The meaningful line of a traceback: the exception's own line (``SomeError: message``), never a
    marker line of Python's error locations (``^^^^``) or a source line."""
    lines = [line.strip() for line in traceback_text.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not set(line) <= set("^~ ")]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head and " " not in head and (head.endswith(("Error", "Exception", "Failure")) or "." in head):
            return line
    return lines[-1] if lines else "failed (see the log)"


def _unquote(text: str) -> str:
    """Luigi's worker sends a task's explanation to the scheduler JSON-encoded; decode it when it is."""
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text
