"""Source connectors: one per dialect, behind :class:`Connector` and its :class:`Snapshot`.

``connector_for(tenant)`` picks the class from ``tenant.source.kind``. Nothing connects until
:meth:`Connector.snapshot` (or :meth:`Connector.connect`) is called.
"""

from __future__ import annotations

from mozart_luigi.config import TenantConfig
from mozart_luigi.connectors.base import Connector, SourceColumn, Window
from mozart_luigi.connectors.mysql import MySQLConnector
from mozart_luigi.connectors.oracle import OracleConnector
from mozart_luigi.connectors.postgres import PostgresConnector
from mozart_luigi.connectors.snapshot import BatchReader, ReaderUnsupported, RowBatchReader, Snapshot
from mozart_luigi.connectors.sqlite import SQLiteConnector
from mozart_luigi.errors import ConfigError, ConfigProblem

__all__ = [
    "CONNECTORS",
    "BatchReader",
    "Connector",
    "MySQLConnector",
    "OracleConnector",
    "PostgresConnector",
    "ReaderUnsupported",
    "RowBatchReader",
    "SQLiteConnector",
    "Snapshot",
    "SourceColumn",
    "Window",
    "connector_for",
]

CONNECTORS: dict[str, type[Connector]] = {
    "postgresql": PostgresConnector,
    "mysql": MySQLConnector,
    "oracle": OracleConnector,
    "sqlite": SQLiteConnector,
}


def connector_for(tenant: TenantConfig, **options: object) -> Connector:
    """The connector for a tenant's source kind (``options`` go to the constructor: attempts, sleep, ...)."""
    try:
        cls = CONNECTORS[tenant.source.kind]
    except KeyError:
        raise ConfigError(
            [
                ConfigProblem(
                    "tenants.yaml",
                    f"tenants.{tenant.id}.source.kind",
                    f"no connector for {tenant.source.kind!r}",
                )
            ]
        ) from None
    return cls(tenant, **options)  # type: ignore[arg-type]
