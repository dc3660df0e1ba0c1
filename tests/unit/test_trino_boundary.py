"""The Trino error boundary: user errors terminal with the query id, conflicts and outages retryable."""

from __future__ import annotations

import datetime as dt

import pytest
from trino.exceptions import TrinoExternalError, TrinoUserError

from mozart_luigi.errors import LoadError, WarehouseUnavailableError
from mozart_luigi.secrets import Secret
from mozart_luigi.warehouse import Marker
from mozart_luigi.warehouse import trino as trino_module
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


@pytest.mark.parametrize(("message", "retryable"), [
    ("Failed to commit during insert: Commit failed: Requirement failed: branch main has changed", True),
    ("Failed to commit Iceberg update to table: acme.orders because it was concurrently modified", True),
    ("Failed to set column type: Cannot change type from list<int> to list<long>", False),
])  # fmt: skip
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


@pytest.mark.parametrize(("name", "message", "swallowed"), [
    ("GENERIC_INTERNAL_ERROR", "Namespace already exists: acme", True),  # the REST catalog's refusal
    ("SCHEMA_ALREADY_EXISTS", "Schema 'raw.acme' already exists", True),
    ("GENERIC_INTERNAL_ERROR", "Failed to list namespaces", False),
    ("PERMISSION_DENIED", "Access Denied: Cannot create schema acme (it already exists)", False),
])  # fmt: skip
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


def test_marker_housekeeping_compacts_one_marker_in_64_and_expires_one_in_16(monkeypatch):
    """The cadence is drawn from the task id (so it holds across processes); a failure is only logged."""
    warehouse = _warehouse()
    ran: list[str] = []

    def execute(statement, params=(), *, tenant=None, table=None, meta=False):
        ran.append(_kind(statement))
        if ran[-1] == "optimize_manifests":
            raise TrinoUnavailable("conflict")  # housekeeping gives up quietly; the marker stands

    monkeypatch.setattr(warehouse, "_execute", execute)
    monkeypatch.setattr(trino_module.MARKER_CACHE, "add", lambda key, marker: None)
    day = dt.date(2026, 11, 25)
    seen: dict[tuple[str, ...], int] = {}
    for n in range(4000):
        ran.clear()
        warehouse._after_marker(Marker("LoadIceberg", f"LoadIceberg_t{n}", "acme", day, table=f"t{n}"))
        seen[tuple(ran)] = seen.get(tuple(ran), 0) + 1
    assert set(seen) == {(), ("optimize", "optimize_manifests"), ("expire_snapshots",)}, seen
    assert 4000 / 64 * 0.7 < seen[("optimize", "optimize_manifests")] < 4000 / 64 * 1.3, seen
    assert 4000 * (1 / 16 - 1 / 64) * 0.8 < seen[("expire_snapshots",)] < 4000 * (1 / 16 - 1 / 64) * 1.2, seen
    assert "'1m'" in warehouse._compact_statements(day)[-1]


def test_a_markers_read_that_loses_a_race_to_housekeeping_is_planned_again(monkeypatch):
    """The files it planned on were compacted away and expired before it read them: read again."""
    warehouse = _warehouse(base_delay=0.01)
    day = dt.date(2026, 11, 25)
    answers: list[object] = [
        _error(TrinoExternalError, "ICEBERG_CANNOT_OPEN_SPLIT", "Error opening Iceberg split s3://w/m.parquet",
               "EXTERNAL"),
        [["LoadIceberg_acme_orders", "acme", day]],
    ]  # fmt: skip

    def execute(statement, params=(), *, tenant=None, table=None, meta=False):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise warehouse._translate(answer, tenant, table)
        return answer

    monkeypatch.setattr(warehouse, "_execute", execute)
    assert warehouse.completed("LoadIceberg", "acme", day) == {"LoadIceberg_acme_orders"}
    assert not answers
    lost = _error(TrinoExternalError, "ICEBERG_CANNOT_OPEN_SPLIT", "Error opening Iceberg split", "EXTERNAL")
    answers[:] = [lost] * 8  # never converges: reported as unavailable, not as complete or incomplete
    with pytest.raises(WarehouseUnavailableError, match="ICEBERG_CANNOT_OPEN_SPLIT"):
        warehouse.completed("LoadIceberg", "acme", day)
    denied = _error(TrinoUserError, "PERMISSION_DENIED", "Access Denied", "USER_ERROR")
    answers[:] = [denied]
    with pytest.raises(TrinoQueryFailed, match="PERMISSION_DENIED"):
        warehouse.completed("LoadIceberg", "acme", day)
