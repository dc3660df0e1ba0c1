"""The Trino error boundary: user errors terminal with the query id, conflicts and outages retryable."""

from __future__ import annotations

import datetime as dt

import pytest
from trino.exceptions import TrinoExternalError, TrinoUserError

from mozart_luigi.errors import LoadError, WarehouseUnavailableError
from mozart_luigi.secrets import Secret
from mozart_luigi.warehouse.trino import TrinoQueryFailed, TrinoUnavailable, TrinoWarehouse

pytestmark = pytest.mark.unit
QUERY_ID = "20261129_120000_00001_abcde"


def _warehouse(**kwargs) -> TrinoWarehouse:
    return TrinoWarehouse(host="127.0.0.1", port=1, user="mozart", secrets=(Secret("s3cr3t-key"),), **kwargs)


def _error(cls: type, name: str, message: str, kind: str):
    return cls({"errorName": name, "errorType": kind, "message": message}, query_id=QUERY_ID)


def test_user_error_is_terminal_and_keeps_query_id_and_context():
    exc = _error(TrinoUserError, "TABLE_NOT_FOUND", "Table 'iceberg.acme.x' does not exist", "USER_ERROR")
    translated = _warehouse()._translate(exc, "acme", "orders")
    assert isinstance(translated, TrinoQueryFailed) and isinstance(translated, LoadError)
    assert not translated.retryable and translated.query_id == QUERY_ID
    assert translated.error_name == "TABLE_NOT_FOUND"
    assert str(translated).startswith("tenant 'acme', table 'orders': Trino USER_ERROR error TABLE_NOT_FOUND")
    assert f"(query {QUERY_ID})" in str(translated)


@pytest.mark.parametrize(
    ("message", "retryable"),
    [
        ("Failed to commit during insert: Commit failed: Requirement failed: branch main has changed", True),
        ("Failed to commit Iceberg update to table: acme.orders because it was concurrently modified", True),
        ("Failed to set column type: Cannot change type from list<int> to list<long>", False),
    ],
)
def test_iceberg_commit_conflicts_retry_other_commit_errors_do_not(message, retryable):
    exc = _error(TrinoExternalError, "ICEBERG_COMMIT_ERROR", message, "EXTERNAL")
    translated = _warehouse()._translate(exc, "acme", None)
    assert translated.retryable is retryable
    assert isinstance(translated, TrinoUnavailable if retryable else TrinoQueryFailed)


def test_secrets_are_redacted_from_messages():
    exc = _error(TrinoUserError, "GENERIC_USER_ERROR", "bad key s3cr3t-key", "USER_ERROR")
    assert "s3cr3t-key" not in str(_warehouse()._translate(exc, None, None))


def test_unreachable_trino_is_retried_then_reported_as_unavailable():
    warehouse = _warehouse(attempts=3, base_delay=0.01)
    with pytest.raises(WarehouseUnavailableError, match="Trino at 127.0.0.1:1 unavailable") as info:
        warehouse.count_partition("acme", "orders", dt.date(2026, 11, 25))
    assert info.value.retryable and info.value.tenant == "acme"


@pytest.mark.parametrize(
    ("name", "message", "swallowed"),
    [
        ("GENERIC_INTERNAL_ERROR", "Namespace already exists: acme", True),  # the REST catalog's refusal
        ("SCHEMA_ALREADY_EXISTS", "Schema 'raw.acme' already exists", True),
        ("GENERIC_INTERNAL_ERROR", "Failed to list namespaces", False),
        ("PERMISSION_DENIED", "Access Denied: Cannot create schema acme (it already exists)", False),
    ],
)
def test_a_create_if_not_exists_that_loses_the_race_is_success(monkeypatch, name, message, swallowed):
    warehouse = _warehouse()
    calls: list[str] = []

    def refused(statement, params=(), *, tenant=None, table=None):
        calls.append(statement)
        raise warehouse._translate(_error(TrinoExternalError, name, message, "INTERNAL_ERROR"), tenant, table)

    monkeypatch.setattr(warehouse, "_execute", refused)
    statement = 'CREATE SCHEMA IF NOT EXISTS "iceberg"."acme"'
    if swallowed:
        warehouse._create(statement, tenant="acme")
    else:
        with pytest.raises(TrinoQueryFailed, match=name):
            warehouse._create(statement, tenant="acme")
    assert calls == [statement]


def _kind(statement: str) -> str:
    for kind in ("optimize_manifests", "optimize", "expire_snapshots"):
        if f"EXECUTE {kind}" in statement:
            return kind
    return statement.split(maxsplit=1)[0]


def test_refused_credentials_and_untrusted_certificates_are_named_and_not_retried() -> None:
    import requests
    from trino.exceptions import HttpError

    from mozart_luigi.warehouse.trino import _refusal

    assert "refused the credentials" in (_refusal(HttpError("error 401: b'Invalid credentials'")) or "")
    assert "not trusted" in (_refusal(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED")) or "")
    assert _refusal(HttpError("error 503: starting")) is None
    assert _refusal(requests.ConnectionError("refused")) is None
