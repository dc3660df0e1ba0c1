"""``mozart rerun``: forget what is done for a tenant (and table) and date, then run it again (profile local)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mozart_luigi.cli import main
from mozart_luigi.config import get_config, reset_config_cache
from mozart_luigi.demo import generate_source
from mozart_luigi.lake import Lake
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.warehouse import open_warehouse

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 28)
TENANT = "demo_west"


def _sources(config_dir: Path) -> None:
    config = get_config()
    for tenant in config.tenants.values():
        if tenant.id == TENANT:
            generate_source(Path(tenant.source.path), tenant.id)


def test_rerun_from_extract_extracts_loads_and_builds_again(local: Path) -> None:
    reset_config_cache()
    _sources(local)
    assert main(["run", "--date", DAY.isoformat(), "--tenants", TENANT, "--local-scheduler"]) == 0
    lake = Lake.from_settings(get_config().settings)
    before = lake.read_manifest(TENANT, "orders", DAY).run_id
    other = lake.read_manifest(TENANT, "customers", DAY).run_id
    assert (
        main(
            [
                "rerun",
                "--tenant",
                TENANT,
                "--table",
                "orders",
                "--date",
                DAY.isoformat(),
                "--from-extract",
                "--local-scheduler",
            ]
        )
        == 0
    )
    assert lake.read_manifest(TENANT, "orders", DAY).run_id != before  # extracted again
    assert lake.read_manifest(TENANT, "customers", DAY).run_id == other  # the other table untouched
    moved = [n for n in lake.list_files(lake.date_url(TENANT, "orders", DAY)) if n.startswith("_SUCCESS.rerun-")]
    assert len(moved) == 1
    with open_warehouse(get_config().settings) as warehouse:
        (marker,) = [
            m
            for m in warehouse.markers(TENANT, DAY)
            if m.task_id == LoadIceberg(tenant=TENANT, table="orders", date=DAY).task_id
        ]
        assert marker.details["run_id"] == lake.read_manifest(TENANT, "orders", DAY).run_id
        assert marker.rows == warehouse.count_partition(TENANT, "orders", DAY) > 0
