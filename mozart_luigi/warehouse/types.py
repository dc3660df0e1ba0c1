"""Arrow -> warehouse column types, and the schema-drift rules (what may change, what must fail).

One dialect-neutral :class:`ColumnType` (spelled like Trino's types) is derived from each Arrow field, then
rendered for Trino/Iceberg or DuckDB. The mapping is exact or it fails:

| Arrow | Trino / Iceberg | DuckDB |
|---|---|---|
| bool | boolean | BOOLEAN |
| int8, int16, int32 | integer (Iceberg has no tinyint/smallint) | INTEGER |
| int64 | bigint | BIGINT |
| float32 / float64 | real / double | FLOAT / DOUBLE |
| decimal128/256(p<=38, s>=0) | decimal(p,s) | DECIMAL(p,s) |
| string, large_string, string_view | varchar | VARCHAR |
| binary, large_binary, binary_view, fixed_size_binary | varbinary | BLOB |
| date32, date64 | date | DATE |
| time64(us) | time(6) | TIME |
| timestamp(s/ms/us), no time zone | timestamp(6) | TIMESTAMP |
| timestamp(s/ms/us, tz=any) | timestamp(6) with time zone (an instant, shown in UTC) | TIMESTAMPTZ |
| list<T>, large_list<T> | array(T) | T[] |
| dictionary<v> | as v | as v |

Anything else (unsigned integers, time32, nanosecond timestamps and times, decimals over 38 digits, structs,
maps, durations, null) raises :class:`~mozart_luigi.errors.TypeMappingError` naming the column: the
extract must map it explicitly (e.g. to a string).

Drift (:func:`plan_drift`): a new column is added; ``integer -> bigint``, ``real -> double`` and
``decimal(p,s) -> decimal(p2,s)`` with ``p2 > p`` are widened; narrowing, any other type change and a column
of the table missing from the new schema raise :class:`~mozart_luigi.errors.SchemaDriftError` before anything
is changed. A type change that a tables.yaml type override caused (the field metadata ``mozart.override``,
carried in :attr:`ColumnType.override`) is refused too, and the message says so and what to do.
"""

from __future__ import annotations

__all__ = [
    "ColumnType",
    "DriftPlan",
    "column_type",
    "columns_from_schema",
    "parse_duckdb_type",
    "parse_trino_type",
    "plan_drift",
]

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from mozart_luigi.errors import SchemaDriftError, TypeMappingError
from mozart_luigi.overrides import setting
from mozart_luigi.warehouse.base import EXTRACTED_AT_COLUMN, PARTITION_COLUMN

_DUCKDB_NAMES = {
    "boolean": "BOOLEAN",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double": "DOUBLE",
    "varchar": "VARCHAR",
    "varbinary": "BLOB",
    "date": "DATE",
    "time": "TIME",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
}
_TRINO_NAMES = {"time": "time(6)", "timestamp": "timestamp(6)", "timestamptz": "timestamp(6) with time zone"}
_WIDER = {("integer", "bigint"), ("real", "double")}
_RESERVED = (PARTITION_COLUMN, EXTRACTED_AT_COLUMN)


@dataclass(frozen=True)
class ColumnType:
    """A warehouse column type: ``kind`` plus precision/scale for decimals."""

    kind: str
    precision: int | None = None
    scale: int | None = None
    element: ColumnType | None = None
    #: the tables.yaml override that chose this type (``tables.t.columns.c.type = 'string'``); not compared
    override: str | None = field(default=None, compare=False)

    def trino(self) -> str:
        if self.kind == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if self.kind == "array" and self.element is not None:
            return f"array({self.element.trino()})"
        return _TRINO_NAMES.get(self.kind, self.kind)

    def duckdb(self) -> str:
        if self.kind == "decimal":
            return f"DECIMAL({self.precision},{self.scale})"
        if self.kind == "array" and self.element is not None:
            return f"{self.element.duckdb()}[]"
        return _DUCKDB_NAMES.get(self.kind, self.kind.upper())

    def __str__(self) -> str:
        return self.trino()


_SIMPLE: list[tuple[Callable[[pa.DataType], bool], ColumnType]] = [
    (pa.types.is_boolean, ColumnType("boolean")),
    (lambda t: pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t), ColumnType("integer")),
    (pa.types.is_int64, ColumnType("bigint")),
    (pa.types.is_float32, ColumnType("real")),
    (pa.types.is_float64, ColumnType("double")),
    (
        lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
        ColumnType("varchar"),
    ),
    (
        lambda t: (
            pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_binary_view(t)
            or pa.types.is_fixed_size_binary(t)
        ),
        ColumnType("varbinary"),
    ),
    (lambda t: pa.types.is_date32(t) or pa.types.is_date64(t), ColumnType("date")),
]


def column_type(arrow_type: pa.DataType, column: str) -> ColumnType:
    """The exact warehouse type of an Arrow type, or ``TypeMappingError`` naming the column."""
    if pa.types.is_dictionary(arrow_type):
        return column_type(arrow_type.value_type, column)
    for test, result in _SIMPLE:
        if test(arrow_type):
            return result
    if pa.types.is_decimal(arrow_type):
        return _decimal(arrow_type, column)
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit != "ns":
        return ColumnType("timestamptz" if arrow_type.tz else "timestamp")
    if pa.types.is_time64(arrow_type) and arrow_type.unit == "us":
        return ColumnType("time")
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return ColumnType("array", element=column_type(arrow_type.value_type, column))
    raise TypeMappingError(
        f"column {column!r}: Arrow type {arrow_type} has no exact Iceberg/warehouse type "
        "(unsigned integers, time32, nanosecond times, decimals over 38 digits, structs, "
        "maps and null must be mapped explicitly by the extract)"
    )


def _decimal(arrow_type: pa.DataType, column: str) -> ColumnType:
    precision, scale = arrow_type.precision, arrow_type.scale
    if precision > 38 or scale < 0:
        raise TypeMappingError(
            f"column {column!r}: {arrow_type} does not fit Iceberg's decimal(38, s) "
            "with 0 <= s; map it to a string in the extract"
        )
    return ColumnType("decimal", precision, scale)


def columns_from_schema(schema: pa.Schema, *, tenant: str, table: str) -> list[tuple[str, ColumnType]]:
    """``(name, type)`` for every source column; names lower-cased (Trino folds identifiers)."""
    out: list[tuple[str, ColumnType]] = []
    seen: set[str] = set()
    for arrow_field in schema:
        name = arrow_field.name.lower()
        if name in _RESERVED or name in seen or not name:
            problem = "is reserved by mozart" if name in _RESERVED else "is empty or duplicated (case-insensitive)"
            raise TypeMappingError(f"column {arrow_field.name!r} {problem}", tenant=tenant, table=table)
        seen.add(name)
        try:
            kind = column_type(arrow_field.type, arrow_field.name)
        except TypeMappingError as exc:
            raise TypeMappingError(str(exc), tenant=tenant, table=table) from None
        override = (arrow_field.metadata or {}).get(b"mozart.override")
        if override:
            kind = dataclasses.replace(kind, override=f"{setting(table, arrow_field.name)} = {override.decode()!r}")
        out.append((name, kind))
    return out


# ------------------------------------------------------------------------------------- parse back types
_DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_FROM_TRINO = {
    "boolean": "boolean",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "double": "double",
    "varchar": "varchar",
    "varbinary": "varbinary",
    "date": "date",
    "time(6)": "time",
    "timestamp(6)": "timestamp",
    "timestamp(6) with time zone": "timestamptz",
}
_FROM_DUCKDB = {
    "boolean": "boolean",
    "integer": "integer",
    "bigint": "bigint",
    "float": "real",
    "double": "double",
    "varchar": "varchar",
    "blob": "varbinary",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamp with time zone": "timestamptz",
}


def parse_trino_type(text: str) -> ColumnType:
    """A type as Trino's ``information_schema.columns.data_type`` spells it; unknown kinds stay verbatim."""
    return _parse(text, _FROM_TRINO)


def parse_duckdb_type(text: str) -> ColumnType:
    return _parse(text, _FROM_DUCKDB)


def _parse(text: str, names: Mapping[str, str]) -> ColumnType:
    lowered = text.strip().lower()
    if lowered.startswith("array(") and lowered.endswith(")"):
        return ColumnType("array", element=_parse(lowered[6:-1], names))
    if lowered.endswith("[]"):
        return ColumnType("array", element=_parse(lowered[:-2], names))
    match = _DECIMAL_RE.match(lowered)
    if match:
        return ColumnType("decimal", int(match.group(1)), int(match.group(2)))
    return ColumnType(names.get(lowered, lowered))


# ----------------------------------------------------------------------------------------------- drift
@dataclass(frozen=True)
class DriftPlan:
    """What :meth:`Warehouse.ensure_table` must do: create, or add and widen columns (maybe nothing)."""

    create: bool
    columns: tuple[tuple[str, ColumnType], ...]
    adds: tuple[tuple[str, ColumnType], ...] = ()
    widens: tuple[tuple[str, ColumnType, ColumnType], ...] = field(default=())

    def describe(self) -> list[str]:
        if self.create:
            return [f"created table with {len(self.columns)} column(s)"]
        return [f"added column {name} {kind}" for name, kind in self.adds] + [
            f"widened column {name} {old} -> {new}" for name, old, new in self.widens
        ]


def is_widening(old: ColumnType, new: ColumnType) -> bool:
    if (old.kind, new.kind) in _WIDER:
        return True
    return old.kind == new.kind == "decimal" and old.scale == new.scale and (new.precision or 0) > (old.precision or 0)


def plan_drift(
    existing: Mapping[str, ColumnType], wanted: Sequence[tuple[str, ColumnType]], *, tenant: str, table: str
) -> DriftPlan:
    """Compare the table's columns (``existing``, empty when missing) with the new schema's.

    Raises ``SchemaDriftError`` naming the first offending column and both types.
    """
    if not existing:
        return DriftPlan(create=True, columns=tuple(wanted))
    table_cols = {name.lower(): kind for name, kind in existing.items() if name.lower() not in _RESERVED}
    wanted_map = dict(wanted)
    for name, current in table_cols.items():
        if name not in wanted_map:
            raise SchemaDriftError(
                f"column {name!r} ({current}) is in the warehouse table but missing from the new "
                "source schema (dropped columns are refused)",
                tenant=tenant,
                table=table,
            )
    adds, widens = [], []
    for name, new in wanted:
        old = table_cols.get(name)
        if old is None:
            adds.append((name, new))
        elif old != new and is_widening(old, new):
            widens.append((name, old, new))
        elif old != new:
            what = "narrowing" if is_widening(new, old) else "type change"
            why = (
                ""
                if new.override is None
                else (
                    f": the type override {new.override} changes the type of a column the table already holds, "
                    "and a column only widens in place (integer -> bigint, real -> double, decimal(p,s) -> "
                    "decimal(p2,s) with p2 > p). Choose an override that widens, or rebuild the table: drop it in "
                    "the warehouse and extract its days again (docs/types.md, 'An override on a loaded column')"
                )
            )
            raise SchemaDriftError(
                f"column {name!r}: {what} from {old} (table) to {new} (source) is refused{why}",
                tenant=tenant,
                table=table,
            )
    return DriftPlan(create=False, columns=tuple(wanted), adds=tuple(adds), widens=tuple(widens))
