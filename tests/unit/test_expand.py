"""``AllTenants --expand``: the whole night handed to luigid up front, or one task per tenant whose subtree a
worker adds when it takes the tenant on (Luigi's dynamic dependencies). Same task ids, same outcome."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import luigi
import pytest
from local_pipeline import build
from luigi.task import flatten

from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.demo import DEMO_DATE, generate_source
from mozart_luigi.plan import plan_lines
from mozart_luigi.tasks import pipeline
from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.tasks.pipeline import AllTenants, TenantPipeline, night_tasks
from mozart_luigi.warehouse import open_warehouse

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 28)


def _walk(task: luigi.Task) -> list[luigi.Task]:
    out, stack, seen = [], [task], set()
    while stack:
        current = stack.pop()
        if current.task_id not in seen:
            seen.add(current.task_id)
            out.append(current)
            stack += flatten(current.requires())
    return out


def test_per_tenant_hands_over_one_task_per_tenant_with_the_same_ids(local: Path) -> None:
    upfront = AllTenants(date=DAY, expand="upfront")
    deferred = AllTenants(date=DAY, expand="per-tenant")
    assert upfront.task_id == deferred.task_id  # how the night is handed over is not part of its identity
    static = _walk(deferred)
    assert [t.get_task_family() for t in static] == ["AllTenants"] + ["TenantPipeline"] * 3
    pipelines = deferred.requires()
    assert all(p.deferred and p.requires() == [] and p.priority < 0 for p in pipelines)
    assert [p.task_id for p in pipelines] == [p.task_id for p in upfront.requires()]
    assert all(not p.deferred and p.priority == 0 for p in upfront.requires())
    # what run() yields is exactly the subtree the upfront graph has under the pipeline
    for lazy, eager in zip(pipelines, upfront.requires(), strict=True):
        yielded = list(lazy.run())
        assert [t.task_id for t in yielded] == [eager.requires().task_id]
        assert list(eager.run()) == []  # upfront: nothing yielded, a plain wrapper
    assert night_tasks(get_config(), get_config().tenants) == len(_walk(upfront)) == 31


def test_auto_defers_past_the_threshold(local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not any(p.deferred for p in AllTenants(date=DAY).requires())  # 31 tasks: upfront
    monkeypatch.setattr(pipeline, "EXPAND_AUTO_TASKS", 30)
    assert all(p.deferred for p in AllTenants(date=DAY).requires())
    # narrowed to one tenant the night is small again
    assert not any(p.deferred for p in AllTenants(date=DAY, tenants=("demo_west",)).requires())
    assert all(p.deferred for p in AllTenants(date=DAY, tenants=("demo_west",), expand="per-tenant").requires())


def test_lookback_days_count_in_the_size(local: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.mkdir()
    repo_config = Path(pipeline.__file__).parents[2] / "config"
    (config / "tenants.yaml").write_text((repo_config / "tenants.yaml").read_text())
    tables = (repo_config / "tables.yaml").read_text()
    assert "  orders:\n" in tables
    (config / "tables.yaml").write_text(tables.replace("  orders:\n", "  orders:\n    lookback_days: 2\n", 1))
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(config))
    reset_config_cache()
    walked = _walk(AllTenants(date=DAY, expand="upfront"))
    assert night_tasks(get_config(), get_config().tenants) == len(walked) == 31 + 3 * 2 * 2


def test_plan_walks_what_a_deferred_pipeline_will_yield(local: Path) -> None:
    lines, counts = plan_lines(AllTenants(date=DAY, expand="per-tenant", tenants=("demo_west",)))
    families = [text.split("(", 1)[0] for _, text, _ in lines]
    assert families == ["AllTenants", "TenantPipeline", "DbtRun"] + ["LoadIceberg", "ExtractTable"] * 4
    assert counts["to run"] == len(lines)


def test_a_per_tenant_night_runs_tenant_by_tenant_and_is_the_same_night(
    local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker: each tenant's extracts, loads and dbt run before the next tenant is expanded (the deferred
    pipeline's lower priority); afterwards the upfront graph of the same night finds everything complete."""
    tenants = ("demo_north", "demo_west")
    for tenant in tenants:
        generate_source(Path(get_config().tenant(tenant).source.path), tenant)
    ran: list[tuple[str, str]] = []

    def recording(cls: type[luigi.Task]) -> None:
        original = cls.run

        def run(self: luigi.Task):  # type: ignore[no-untyped-def]
            ran.append((self.get_task_family(), self.tenant))
            return original(self)

        monkeypatch.setattr(cls, "run", run)

    for cls in (ExtractTable, DbtRun, TenantPipeline):
        recording(cls)
    result = build(AllTenants(date=DEMO_DATE, tenants=tenants, expand="per-tenant"))
    assert result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS, result.summary_text
    blocks = [tenant for k, (_, tenant) in enumerate(ran) if k == 0 or ran[k - 1][1] != tenant]
    assert sorted(blocks) == sorted(tenants), ran  # no interleaving: one tenant finished before the next expanded
    for tenant in tenants:
        families = [family for family, t in ran if t == tenant]
        # expanded (suspended), its 4 extracts and dbt, then re-run to completion
        assert families[0] == "TenantPipeline" and families[-1] == "TenantPipeline"
        assert families.count("ExtractTable") == 4 and families.count("DbtRun") == 1
    with open_warehouse(get_config().settings) as warehouse:
        done = warehouse.completed_rows("DbtRun", [(t, DEMO_DATE) for t in tenants])
    assert len(done) == 2
    ran.clear()
    again = build(AllTenants(date=DEMO_DATE, tenants=tenants, expand="upfront"))
    assert again.status == luigi.execution_summary.LuigiStatusCode.SUCCESS, again.summary_text
    assert ran == []  # the same night: nothing left to run


def test_a_failing_tenant_does_not_stop_the_others_when_deferred(local: Path) -> None:
    """demo_north's source is not there (its extracts fail): its pipeline stays pending, demo_west, expanded
    after it, completes all the same."""
    generate_source(Path(get_config().tenant("demo_west").source.path), "demo_west")
    assert not Path(get_config().tenant("demo_north").source.path).exists()
    result = build(AllTenants(date=DEMO_DATE, tenants=("demo_north", "demo_west"), expand="per-tenant"))
    assert result.status == luigi.execution_summary.LuigiStatusCode.FAILED, result.summary_text
    with open_warehouse(get_config().settings) as warehouse:
        done = warehouse.completed_rows("DbtRun", [(t, DEMO_DATE) for t in ("demo_north", "demo_west")])
    assert {tenant for _, tenant, _ in done} == {"demo_west"}
    assert "TenantPipeline(tenant=demo_north" in result.summary_text.split("were left pending")[1]
