"""Checksums of a table's day (``checksum: [amount, qty]`` in tables.yaml; docs/late-rows.md, "Checksums").

The extract sums each listed column **in the snapshot it counts and reads** (the same transaction, or the
native reader's single statement), as the source's exact decimal text: ``CAST(sum(col) AS VARCHAR(4000))``,
names quoted by the source's dialect, the window's bounds bound. The manifest records them
(``"checksums": {"amount": "12345.6700"}``; ``null`` when the day has no non-NULL value). The load computes
the same sums over the day it committed (``sum(col)`` of ``_mozart_date = ?``, the date bound) and compares
them exactly (``Decimal`` equality) before it writes its marker: a difference fails the load.

Only integer and exact decimal columns are summed: a sum of floats depends on the order of the additions,
so it cannot be compared exactly, and SQLite stores decimals as floats (there, integer columns only).
"""

from __future__ import annotations

__all__ = [
    "compare",
    "refusal",
    "setting",
    "source_sums",
    "source_text",
    "warehouse_sums",
]

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from mozart_luigi.errors import VerificationError
from mozart_luigi.manifest import Manifest
from mozart_luigi.names import quote_ident

_TEXT = sa.String(4000)  # every dialect renders a cast to it as exact decimal text (CHAR/VARCHAR/VARCHAR2)


def setting(table: str) -> str:
    """The key a message names: ``tables.<table>.checksum``."""
    return f"tables.{table}.checksum"


def source_sums(columns: Sequence[sa.ColumnElement[Any]]) -> list[sa.Label[Any]]:
    """``CAST(sum(col) AS VARCHAR(4000)) AS mozart_sum_<i>`` per column: the driver returns the exact text."""
    return [sa.cast(sa.func.sum(column), _TEXT).label(f"mozart_sum_{i}") for i, column in enumerate(columns)]


def source_text(value: Any) -> str | None:
    """A source sum as exact decimal text (``"-12.50"``); None for NULL (no value summed)."""
    if value is None:
        return None
    if isinstance(value, float):  # never: the sums are cast to text at the source
        raise TypeError(f"a checksum arrived as a float ({value!r}); expected exact text")
    try:
        number = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        number = decimal.Decimal("NaN")
    if not number.is_finite():
        raise ValueError(f"a checksum is not a finite decimal number: {str(value)[:80]!r}")
    return str(number)


def refusal(arrow_type: pa.DataType, source_type: sa.types.TypeEngine[Any], *, sqlite: bool) -> str | None:
    """Why a column cannot be summed exactly, or None: floats, anything not integer or decimal, SQLite
    decimals (stored as floats)."""
    if isinstance(source_type, sa.Float) or pa.types.is_floating(arrow_type):
        return "is a floating point column: a sum of floats depends on the order of the additions"
    if pa.types.is_integer(arrow_type):
        return None
    if not pa.types.is_decimal(arrow_type):
        return f"is stored as {arrow_type}, not an integer or exact decimal"
    if sqlite:
        return "is a SQLite decimal, stored as floating point, so its sum is not exact (integer columns only)"
    return None


def warehouse_sums(manifest: Manifest) -> str:
    """The select list summing the manifest's ``checksums`` columns over the loaded day: ``sum("col")``
    (decimal) or ``sum(CAST("col" AS DECIMAL(38, 0)))`` (integer: no 64-bit overflow), identifiers quoted
    by :func:`~mozart_luigi.names.quote_ident`. The same SQL runs on DuckDB and Trino; column names are
    lower-cased as in the warehouse tables."""
    exprs = []
    for name in manifest.checksums:
        quoted = quote_ident(name.lower())
        is_integer = pa.types.is_integer(manifest.schema.field(name).type)
        exprs.append(f"sum(CAST({quoted} AS DECIMAL(38, 0)))" if is_integer else f"sum({quoted})")
    return ", ".join(exprs)


def compare(
    tenant: str, table: str, date: dt.date, source: Mapping[str, str | None], loaded: Sequence[Any]
) -> dict[str, str | None]:
    """Raise :class:`VerificationError` unless each loaded sum equals the source's exactly; return the sums."""
    for (column, expected), got in zip(source.items(), loaded, strict=True):
        want = None if expected is None else decimal.Decimal(expected)
        have = None if got is None else decimal.Decimal(got if isinstance(got, decimal.Decimal) else str(got))
        if want != have:
            raise VerificationError(
                f"date {date}: checksum of column {column!r} ({setting(table)}) differs: source sum "
                f"{'NULL' if want is None else want}, loaded sum {'NULL' if have is None else have}; the marker is "
                f"not written (rerun with: mozart rerun --tenant {tenant} --table {table} --date {date} "
                "--from-extract)",
                tenant=tenant,
                table=table,
            )
    return dict(source)
