"""Warehouses: Trino + Iceberg (profile ``stack``) and DuckDB (profile ``local``) behind one interface."""

from __future__ import annotations

__all__ = ["EXTRACTED_AT_COLUMN", "PARTITION_COLUMN", "Marker", "Warehouse", "open_warehouse", "prestage_for"]

import datetime as dt
from typing import TYPE_CHECKING

from mozart_luigi.settings import Settings
from mozart_luigi.warehouse.base import EXTRACTED_AT_COLUMN, PARTITION_COLUMN, Marker, Warehouse

if TYPE_CHECKING:
    from mozart_luigi.lake import Lake
    from mozart_luigi.warehouse.iceberg import Prestage


def open_warehouse(settings: Settings, *, tenant: str | None = None) -> Warehouse:
    """The warehouse of the profile: DuckDB for ``local``, Trino for ``stack``. ``tenant`` tags queries."""
    if settings.profile == "stack":
        from mozart_luigi.warehouse.trino import TrinoWarehouse

        return TrinoWarehouse.from_settings(settings, tenant=tenant)
    from mozart_luigi.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse.from_settings(settings)


def prestage_for(
    settings: Settings, lake: Lake, *, tenant: str, table: str, date: dt.date, run_id: str
) -> Prestage | None:
    """The extract's prestage of its parts into the Iceberg table (profile ``stack``; see
    :class:`mozart_luigi.warehouse.iceberg.Prestage`), or None: the load then copies the parts itself."""
    if settings.profile != "stack" or not settings.prestage or lake.scheme != "s3":
        return None
    from mozart_luigi.warehouse.iceberg import IcebergLoader

    return IcebergLoader(settings).prestage(lake, tenant=tenant, table=table, date=date, run_id=run_id)
