"""The graph people run: ``AllTenants(date)`` -> ``TenantPipeline(tenant, date)`` -> ``DbtRun(tenant, date)``.

``luigi --module mozart_luigi AllTenants`` processes yesterday (computed when the task is created, not when
the module is imported, so a long-lived scheduler process never freezes the date). Backfills use
``RangeDaily --of AllTenants``; :meth:`AllTenants.bulk_complete` answers every date of the range with one
warehouse query.

**How much of the graph luigid gets up front** (``AllTenants --expand``, or ``expand`` in the
``[AllTenants]`` section of ``luigi.cfg``): ``upfront`` hands every task of the night to luigid before the
first one runs (the whole graph in the visualizer at once); ``per-tenant`` hands only the ``TenantPipeline``
of each tenant, and a worker that runs one *yields* its ``DbtRun`` — Luigi's dynamic dependencies — so that
tenant's extracts, loads and dbt run are added when a worker takes the tenant on. A worker prefers the
tasks of tenants already taken on to expanding another (``TenantPipeline`` has a lower priority), so the
pending set in luigid stays near the tenants being worked on: the hand-over is one task per tenant instead
of ``2 x tables + 2`` (a worker hands luigid ~150-200 tasks/s), and each ``get_work``, which sorts every
pending task, walks a set that many times smaller. ``auto`` (the default) is ``per-tenant`` when the night
has more than :data:`EXPAND_AUTO_TASKS` tasks. A tenant that fails stops only its own subtree either way.
docs/operations.md "Big nights".
"""

from __future__ import annotations

__all__ = ["EXPAND_AUTO_TASKS", "AllTenants", "TenantPipeline", "YesterdayDateParameter", "night_tasks"]

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import luigi

from mozart_luigi.config import Config, get_config
from mozart_luigi.errors import ConfigError, ConfigProblem
from mozart_luigi.targets import prefetch_markers
from mozart_luigi.tasks import base
from mozart_luigi.tasks.dbt import DbtRun

log = logging.getLogger(__name__)

# ``--expand auto``: past this many tasks in a night, hand luigid one task per tenant (module docstring).
# At ~5-7 ms per task handed over (benchmarks/README.md, "Night"), 4,000 tasks are ~20-30 s before the first
# one can run, and luigid's ``get_work`` sorts them all on every call.
EXPAND_AUTO_TASKS = 4000
# A deferred pipeline's (and its root's) priority: below the default 0 of the tasks of tenants taken on.
DEFERRED_PRIORITY = -100


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
    """Everything one tenant needs for one day; complete when the tenant's ``DbtRun`` is.

    ``deferred`` (set by ``AllTenants --expand per-tenant``; not part of the task id): the ``DbtRun`` is not a
    static requirement but yielded by :meth:`run` (a dynamic dependency), so luigid learns this tenant's
    subtree only when a worker takes the tenant on. Its low priority makes a worker finish what it has taken
    on before expanding the next tenant.
    """

    tenant: str = base.TenantParameter(description="tenant id from config/tenants.yaml")
    date: dt.date = luigi.DateParameter(description="the day to process, YYYY-MM-DD")
    deferred: bool = luigi.BoolParameter(
        default=False,
        significant=False,
        description="hand the tenant's tasks to luigid when a worker takes it on (AllTenants --expand)",
    )

    @property
    def priority(self) -> int:  # type: ignore[override]  # a property over luigi's class attribute
        return DEFERRED_PRIORITY if self.deferred else 0

    def dbt_run(self) -> DbtRun:
        """The tenant's work for the date: its ``DbtRun``, which requires every load and extract."""
        return DbtRun(tenant=self.tenant, date=self.date)

    def requires(self) -> DbtRun | list[DbtRun]:
        return [] if self.deferred else self.dbt_run()

    def planned_requires(self) -> list[DbtRun]:
        """What the tenant needs whatever ``deferred`` says (``mozart plan`` walks this)."""
        return [self.dbt_run()]

    def complete(self) -> bool:
        return bool(self.dbt_run().complete())

    def run(self) -> Iterator[DbtRun]:
        if self.deferred:
            # Luigi re-runs this after the yielded task is done; then the yield returns and the task is DONE.
            yield self.dbt_run()


class AllTenants(luigi.WrapperTask):
    """One :class:`TenantPipeline` per tenant of the active profile (or of ``tenants`` when given)."""

    date: dt.date = YesterdayDateParameter(description="the day to process, YYYY-MM-DD (default: yesterday)")
    tenants: tuple[str, ...] = luigi.ListParameter(
        default=(), description="JSON list narrowing the run, e.g. '[\"acme\"]' (default: every tenant)"
    )
    expand: str = luigi.ChoiceParameter(
        choices=("auto", "upfront", "per-tenant"),
        default="auto",
        significant=False,
        description="when luigid gets each tenant's tasks: all before the first runs (upfront), when a worker "
        f"takes the tenant on (per-tenant), or per-tenant past {EXPAND_AUTO_TASKS} tasks (auto)",
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

    @property
    def priority(self) -> int:  # type: ignore[override]  # a property over luigi's class attribute
        # luigid raises a task's priority to its dependents' (a root at 0 would lift every deferred pipeline
        # back to 0, level with the tasks of tenants already taken on): the root of a deferred night is low too
        return DEFERRED_PRIORITY if self.deferred() else 0

    def deferred(self, config: Config | None = None) -> bool:
        """Whether this night hands luigid one task per tenant (``expand``; ``auto`` counts the tasks)."""
        if self.expand != "auto":
            return bool(self.expand == "per-tenant")
        config = config or get_config()
        key = (id(config), EXPAND_AUTO_TASKS)  # luigid asks the priority, the worker the requirements: count once
        if getattr(self, "_deferred_for", None) != key:
            self._deferred = night_tasks(config, self.tenant_ids(config)) > EXPAND_AUTO_TASKS
            self._deferred_for = key
        return self._deferred

    def requires(self) -> list[TenantPipeline]:
        config = get_config()
        deferred = self.deferred(config)
        return [TenantPipeline(tenant=t, date=self.date, deferred=deferred) for t in self.tenant_ids(config)]

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


def night_tasks(config: Config, tenants: Iterable[str]) -> int:
    """The tasks of one night of ``tenants`` when the whole graph is handed over: the root, and per tenant its
    ``TenantPipeline``, ``DbtRun`` and an extract and a load per table and per lookback day."""
    return 1 + sum(2 + 2 * sum(1 + table.lookback_days for table in config.tables_for(tenant)) for tenant in tenants)


def _dbt_task_ids(task: AllTenants, config: Config) -> dict[str, str]:
    """``{tenant: DbtRun task id}`` for one ``AllTenants`` instance."""
    return {t: DbtRun(tenant=t, date=task.date).task_id for t in task.tenant_ids(config)}


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value
