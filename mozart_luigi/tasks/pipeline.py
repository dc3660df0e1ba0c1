"""The graph people run: ``AllTenants(date)`` -> ``TenantPipeline(tenant, date)`` -> ``DbtRun(tenant, date)``.

``luigi --module mozart_luigi AllTenants`` processes yesterday (computed when the task is created, not when
the module is imported, so a long-lived scheduler process never freezes the date). Backfills use
``RangeDaily --of AllTenants``; :meth:`AllTenants.bulk_complete` answers every date of the range with one
warehouse query.
"""

from __future__ import annotations

__all__ = ["AllTenants", "TenantPipeline", "YesterdayDateParameter"]

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

import luigi

from mozart_luigi.config import Config, get_config
from mozart_luigi.errors import ConfigError, ConfigProblem
from mozart_luigi.targets import prefetch_markers
from mozart_luigi.tasks import base
from mozart_luigi.tasks.dbt import DbtRun

log = logging.getLogger(__name__)


class YesterdayDateParameter(luigi.DateParameter):
    """A ``DateParameter`` that defaults to yesterday, evaluated each time a task is instantiated.

    The command line and ``luigi.cfg`` still win; only when neither gives a value is yesterday used.
    (``has_task_value`` / ``task_value`` are the public pair ``Task`` asks for a value not passed in.)
    """

    def has_task_value(self, task_name: str, param_name: str) -> bool:
        # yesterday() is computed (and a bad MOZART_TIMEZONE raised) here too, where Luigi reports it
        # (luigi leaves Parameter's has_task_value/task_value unannotated; through super() mypy cannot excuse them)
        return super().has_task_value(task_name, param_name) or base.yesterday() is not None  # type: ignore[no-untyped-call]

    def task_value(self, task_name: str, param_name: str) -> Any:
        if super().has_task_value(task_name, param_name):  # type: ignore[no-untyped-call]
            return super().task_value(task_name, param_name)  # type: ignore[no-untyped-call]
        return self.normalize(base.yesterday())


class TenantPipeline(luigi.WrapperTask):
    """Everything one tenant needs for one day; complete when the tenant's ``DbtRun`` is."""

    tenant: str = base.TenantParameter(description="tenant id from config/tenants.yaml")
    date: dt.date = luigi.DateParameter(description="the day to process, YYYY-MM-DD")

    def requires(self) -> DbtRun:
        return DbtRun(tenant=self.tenant, date=self.date)


class AllTenants(luigi.WrapperTask):
    """One :class:`TenantPipeline` per tenant of the active profile (or of ``tenants`` when given)."""

    date: dt.date = YesterdayDateParameter(description="the day to process, YYYY-MM-DD (default: yesterday)")
    tenants: tuple[str, ...] = luigi.ListParameter(
        default=(), description="JSON list narrowing the run, e.g. '[\"acme\"]' (default: every tenant)"
    )

    def tenant_ids(self, config: Config | None = None) -> list[str]:
        """The tenants this run covers, in config order. Unknown names are a :class:`ConfigError`."""
        config = config or get_config()
        if not self.tenants:
            return list(config.tenants)
        unknown = sorted(set(self.tenants) - set(config.tenants))
        if unknown:
            known = ", ".join(config.tenants) or "(none)"
            raise ConfigError(
                [
                    ConfigProblem(
                        "AllTenants",
                        "tenants",
                        f"unknown tenant {name!r} in profile {config.settings.profile!r}; known: {known}",
                    )
                    for name in unknown
                ]
            )
        return [t for t in config.tenants if t in set(self.tenants)]

    def requires(self) -> list[TenantPipeline]:
        return [TenantPipeline(tenant=t, date=self.date) for t in self.tenant_ids()]

    @classmethod
    def bulk_complete(cls, parameter_tuples: Iterable[Any]) -> list[Any]:
        """The dates (of ``parameter_tuples``) whose every tenant has a ``DbtRun`` marker: one query.

        The answer also fills the marker cache, so the ``DbtRun.complete()`` calls that follow are free.

        ``RangeDaily`` passes a ``functools.partial`` of the class (carrying ``--of-params``) as ``cls``,
        so this only calls ``cls(date=...)``.
        """
        factory: Callable[..., AllTenants] = cls
        dates = list(parameter_tuples)
        if not dates:
            return []
        config = get_config()
        wanted = {d: _dbt_task_ids(factory(date=d), config) for d in dates}
        pairs = [(tenant, _as_date(d)) for d, ids in wanted.items() for tenant in ids]
        done = prefetch_markers(DbtRun.get_task_family(), pairs, settings=config.settings)
        complete = [d for d, ids in wanted.items() if set(ids.values()) <= done]
        log.info("bulk_complete: %d of %d date(s) already complete", len(complete), len(dates))
        return complete


def _dbt_task_ids(task: AllTenants, config: Config) -> dict[str, str]:
    """``{tenant: DbtRun task id}`` for one ``AllTenants`` instance."""
    return {t: DbtRun(tenant=t, date=task.date).task_id for t in task.tenant_ids(config)}


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value
