"""What every mozart task shares: the (tenant, date) slice, config access, progress reporting."""

from __future__ import annotations

__all__ = [
    "MarkerBulkComplete",
    "OptionalDateParameter",
    "Progress",
    "RefreshableDay",
    "TenantDateTask",
    "TenantParameter",
    "yesterday",
]

import datetime as dt
import os
import time
import zoneinfo
from collections.abc import Iterable
from typing import Any

import luigi

from mozart_luigi import children
from mozart_luigi.config import Config, get_config
from mozart_luigi.errors import ConfigError, ConfigProblem
from mozart_luigi.names import validate_tenant_id

TIMEZONE_ENV = "MOZART_TIMEZONE"


def yesterday(now: dt.datetime | None = None, *, timezone: str | None = None) -> dt.date:
    """The day before today in ``MOZART_TIMEZONE`` (an IANA name, default ``UTC``), not the host's clock
    zone: a night run at 00:30 in Europe/Paris processes the Paris day that just ended. ``now`` (an aware
    datetime) is injectable for tests."""
    name = timezone or os.environ.get(TIMEZONE_ENV) or "UTC"
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError([ConfigProblem("environment", TIMEZONE_ENV, f"unknown time zone {name!r}")]) from None
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        raise ValueError("yesterday(now=...) needs an aware datetime")
    return moment.astimezone(zone).date() - dt.timedelta(days=1)


class TenantParameter(luigi.Parameter):
    """A tenant id: checked (:func:`~mozart_luigi.names.validate_tenant_id`) when the task is constructed,
    from Python or the command line, so a bad id fails before any SQL, S3 or dbt access. Code behind the
    tasks trusts it."""

    def normalize(self, x: Any) -> str:
        return validate_tenant_id(x, origin="task parameter", key="tenant")


class TenantDateTask(luigi.Task):
    """Parameters name the slice of data; credentials are looked up by tenant inside ``run()``."""

    tenant: str = TenantParameter(description="tenant id from config/tenants.yaml")
    date: dt.date = luigi.DateParameter(description="the day to process, YYYY-MM-DD")

    @property
    def config(self) -> Config:
        return get_config()


# luigi types OptionalParameterMixin.__get__ (T | None) and Parameter.__get__ (T) differently: mypy calls the
# two bases incompatible (luigi ignores the same error on its own OptionalIntParameter)
class OptionalDateParameter(luigi.parameter.OptionalParameterMixin[dt.date], luigi.DateParameter):  # type: ignore[misc]
    """A date, or None (an empty string on the command line)."""

    expected_type = dt.date


class RefreshableDay(TenantDateTask):
    """A day's extract or load, with the ``refresh`` parameter.

    ``refresh=None`` is the day's own task, as it always was: the parameter is left out of its task id, its
    string parameters and its ``repr``, so the ids of existing tasks (and their markers) do not change.
    ``refresh=R`` is the same day redone for the run of date ``R`` (``lookback_days``): a distinct task with
    its own completeness, so a day already complete is really extracted and loaded again (see
    docs/late-rows.md).
    """

    refresh: dt.date | None = OptionalDateParameter(
        default=None,
        positional=False,
        description="the run date re-extracting this day (lookback_days); empty: the day's own task",
    )

    def to_str_params(self, only_significant: bool = False, only_public: bool = False) -> dict[str, str]:
        # luigi leaves Task.to_str_params unannotated; through super() mypy cannot excuse it (untyped_calls_exclude)
        params: dict[str, str] = super().to_str_params(only_significant, only_public)  # type: ignore[no-untyped-call]
        if self.refresh is None:
            params.pop("refresh", None)
        return params

    def __repr__(self) -> str:
        task: Any = self
        parts = [
            f"{name}={param.serialize(getattr(task, name))}"
            for name, param in task.get_params()
            if param.significant and not (name == "refresh" and self.refresh is None)
        ]
        return f"{task.get_task_family()}({', '.join(parts)})"


def _die_with_the_worker(task: TenantDateTask) -> None:
    """With ``--workers`` > 1 Luigi runs each task in a forked process: it dies with its worker (a killed
    run must not leave a task that finishes, and publishes, later)."""
    children.die_with_parent()


# registered by a call, not as a decorator: luigi's event_handler is unannotated (an untyped decorator)
TenantDateTask.event_handler(luigi.Event.START)(_die_with_the_worker)


class Progress:
    """Rate-limited ``set_status_message`` / ``set_progress_percentage`` for the luigid visualizer.

    Each is a synchronous request to luigid, whose one thread also hands out every task of the night
    (benchmarks/README.md, "Night": 6 progress requests per short task were as much luigid time as all its
    ``get_work``). So besides the rate limit, a message or percentage equal to the one last sent is not sent
    again, and 0 % (where luigid starts every task) is never sent.
    """

    def __init__(self, task: luigi.Task, total: int | None, *, every_seconds: float = 2.0) -> None:
        self._task = task
        self._total = total
        self._every = every_seconds
        self._last = 0.0
        self._sent_message: str | None = None
        self._sent_percentage = 0

    def update(self, done: int, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        if self._task.set_status_message is None:  # run() called outside a Luigi worker (tests, debugging)
            return
        if message != self._sent_message:
            self._task.set_status_message(message)
            self._sent_message = message
        if self._total:
            percentage = min(100, round(100 * done / self._total))
        elif self._total == 0:
            percentage = 100
        else:
            return
        if percentage != self._sent_percentage:
            # luigi's Task.__init__ sets this to None (so mypy types it None); a worker sets a callable
            self._task.set_progress_percentage(percentage)  # type: ignore[misc]
            self._sent_percentage = percentage


class MarkerBulkComplete:
    """``bulk_complete`` for tasks whose output is a warehouse marker: many dates in one query."""

    @classmethod
    def bulk_complete(cls, parameter_tuples: Iterable[Any]) -> list[Any]:
        """The parameters whose task has a marker. ``cls`` may be a ``functools.partial`` of the task class
        with the other parameters bound, as RangeDaily passes it."""
        from mozart_luigi.targets import prefetch_markers

        params = list(parameter_tuples)
        tasks = [_instantiate(cls, p) for p in params]
        if not tasks:
            return []
        done = prefetch_markers(tasks[0].task_family, {(t.tenant, t.date) for t in tasks})
        return [p for p, task in zip(params, tasks, strict=True) if task.task_id in done]


def _instantiate(cls: Any, param: Any) -> Any:
    if isinstance(param, dict):
        return cls(**param)
    if isinstance(param, dt.date):
        return cls(date=param)
    if isinstance(param, list | tuple):
        return cls(*param)
    return cls(param)
