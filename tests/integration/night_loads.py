"""``NightLoads``: a night's extracts and loads of every tenant and table of the active profile, without
dbt — the part of the graph that reads the tenants' databases, for the multi-worker stack test
(``luigi --module night_loads NightLoads --date D``, with ``tests/integration`` on ``PYTHONPATH``)."""

from __future__ import annotations

import datetime as dt

import luigi

from mozart_luigi.config import get_config
from mozart_luigi.tasks.load import LoadIceberg


class NightLoads(luigi.WrapperTask):
    date: dt.date = luigi.DateParameter()

    def requires(self) -> list[LoadIceberg]:
        config = get_config()
        return [
            LoadIceberg(tenant=tenant.id, table=table, date=self.date)
            for tenant in config.tenants.values()
            for table in tenant.tables
        ]
