"""What the readers share: the one fallback signal, exact Arrow conversions, re-batching, error text.

A *converter* turns one driver column (an Arrow array) into the target type. Every converter here is
exact by construction — an identity, a widening, or a checked parse (Arrow's safe casts raise on a value
that does not fit instead of rounding it). Anything else is :class:`NativeUnsupportedError`.
"""

from __future__ import annotations

__all__ = [
    "Converter",
    "NativeUnsupportedError",
    "Where",
    "convert_batch",
    "check_width",
    "read_ahead",
    "rebatch",
    "safe_converter",
    "scrub",
    "zero_dates_to_null",
]

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from mozart_luigi.errors import SourceError, SourceUnavailableError, TypeMappingError
from mozart_luigi.secrets import redact
from mozart_luigi.types import inexact_hint

Converter = Callable[[pa.Array], pa.Array]

_UTC_NAMES = frozenset({"UTC", "utc", "+00:00", "Etc/UTC", "Z", "GMT", "Etc/GMT"})


class NativeUnsupportedError(SourceError):
    """The one fallback signal: this reader cannot produce this query or column exactly.

    Raised only by ``BatchReader.count``, before the first batch (nothing was read or written), so
    ``Snapshot.count`` falls back to the SQLAlchemy row path safely. Should it ever escape, it is a
    terminal :class:`SourceError` naming the tenant, the table and the reason.
    """


def _identity(array: pa.Array) -> pa.Array:
    return array


def _cast_to(target: pa.DataType) -> Converter:
    def convert(array: pa.Array) -> pa.Array:
        return pc.cast(array, target, safe=True)

    return convert


def _nonzero(array: pa.Array) -> pa.Array:
    return pc.not_equal(array, 0)


def _same_instant_tz(src: pa.TimestampType, dst: pa.TimestampType) -> bool:
    if (src.tz is None) != (dst.tz is None):
        return False
    return src.tz == dst.tz or (src.tz in _UTC_NAMES and dst.tz in _UTC_NAMES)


def _widens(src: pa.DataType, dst: pa.DataType) -> bool:
    """True when every ``src`` value has exactly one ``dst`` value (no rounding, no overflow possible)."""
    t = pa.types
    if t.is_integer(src) and t.is_integer(dst):
        if t.is_signed_integer(src) and t.is_unsigned_integer(dst):
            return False
        extra = 0 if t.is_signed_integer(src) == t.is_signed_integer(dst) else 1
        return cast(bool, dst.bit_width >= src.bit_width + extra)  # pyarrow is untyped
    if t.is_floating(src) and t.is_floating(dst):
        return cast(bool, dst.bit_width >= src.bit_width)
    if t.is_decimal(src) and t.is_decimal(dst):
        return cast(bool, dst.scale == src.scale and dst.precision >= src.precision)
    if t.is_timestamp(src) and t.is_timestamp(dst):
        return src.unit == dst.unit and _same_instant_tz(src, dst)
    pairs = {
        (pa.string(), pa.large_string()),
        (pa.large_string(), pa.string()),
        (pa.binary(), pa.large_binary()),
        (pa.large_binary(), pa.binary()),
    }
    return (src, dst) in pairs


def _checked(src: pa.DataType, dst: pa.DataType) -> bool:
    """Numeric casts Arrow checks value by value: exact, or an error for a value that does not fit."""
    t = pa.types
    return cast(bool, (t.is_integer(src) or t.is_decimal(src)) and (t.is_integer(dst) or t.is_decimal(dst)))


def safe_converter(src: pa.DataType, dst: pa.DataType) -> Converter | None:
    """An exact converter between two plain Arrow types, or None when there is none."""
    if src.equals(dst, check_metadata=False):
        return _identity
    if _widens(src, dst) or _checked(src, dst):
        return _cast_to(dst)  # safe=True: Arrow raises instead of truncating or overflowing
    if pa.types.is_integer(src) and pa.types.is_boolean(dst):
        return _nonzero  # MySQL TINYINT(1) / BOOLEAN: any non-zero value is true, as in the driver's bool()
    if pa.types.is_list(src) and pa.types.is_list(dst) and src.value_type.equals(dst.value_type):
        return _cast_to(dst)  # same values, only the child field's name/metadata differ
    return None


def zero_dates_to_null(text: pa.Array, stats: dict[str, int]) -> pa.Array:
    """MySQL ``0000-00-00...`` values become NULL; how many is added to ``stats['zero_dates_nulled']``."""
    zero = pc.starts_with(text, "0000-00-00")
    hits = pc.sum(zero).as_py() or 0
    if not hits:
        return text
    stats["zero_dates_nulled"] = stats.get("zero_dates_nulled", 0) + hits
    return pc.if_else(zero, pa.scalar(None, text.type), text)


def convert_batch(
    batch: pa.RecordBatch, converters: list[Converter], schema: pa.Schema, where: Where
) -> pa.RecordBatch:
    """One driver batch -> one batch of ``schema``; a value that does not convert exactly names its column."""
    arrays = []
    for i, (convert, field) in enumerate(zip(converters, schema, strict=True)):
        try:
            arrays.append(convert(batch.column(i)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError) as exc:
            raise where.inexact(field, exc, batch.column(i)) from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def rebatch(batches: Iterable[pa.RecordBatch], max_rows: int) -> Iterator[pa.RecordBatch]:
    """Zero-copy slices of at most ``max_rows`` rows; empty driver batches are skipped."""
    for batch in batches:
        for offset in range(0, batch.num_rows, max_rows):
            yield batch.slice(offset, max_rows)


@dataclass(frozen=True)
class _Ended:
    """The producer's last item: its batches are exhausted (``error`` None) or it failed with ``error``."""

    error: BaseException | None = None


@contextmanager
def read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 1) -> Iterator[Iterator[pa.RecordBatch]]:
    """``batches`` produced in a thread, at most ``depth`` batches ahead of the consumer.

    For a driver whose stream releases the GIL while it decodes and waits (ADBC: measured), the next batch
    is read and converted while the caller encodes and writes this one. The producer's exception is
    re-raised, as it was raised, to the consumer, after the batches before it. On exit (consumed, failed or
    abandoned) the producer is stopped and joined — at most the batch it is reading is finished — before
    the caller closes the connection, and ``batches`` is closed in the caller's thread.
    """
    handoff: queue.Queue[pa.RecordBatch | _Ended] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: pa.RecordBatch | _Ended) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as exc:  # noqa: BLE001  # handed to the consumer, which raises it
            put(_Ended(exc))
            return
        put(_Ended())

    def consume() -> Iterator[pa.RecordBatch]:
        while True:
            item = handoff.get()
            if isinstance(item, _Ended):
                if item.error is not None:
                    raise item.error
                return
            yield item

    thread = threading.Thread(target=produce, name="mozart-read-ahead", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def scrub(text: str, url: sa.URL) -> str:
    """A driver message without the password (drivers may echo connection strings)."""
    return redact(text, [url.password if isinstance(url.password, str) else None])


@dataclass(frozen=True)
class Where:
    """What a reader's errors name: the source (never its password), the tenant and the table."""

    url: sa.URL
    tenant: str | None
    table: str | None

    def unsupported(self, message: str) -> NativeUnsupportedError:
        return NativeUnsupportedError(message, tenant=self.tenant, table=self.table)

    def driver_error(self, driver: str, exc: BaseException, unreachable: bool) -> SourceError:
        kind = SourceUnavailableError if unreachable else SourceError
        url = self.url
        source = f"{url.get_backend_name()} {url.host}:{url.port}/{url.database} ({driver})"
        return kind(f"{source}: {scrub(str(exc), url)}", tenant=self.tenant, table=self.table)

    def inexact(self, field: pa.Field, exc: Exception, values: pa.Array | None = None) -> TypeMappingError:
        """The row path's message for a value that cannot be stored exactly (never rounded), with the
        tables.yaml override that would store it (computed from the driver's ``values``)."""
        source = (field.metadata or {}).get(b"mozart.source_type", b"?").decode()
        found = [] if values is None else _python_values(values)
        durations = self.url.get_backend_name() in ("mysql", "mariadb")
        advice = inexact_hint(self.table or "<table>", field.name, field.type, found, durations=durations)
        return TypeMappingError(
            f"column {field.name!r} ({source} -> {field.type}): a value cannot be stored "
            f"exactly: {exc}{'; ' + advice if advice else ''} (see docs/types.md)",
            tenant=self.tenant,
            table=self.table,
        )


def _python_values(values: pa.Array) -> list[object]:
    """A driver column's values as Python objects (an extension type's storage: PostgreSQL ``numeric`` text)."""
    try:
        array = values.storage if isinstance(values, pa.ExtensionArray) else values
        found: list[object] = array.to_pylist()
        return found
    except (pa.ArrowException, ValueError, TypeError):  # only a hint: never hide the refusal itself
        return []


def check_width(query: sa.Select[Any], schema: pa.Schema, where: Where) -> None:
    width = len(query.selected_columns)
    if width != len(schema):
        raise where.unsupported(f"query selects {width} columns but the target schema has {len(schema)}")
