"""The graph: shape, the yesterday default, tenant narrowing, no secrets in task ids, bulk_complete."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import luigi
import pytest
from luigi.cmdline_parser import CmdlineParser
from luigi.task import flatten

import mozart_luigi
from mozart_luigi.config import get_config
from mozart_luigi.errors import ConfigError
from mozart_luigi.tasks import base
from mozart_luigi.tasks.pipeline import AllTenants, TenantPipeline
from mozart_luigi.warehouse import Marker, open_warehouse

pytestmark = pytest.mark.unit
CANARY = "canary-Pa55word-91ab"
LOCAL_TENANTS = ["demo_north", "demo_south", "demo_west"]
TABLES = ["customers", "products", "orders", "order_items"]


def _walk(task: luigi.Task) -> list[luigi.Task]:
    out, stack, seen = [], [task], set()
    while stack:
        current = stack.pop()
        if current.task_id in seen:
            continue
        seen.add(current.task_id)
        out.append(current)
        stack += flatten(current.requires())
    return out


def test_module_exports_the_tasks() -> None:
    for name in ("AllTenants", "TenantPipeline", "DbtRun", "LoadIceberg", "ExtractTable"):
        assert isinstance(getattr(mozart_luigi, name), luigi.task_register.Register)


def test_graph_shape(local: Path) -> None:
    day = dt.date(2026, 11, 28)
    tasks = _walk(AllTenants(date=day))
    by_family: dict[str, list[luigi.Task]] = {}
    for task in tasks:
        by_family.setdefault(task.get_task_family(), []).append(task)
    assert {k: len(v) for k, v in by_family.items()} == {
        "AllTenants": 1,
        "TenantPipeline": 3,
        "DbtRun": 3,
        "LoadIceberg": 12,
        "ExtractTable": 12,
    }
    assert {t.date for t in tasks} == {day}
    pipelines = AllTenants(date=day).requires()
    assert [p.tenant for p in pipelines] == LOCAL_TENANTS  # config order
    dbt = pipelines[0].requires()
    assert dbt.get_task_family() == "DbtRun" and dbt.tenant == "demo_north"
    loads = flatten(dbt.requires())
    assert [t.table for t in loads] == TABLES
    assert all(t.requires().get_task_family() == "ExtractTable" for t in loads)


def test_date_defaults_to_yesterday_at_instantiation_not_import(local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert AllTenants().date == dt.date.today() - dt.timedelta(days=1)
    monkeypatch.setattr(base, "yesterday", lambda: dt.date(2030, 1, 2))
    luigi.task_register.Register.clear_instance_cache()
    assert AllTenants().date == dt.date(2030, 1, 2)
    assert AllTenants(date=dt.date(2026, 11, 28)).date == dt.date(2026, 11, 28)


def test_command_line_without_date_gives_yesterday(local: Path) -> None:
    with CmdlineParser.global_instance(["--module", "mozart_luigi", "AllTenants"]) as parser:
        task = parser.get_task_obj()
    assert isinstance(task, AllTenants)
    assert task.date == dt.date.today() - dt.timedelta(days=1)
    with CmdlineParser.global_instance(["AllTenants", "--date", "2026-11-28", "--tenants", '["demo_west"]']) as p:
        task = p.get_task_obj()
    assert task.date == dt.date(2026, 11, 28)
    assert [t.tenant for t in task.requires()] == ["demo_west"]


def test_tenants_narrow_the_run_and_unknown_ones_are_named(local: Path) -> None:
    day = dt.date(2026, 11, 28)
    narrowed = AllTenants(date=day, tenants=("demo_west", "demo_north"))
    assert [t.tenant for t in narrowed.requires()] == ["demo_north", "demo_west"]
    assert narrowed.task_id != AllTenants(date=day).task_id
    with pytest.raises(ConfigError, match="unknown tenant 'acme' in profile 'local'"):
        AllTenants(date=day, tenants=("acme",)).requires()


def test_tenant_pipeline_requires_its_dbt_run(local: Path) -> None:
    pipeline = TenantPipeline(tenant="demo_south", date=dt.date(2026, 11, 27))
    assert pipeline.requires().task_id == mozart_luigi.DbtRun(tenant="demo_south", date=dt.date(2026, 11, 27)).task_id


def test_task_ids_and_params_carry_no_secrets(local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOZART_PROFILE", "stack")
    for name in ("ACME_DB_PASSWORD", "GLOBEX_DB_PASSWORD", "MOZART_S3_SECRET_KEY", "MOZART_S3_ACCESS_KEY"):
        monkeypatch.setenv(name, CANARY)
    tasks = _walk(AllTenants(date=dt.date(2026, 11, 28)))
    assert {t.tenant for t in tasks if hasattr(t, "tenant")} == {"acme", "globex"}
    for task in tasks:
        for text in (task.task_id, repr(task), str(task.to_str_params()), str(task.param_kwargs)):
            assert CANARY not in text
    assert any(t.source.password.reveal() == CANARY for t in get_config().tenants.values() if t.source.password)


def _mark_dbt_done(settings, tenants: list[str], day: dt.date) -> None:
    with open_warehouse(settings) as warehouse:
        for tenant in tenants:
            task = mozart_luigi.DbtRun(tenant=tenant, date=day)
            warehouse.write_marker(Marker(task_family="DbtRun", task_id=task.task_id, tenant=tenant, date=day))


def test_bulk_complete_answers_many_dates_at_once(local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    days = [dt.date(2026, 11, 25) + dt.timedelta(days=n) for n in range(4)]
    settings = get_config().settings
    _mark_dbt_done(settings, LOCAL_TENANTS, days[0])
    _mark_dbt_done(settings, LOCAL_TENANTS, days[2])
    _mark_dbt_done(settings, ["demo_north", "demo_south"], days[3])  # demo_west missing that day
    calls: list[int] = []
    original = type(open_warehouse(settings)).completed_rows

    def counting(self, family, pairs):  # one warehouse query per bulk_complete
        calls.append(1)
        return original(self, family, pairs)

    monkeypatch.setattr(type(open_warehouse(settings)), "completed_rows", counting)
    from mozart_luigi.targets import clear_marker_cache

    clear_marker_cache()
    assert AllTenants.bulk_complete(days) == [days[0], days[2]]
    assert len(calls) == 1
    # RangeDaily passes a partial carrying --of-params: narrowed to the tenants done on days[3]
    narrowed = functools.partial(AllTenants, tenants=("demo_north", "demo_south"))
    clear_marker_cache()
    assert AllTenants.bulk_complete.__func__(narrowed, days) == [days[0], days[2], days[3]]
    assert AllTenants.bulk_complete([]) == []


def test_yesterday_is_utc_by_default_and_follows_mozart_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    from mozart_luigi.errors import ConfigError
    from mozart_luigi.tasks.base import yesterday

    late = dt.datetime(2026, 11, 28, 23, 30, tzinfo=dt.UTC)  # 00:30 on the 29th in Paris
    monkeypatch.delenv("MOZART_TIMEZONE", raising=False)
    assert yesterday(late) == dt.date(2026, 11, 27)
    monkeypatch.setenv("MOZART_TIMEZONE", "Europe/Paris")
    assert yesterday(late) == dt.date(2026, 11, 28)
    assert yesterday(late, timezone="America/New_York") == dt.date(2026, 11, 27)
    monkeypatch.setenv("MOZART_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="MOZART_TIMEZONE: unknown time zone 'Mars/Olympus'"):
        yesterday(late)


def test_dbt_status_outside_a_luigi_worker_is_a_no_op() -> None:
    """``DbtRun.run()`` called directly (debugging): progress reporting must not crash without a worker."""
    from mozart_luigi.tasks.dbt import DbtRun

    task = DbtRun(tenant="acme", date=dt.date(2026, 11, 28))
    assert task.set_status_message is None
    task._status("dbt acme: starting")
    task._status("dbt acme: done", done=True)
