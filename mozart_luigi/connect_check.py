"""``mozart validate --connect``: reach every enabled tenant's source (and, in ``stack``, S3, the Iceberg
catalog and Trino) once, with a short timeout, and say per component ``ok`` or why not.

For each source it also reflects every configured table and checks that the columns tables.yaml names
(``cursor``, ``primary_key``, ``include``, ``exclude``, ``columns``, ``checksum``) exist, that each type override
applies to its column's source type without losing values (``decimal(10,2)`` for a ``numeric(12,4)`` is
refused), and that each ``checksum`` column is an integer or exact decimal.
Messages come from the translated errors of each client (secrets already removed) and are redacted again
with every configured secret.
"""

from __future__ import annotations

__all__ = ["Check", "check_all"]

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mozart_luigi import checksums
from mozart_luigi.config import Config, TableConfig, TenantConfig
from mozart_luigi.errors import MozartError
from mozart_luigi.secrets import Secret, redact

if TYPE_CHECKING:
    import sqlalchemy as sa

    from mozart_luigi.connectors.base import Connector
    from mozart_luigi.connectors.snapshot import SourceColumn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One component's answer: ``ok`` and a one-line detail."""

    component: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.component}: {self.detail}"


def check_all(config: Config) -> list[Check]:
    """Every enabled tenant's source, then the stack's services when the profile is ``stack``."""
    secrets = _secrets(config)
    checks = [_tenant(tenant, config.tables_for(tenant.id)) for tenant in config.tenants.values()]
    if config.settings.profile == "stack":
        checks += _stack(config)
    return [Check(c.component, c.ok, redact(c.detail, secrets)) for c in checks]


def _tenant(tenant: TenantConfig, tables: Iterable[TableConfig]) -> Check:
    from mozart_luigi.connectors import connector_for

    name = f"tenant {tenant.id} ({tenant.source.describe()})"
    connector = connector_for(tenant, attempts=1)
    try:
        with connector.connect() as conn:
            problems = [p for table in tables for p in _columns(connector, conn, table)]
    except MozartError as exc:
        return Check(name, False, str(exc))
    finally:
        connector.dispose()
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, "connected; every configured table and column found")


def _columns(connector: Connector, conn: sa.Connection, table: TableConfig) -> list[str]:
    try:
        reflected = {c.name: c for c in connector.reflect(conn, table)}
    except MozartError as exc:
        return [str(exc)]
    named = {
        "cursor": [table.cursor] if table.cursor else [],
        "primary_key": list(table.primary_key),
        "include": list(table.include),
        "exclude": list(table.exclude),
    }
    problems = [
        f"tables.yaml: tables.{table.name}.{key}: column {column!r} not found in {table.source_name}"
        for key, columns in named.items()
        for column in columns
        if column not in reflected
    ]
    for column, _override in table.columns:
        if column not in reflected:
            problems.append(
                f"tables.yaml: tables.{table.name}.columns.{column}.type: column {column!r} not found "
                f"in {table.source_name}"
            )
            continue
        try:  # the override's mapping: refused when it does not apply to the type or would lose values
            connector.plan(reflected[column], table)
        except MozartError as exc:
            problems.append(f"tables.yaml: {exc}")
    return problems + _checksums(connector, reflected, table)


def _checksums(connector: Connector, reflected: dict[str, SourceColumn], table: TableConfig) -> list[str]:
    """Each ``checksum`` column exists and is an integer or exact decimal (as the extract checks again)."""
    problems = []
    for column in table.checksum:
        where = f"tables.yaml: {checksums.setting(table.name)}: column {column!r}"
        if column not in reflected:
            problems.append(f"{where} not found in {table.source_name}")
            continue
        try:
            plan = connector.plan(reflected[column], table)
        except MozartError:
            continue  # reported above, or by the extract (the column's type has no mapping)
        kind = connector.source.kind
        reason = checksums.refusal(plan.arrow_type, reflected[column].type, sqlite=kind == "sqlite")
        if reason:
            problems.append(f"{where} ({plan.source_type}) {reason}")
    return problems


def _stack(config: Config) -> list[Check]:
    s = config.settings
    return [
        _probe(f"S3 lake {s.lake_url}", lambda: _s3(config)),
        _probe(f"Iceberg catalog {s.iceberg_rest_uri}", lambda: _catalog(config)),
        _probe(f"Trino {s.trino_host}:{s.trino_port}", lambda: _trino(config)),
    ]


def _probe(component: str, action: Callable[[], str]) -> Check:
    try:
        detail = action()
    except MozartError as exc:
        return Check(component, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - any client failure is the answer for this component
        return Check(component, False, f"{type(exc).__name__}: {exc}")
    return Check(component, True, str(detail))


def _s3(config: Config) -> str:
    from mozart_luigi.lake import Lake

    lake = Lake.from_settings(config.settings)
    lake.list_files(lake.url)
    return "reachable, credentials accepted"


def _catalog(config: Config) -> str:
    from mozart_luigi.warehouse.iceberg import IcebergLoader

    namespaces = IcebergLoader(config.settings).catalog.list_namespaces()
    return f"reachable, {len(namespaces)} namespace(s)"


def _trino(config: Config) -> str:
    from mozart_luigi.warehouse.trino import TrinoWarehouse

    with TrinoWarehouse.from_settings(config.settings) as warehouse:
        warehouse.query("SELECT 1")
    return "reachable, query ok"


def _secrets(config: Config) -> list[Secret | str]:
    found: list[Secret | str] = list(config.settings.secrets())
    for tenant in config.tenants.values():
        found += list(tenant.source.secrets())
    return found
