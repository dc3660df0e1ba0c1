"""Per-column type overrides (``tables.yaml``: ``columns: {<column>: {type: "<override>"}}``): the names, their
parsing, the lossless rule for decimals and the text that tells a user which override stores a refused value.

Pure Python (no Arrow, no SQLAlchemy): :mod:`mozart_luigi.config` parses with it, the connectors map with it.
Every override is exact, like the default mapping (docs/types.md, "Per-column type overrides"):

* ``decimal(P,S)`` (1 <= P <= 38, 0 <= S <= P): a decimal column stored as ``decimal(P,S)``. A declared source
  type must fit entirely (``numeric(12,4)`` -> ``decimal(10,2)`` is refused: lossy); a source decimal without
  a declared precision (PostgreSQL ``numeric``, Oracle ``NUMBER``) is allowed, and every value is checked: one
  that does not fit fails the extract, it is never rounded;
* ``string``: the value's exact text as the source renders it (a server cast to text where the dialect has
  one, else the exact decimal text of the driver's ``Decimal``);
* ``duration_us``: MySQL/MariaDB ``TIME`` (a signed duration, -838:59:59..838:59:59) as signed microseconds
  (``int64`` / ``bigint``);
* ``duration`` is refused: Iceberg (hence Trino's Iceberg tables) has no duration or interval type.
"""

from __future__ import annotations

__all__ = [
    "OVERRIDE_NAMES",
    "TypeOverride",
    "decimal_loss",
    "decimal_suggestion",
    "hint",
    "parse_override",
    "setting",
]

import decimal
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_PRECISION = 38
#: what ``type:`` accepts (``decimal(P,S)`` stands for every precision and scale)
OVERRIDE_NAMES = ("decimal(P,S)", "string", "duration_us")
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_SIMPLE_NAMES = ("string", "duration_us")
_DURATION = (
    "Iceberg (and so Trino's Iceberg tables) has no duration or interval type; use 'duration_us' "
    "(signed microseconds, a bigint) or 'string' (the source's text, e.g. '838:59:59')"
)


@dataclass(frozen=True)
class TypeOverride:
    """One parsed override: ``kind`` is ``decimal``, ``string`` or ``duration_us``."""

    kind: str
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})" if self.kind == "decimal" else self.kind


def parse_override(text: Any) -> TypeOverride:
    """The override named by ``text`` (``decimal(38,18)``, ``string``, ``duration_us``; case and spaces
    inside the parentheses are ignored). Raises ``ValueError`` saying why and what is accepted."""
    if not isinstance(text, str):
        raise ValueError(f"must be a string, one of {', '.join(OVERRIDE_NAMES)}")
    spelled = text.strip().lower()
    if spelled in _SIMPLE_NAMES:
        return TypeOverride(spelled)
    if spelled in ("duration", "interval", "time"):
        raise ValueError(f"{spelled!r} is not supported: {_DURATION}")
    match = _DECIMAL.fullmatch(spelled)
    if match is None:
        raise ValueError(f"unknown type override {text!r} (supported: {', '.join(OVERRIDE_NAMES)})")
    precision, scale = int(match.group(1)), int(match.group(2))
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(
            f"{text!r}: precision must be 1..{MAX_PRECISION} (Iceberg's maximum); for wider "
            "values use 'string' (the exact decimal text)"
        )
    if scale > precision:
        raise ValueError(f"{text!r}: scale must be 0..precision")
    return TypeOverride("decimal", precision, scale)


def setting(table: str, column: str) -> str:
    """The key a message names: ``tables.<table>.columns.<column>.type``."""
    return f"tables.{table}.columns.{column}.type"


def decimal_loss(source: tuple[int | None, int], target: TypeOverride) -> str | None:
    """Why ``decimal(P,S)`` would lose values of a source decimal ``(precision, scale)``, or None.

    ``precision`` None: the source declares none (each value is then checked as it is converted). Else the
    whole declared range must fit: ``S >= scale`` (no rounding) and ``P - S >= precision - scale`` (no
    overflow).
    """
    precision, scale = source
    if precision is None:
        return None
    assert target.precision is not None and target.scale is not None
    problems = []
    if target.scale < scale:
        problems.append(f"{scale} fractional digits would be rounded to {target.scale}")
    if target.precision - target.scale < precision - scale:
        problems.append(f"{precision - scale} integer digits do not fit in {target.precision - target.scale}")
    if not problems:
        return None
    return (
        f"{target} is lossy for decimal({precision},{scale}): {' and '.join(problems)} (exact: "
        f"decimal(P,S) with S >= {scale} and P - S >= {precision - scale}, or string)"
    )


# ----------------------------------------------------------------------------------- what to suggest
def _as_decimal(value: Any) -> decimal.Decimal | None:
    """A driver's value as a Decimal: Decimal, int, float (SQLite's REAL, by its shortest repr), decimal text."""
    if isinstance(value, decimal.Decimal | bool):
        return None if isinstance(value, bool) else value
    if isinstance(value, int | float):
        return decimal.Decimal(value if isinstance(value, int) else repr(value))
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    try:
        return decimal.Decimal(value.strip()) if isinstance(value, str) else None
    except decimal.InvalidOperation:
        return None


def decimal_suggestion(values: Iterable[Any], scale: int = 0) -> str | None:
    """``decimal(38,S)`` holding every value exactly (S: the most fractional digits any value needs, at least
    ``scale``), or None when none does (NaN, infinity, more than 38 digits in all)."""
    integer, fraction = 0, scale
    for value in values:
        if value is None:
            continue
        number = _as_decimal(value)
        if number is None or not number.is_finite():
            return None
        if not number:
            continue
        _, digits, exponent = number.as_tuple()  # not normalize(): it rounds to the context's 28 digits
        assert isinstance(exponent, int)
        significant = "".join(map(str, digits)).rstrip("0")  # trailing zeros need no digit of their own
        exponent += len(digits) - len(significant)
        fraction = max(fraction, -exponent)
        integer = max(integer, len(significant) + exponent)
    if integer + fraction > MAX_PRECISION:
        return None
    return str(TypeOverride("decimal", MAX_PRECISION, fraction))


def hint(table: str, column: str, overrides: Sequence[str]) -> str:
    """The sentence a refusal ends with: which ``tables.yaml`` override would store the value exactly."""
    if not overrides:
        return ""
    first, *others = overrides
    entry = f"{{{_name(column)}: {{type: {_quoted(first)}}}}}"
    text = f"to store it exactly, add to tables.yaml under tables.{table}: columns: {entry}"
    for other in others:
        text += f" or {{type: {_quoted(other)}}}"
    return text


def _quoted(spec: str) -> str:
    return f'"{spec}"' if "(" in spec else spec


def _name(column: str) -> str:
    """A column name as a YAML flow-mapping key (quoted unless it is a plain word)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column):
        return column
    return '"' + column.replace("\\", "\\\\").replace('"', '\\"') + '"'
