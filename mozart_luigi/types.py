"""Source column -> Arrow: the column plan and the column-wise converters every dialect shares.

A :class:`ColumnPlan` says, for one source column, which SQL expression to select (usually the column itself,
sometimes a cast done by the server, e.g. ``jsonb -> text``), which Arrow type it lands in, and how a batch of
driver values becomes one Arrow array. Plans are built from the source catalog once per extract; batches are
never inferred. Dialect mappings live in ``mozart_luigi.connectors.<dialect>``; the table of every mapping is
in ``docs/types.md``.

Exactness policies shared by all dialects:

* decimals with precision <= 38 -> ``decimal128(p, s)``; Arrow refuses any value that would need rounding;
* decimals with precision > 38 (beyond Iceberg) -> ``string`` holding the exact decimal text (noted in the
  manifest ``details``);
* decimals without a declared precision (PostgreSQL ``numeric``, Oracle ``NUMBER``) -> ``decimal(38, 10)``:
  28 integer and 10 fractional digits; a value that does not fit exactly fails the extract with a
  :class:`~mozart_luigi.errors.TypeMappingError` (never rounded);
* every Arrow field is nullable (a source ``NOT NULL`` is kept in the field metadata).

A ``tables.yaml`` type override (:mod:`mozart_luigi.overrides`) replaces the plan of one column by another exact
one (:func:`decimal_override`, a dialect's text or duration plan); the plan then carries the override's name
(``ColumnPlan.override``, also the field metadata ``mozart.override``) and the manifest lists it.
"""

from __future__ import annotations

__all__ = [
    "MAX_DECIMAL_PRECISION",
    "UNBOUNDED_DECIMAL",
    "ColumnPlan",
    "ColumnStats",
    "Converter",
    "UnsupportedType",
    "decimal_override",
    "decimal_plan",
    "decimal_text",
    "duration_micros_from_timedelta",
    "inexact_hint",
    "is_native",
    "plain",
    "text_values",
    "time_of_day_from_timedelta",
    "zero_dates_nulled",
]

import dataclasses
import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from mozart_luigi.overrides import TypeOverride, decimal_loss, decimal_suggestion, hint

MAX_DECIMAL_PRECISION = 38
UNBOUNDED_DECIMAL = pa.decimal128(38, 10)
_DAY_US = 86_400_000_000


class UnsupportedType(Exception):  # noqa: N818 - internal signal, turned into TypeMappingError with context
    """Raised by a dialect mapping for a type it cannot store exactly; the reason ends up in the message."""


@dataclass
class ColumnStats:
    """What converters did to one column's values (counted, reported in the manifest)."""

    zero_dates: int = 0


Converter = Callable[[Sequence[Any], ColumnStats], pa.Array]
Expression = Callable[[sa.ColumnElement[Any]], sa.ColumnElement[Any]]


@dataclass(frozen=True)
class ColumnPlan:
    """One source column: what to select, its Arrow type and how a batch of driver values is converted."""

    name: str
    source_type: str
    arrow_type: pa.DataType
    convert: Converter
    expression: Expression | None = None
    note: str | None = None
    source_nullable: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    #: a decimal source's declared ``(precision, scale)``, precision None when it declares none (overrides)
    source_decimal: tuple[int | None, int] | None = None
    #: the tables.yaml type override this plan applies (``decimal(38,18)``, ``string``, ``duration_us``)
    override: str | None = None

    @property
    def field(self) -> pa.Field:
        meta = {"mozart.source_type": self.source_type, **self.metadata}
        if self.override:
            meta["mozart.override"] = self.override
        if not self.source_nullable:
            meta["mozart.source_not_null"] = "true"
        return pa.field(self.name, self.arrow_type, nullable=True, metadata=meta)

    def select_expression(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if self.expression is None:
            return column
        return self.expression(column).label(self.name)


# ------------------------------------------------------------------------------------------ converters


def plain(arrow_type: pa.DataType) -> Converter:
    """Driver values already are the Python objects Arrow expects (int, Decimal, datetime, str, bytes)."""

    def convert(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
        return pa.array(values, type=arrow_type)

    convert.native = True  # type: ignore[attr-defined]  # a marker attribute on the function object
    return convert


def is_native(convert: Converter) -> bool:
    """Whether a converter takes the driver's values as they are (so they may also sit inside a list)."""
    return bool(getattr(convert, "native", False))


def decimal_text(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
    """Decimals beyond 38 digits, kept exact as text (``format(d, 'f')`` keeps every stored digit)."""
    return pa.array([None if v is None else _decimal_str(v) for v in values], type=pa.string())


def _decimal_str(value: Any) -> str:
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)


def text_values(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
    """Values the server already rendered as text (casts); bytes are decoded as UTF-8."""
    return pa.array([v.decode("utf-8") if isinstance(v, bytes | bytearray) else v for v in values], pa.string())


def zero_dates_nulled(arrow_type: pa.DataType) -> Converter:
    """MySQL dates the driver cannot parse (``0000-00-00``, ``2024-00-10``) arrive as str: NULL, counted."""

    def convert(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
        invalid = sum(1 for v in values if isinstance(v, str | bytes))
        if invalid:
            stats.zero_dates += invalid
            values = [None if isinstance(v, str | bytes) else v for v in values]
        return pa.array(values, type=arrow_type)

    return convert


def time_of_day_from_timedelta(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
    """MySQL ``TIME`` arrives as ``timedelta`` (it is a duration, -838h..838h); only a time of day fits."""
    micros: list[int | None] = []
    for v in values:
        if v is None:
            micros.append(None)
            continue
        delta = v
        if isinstance(v, dt.time):
            delta = dt.timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)
        us = delta // dt.timedelta(microseconds=1)
        if not 0 <= us < _DAY_US:
            raise ValueError(f"TIME value {v} is not a time of day (00:00:00 <= t < 24:00:00)")
        micros.append(us)
    return pa.array(micros, type=pa.int64()).cast(pa.time64("us"))


def duration_micros_from_timedelta(values: Sequence[Any], stats: ColumnStats) -> pa.Array:
    """MySQL ``TIME`` (``timedelta``, -838:59:59..838:59:59) as signed microseconds: the ``duration_us``
    override. Exact: a ``timedelta`` is whole microseconds."""
    return pa.array([None if v is None else v // dt.timedelta(microseconds=1) for v in values], type=pa.int64())


def inexact_hint(table: str, column: str, arrow_type: pa.DataType, values: Iterable[Any], *, durations: bool) -> str:
    """What a refusal of a value of ``column`` says next: the tables.yaml override that stores it exactly
    (a ``decimal(38,S)`` holding every value of ``values`` when one does, else ``string``; ``duration_us`` or
    ``string`` for a MySQL ``TIME`` beyond a day when ``durations``), or "" when no override applies."""
    if pa.types.is_decimal(arrow_type):
        values = list(values)
        fits = decimal_suggestion(values, arrow_type.scale) or decimal_suggestion(values)
        return hint(table, column, [fits, "string"] if fits else ["string"])
    if pa.types.is_time64(arrow_type) and durations:
        return hint(table, column, ["duration_us", "string"])
    return ""


# ------------------------------------------------------------------------------------------- decimals


def decimal_plan(
    name: str, source_type: str, precision: int | None, scale: int | None, *, source_nullable: bool = True
) -> ColumnPlan:
    """The shared decimal policy (see module docstring)."""
    if precision is None:
        if scale not in (None, 0) and scale > UNBOUNDED_DECIMAL.scale:
            raise UnsupportedType(f"scale {scale} without precision exceeds the unbounded-decimal policy")
        return ColumnPlan(
            name,
            source_type,
            UNBOUNDED_DECIMAL,
            plain(UNBOUNDED_DECIMAL),
            note="decimal without precision stored as decimal(38,10); values needing more "
            "digits fail the extract (never rounded)",
            source_nullable=source_nullable,
            source_decimal=(None, scale or 0),
        )
    scale = scale or 0
    if scale < 0:  # Oracle NUMBER(p, -s): integers rounded to 10^s, up to p + s digits
        precision, scale = precision - scale, 0
    precision = max(precision, scale)
    if precision > MAX_DECIMAL_PRECISION:
        return ColumnPlan(
            name,
            source_type,
            pa.string(),
            decimal_text,
            note=f"precision {precision} > {MAX_DECIMAL_PRECISION} (Iceberg's maximum): stored as exact decimal text",
            source_nullable=source_nullable,
            source_decimal=(precision, scale),
        )
    arrow_type = pa.decimal128(precision, scale)
    return ColumnPlan(
        name,
        source_type,
        arrow_type,
        plain(arrow_type),
        source_nullable=source_nullable,
        source_decimal=(precision, scale),
    )


def decimal_override(
    base: ColumnPlan, override: TypeOverride, converter: Callable[[pa.DataType], Converter] = plain
) -> ColumnPlan:
    """``base`` (a decimal column's plan) stored as the override's ``decimal(P,S)``.

    Refused (:class:`UnsupportedType`) for a column that is not a decimal, and for a declared source type
    that does not fit entirely (:func:`~mozart_luigi.overrides.decimal_loss`); a source without a declared
    precision is checked value by value, as the default policy is (``converter`` refuses rounding).
    """
    if base.source_decimal is None:
        raise UnsupportedType(f"{override} applies to decimal columns only")
    lossy = decimal_loss(base.source_decimal, override)
    if lossy:
        raise UnsupportedType(lossy)
    arrow_type = pa.decimal128(override.precision or 0, override.scale or 0)
    checked = " (each value checked, never rounded)" if base.source_decimal[0] is None else ""
    return dataclasses.replace(
        base,
        arrow_type=arrow_type,
        convert=converter(arrow_type),
        override=str(override),
        note=f"type override {override}{checked}",
    )
