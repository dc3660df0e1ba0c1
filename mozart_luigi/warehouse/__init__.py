"""Warehouses: Trino + Iceberg (profile ``stack``) and DuckDB (profile ``local``) behind one interface."""

from __future__ import annotations

__all__ = ["EXTRACTED_AT_COLUMN", "PARTITION_COLUMN", "Marker", "Warehouse", "open_warehouse"]

from mozart_luigi.settings import Settings
from mozart_luigi.warehouse.base import EXTRACTED_AT_COLUMN, PARTITION_COLUMN, Marker, Warehouse


def open_warehouse(settings: Settings, *, tenant: str | None = None) -> Warehouse:
    """The warehouse of the profile: DuckDB for ``local``, Trino for ``stack``. ``tenant`` tags queries."""
    if settings.profile == "stack":
        from mozart_luigi.warehouse.trino import TrinoWarehouse

        return TrinoWarehouse.from_settings(settings, tenant=tenant)
    from mozart_luigi.warehouse.duckdb import DuckDBWarehouse

    return DuckDBWarehouse.from_settings(settings)
