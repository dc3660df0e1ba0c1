"""Core pieces every task relies on: secrets, interpolation, retry, manifest round-trip."""

from __future__ import annotations

import datetime as dt
import pickle
from decimal import Decimal

import pyarrow as pa
import pytest

from mozart_luigi.errors import (
    ConfigProblem,
    LoadError,
    SourceError,
    SourceUnavailableError,
    WarehouseUnavailableError,
)
from mozart_luigi.interpolate import interpolate
from mozart_luigi.manifest import Manifest, PartFile
from mozart_luigi.retry import retrying
from mozart_luigi.secrets import Secret, redact

pytestmark = pytest.mark.unit


def test_secret_never_renders():
    s = Secret("hunter2-canary")
    assert "hunter2" not in f"{s} {s!r} {s!s} {s:>20} {[s]} {dict(p=s)}"
    assert s.reveal() == "hunter2-canary"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_redact_replaces_every_occurrence():
    text = "FATAL: password authentication failed (pw=hunter2-canary) hunter2-canary"
    assert redact(text, [Secret("hunter2-canary"), None]) == "FATAL: password authentication failed (pw=***) ***"


def test_interpolation_defaults_lists_escapes_and_all_problems():
    problems: list[ConfigProblem] = []
    tree = {
        "a": "${X}",
        "b": ["${Y:fallback}", "$${literal}"],
        "c": {"d": "${MISSING}", "e": "${ALSO_MISSING}"},
        "n": 3,
        "empty": "${E:}",
    }
    out = interpolate(tree, {"X": "x1"}, file="t.yaml", path="", problems=problems)
    assert out == {"a": "x1", "b": ["fallback", "${literal}"], "c": {"d": "", "e": ""}, "n": 3, "empty": ""}
    assert [(p.file, p.key) for p in problems] == [("t.yaml", "c.d"), ("t.yaml", "c.e")]
    assert "MISSING is not set" in str(problems[0])


def test_retry_retries_transient_then_gives_up():
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise SourceUnavailableError("connection refused", tenant="acme")
        return 42

    assert retrying(flaky, what="connect", sleep=lambda _s: None) == 42
    assert len(calls) == 3

    def down() -> None:
        raise WarehouseUnavailableError("503")

    with pytest.raises(WarehouseUnavailableError):
        retrying(down, what="query", attempts=2, sleep=lambda _s: None)


def test_retry_does_not_retry_terminal_errors():
    calls: list[int] = []

    def wrong_password() -> None:
        calls.append(1)
        raise SourceError("password authentication failed", tenant="acme", table="orders")

    with pytest.raises(SourceError, match="tenant 'acme', table 'orders': password"):
        retrying(wrong_password, what="connect", sleep=lambda _s: None)
    assert len(calls) == 1
    assert not LoadError("x").retryable


def test_manifest_round_trips_schema_and_window():
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("amount", pa.decimal128(38, 9)),
            pa.field("at", pa.timestamp("us", tz="UTC")),
            pa.field("tags", pa.list_(pa.string())),
        ]
    )
    m = Manifest(
        tenant="acme",
        table="orders",
        date=dt.date(2026, 11, 28),
        mode="incremental",
        row_count=3,
        source_count=3,
        files=(PartFile("part-r1-00000.parquet", 3, 1234),),
        schema=schema,
        extracted_at=dt.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=dt.UTC),
        run_id="r1",
        window_start=dt.datetime(2026, 11, 28),
        window_end=dt.datetime(2026, 11, 29),
        details={"max_amount": str(Decimal("1.5"))},
    )
    back = Manifest.from_json(m.to_json())
    assert back == m
    assert back.schema.equals(schema, check_metadata=True)
    assert '"row_count": 3' in m.to_json()
