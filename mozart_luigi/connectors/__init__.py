"""Source connectors: one per dialect, behind :class:`Connector` and its :class:`Snapshot`.

``connector_for(tenant)`` picks the class from ``tenant.source.kind``; each class names its own native
reader (``native.READERS``). Nothing connects until :meth:`Connector.snapshot` (or
:meth:`Connector.connect`) is called. Module layering, bottom up (no cycle, no import deferred into a
function; ``tests/unit/test_import_graph.py``): ``_native_common`` < ``snapshot``, ``_native_pg``,
``_native_mysql`` < ``native`` < ``base`` < the dialects < this package (a module imports only below it).
"""

from __future__ import annotations

from mozart_luigi.config import TenantConfig
from mozart_luigi.connectors._native_common import NativeUnsupportedError
from mozart_luigi.connectors.base import Connector
from mozart_luigi.connectors.mysql import MySQLConnector
from mozart_luigi.connectors.native import READERS
from mozart_luigi.connectors.oracle import OracleConnector
from mozart_luigi.connectors.postgres import PostgresConnector
from mozart_luigi.connectors.snapshot import BatchReader, RowBatchReader, Snapshot, SourceColumn, Window
from mozart_luigi.connectors.sqlite import SQLiteConnector
from mozart_luigi.errors import ConfigError, ConfigProblem

__all__ = [
    "CONNECTORS",
    "READERS",
    "BatchReader",
    "Connector",
    "MySQLConnector",
    "NativeUnsupportedError",
    "OracleConnector",
    "PostgresConnector",
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
    return cls(tenant, **options)  # type: ignore[arg-type]  # options: the constructor's keywords, as given
