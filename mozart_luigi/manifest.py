"""The ``_SUCCESS`` manifest: written last, after every part; its presence means the extract is whole.

Layout: ``{lake}/{tenant}/{table}/{YYYY-MM-DD}/part-{run_id}-{n:05d}.parquet`` ... then ``_SUCCESS`` (JSON).

Each part is listed with its rows, its size in bytes, the SHA-256 of its content (computed while it was
written) and, on S3, the ETag the store gave it. A load verifies all of them before it commits anything.
:meth:`Manifest.from_json` checks the shape of what it reads and raises :class:`ManifestFormatError` (a
``ValueError``) naming the field at fault: a manifest is input, not truth.
"""

from __future__ import annotations

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "RUN_ID_RE",
    "Manifest",
    "ManifestFormatError",
    "PartFile",
    "new_run_id",
    "run_started",
]

import base64
import datetime as dt
import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

MANIFEST_NAME = "_SUCCESS"
MANIFEST_VERSION = 2
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_DECIMAL_RE = re.compile(r"^-?[0-9]+(?:\.[0-9]+)?(?:E[+-]?[0-9]+)?$")
RUN_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}(?:[0-9]{6})?-[0-9a-f]{8}$")


def new_run_id(now: dt.datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSffffff-xxxxxxxx`` (UTC start, to the microsecond, + 32 random bits): names one extract
    attempt's parts, and orders attempts (:func:`run_started`)."""
    return f"{(now or dt.datetime.now(dt.UTC)):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


def run_started(run_id: str) -> dt.datetime | None:
    """When the attempt ``run_id`` started (UTC), or None for a name not of :func:`new_run_id`'s form."""
    if not RUN_ID_RE.match(run_id):
        return None
    stamp = run_id.split("-", 1)[0]
    pattern = "%Y%m%dT%H%M%S%f" if len(stamp) > 15 else "%Y%m%dT%H%M%S"
    return dt.datetime.strptime(stamp, pattern).replace(tzinfo=dt.UTC)


class ManifestFormatError(ValueError):
    """The manifest is not valid JSON of the expected shape (the message names the field)."""


@dataclass(frozen=True)
class PartFile:
    """One Parquet part: ``sha256`` of its bytes; ``etag`` as the S3 store reported it (None locally)."""

    name: str
    rows: int
    bytes: int
    sha256: str = ""
    etag: str | None = None


@dataclass(frozen=True)
class Manifest:
    """What one ``ExtractTable`` run produced. ``window_*`` is half-open ``[start, end)``; None for ``full``."""

    tenant: str
    table: str
    date: dt.date
    mode: str
    row_count: int
    source_count: int
    files: tuple[PartFile, ...]
    schema: pa.Schema
    extracted_at: dt.datetime
    run_id: str
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    source: str = ""
    source_table: str = ""
    zero_dates_nulled: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    refresh: dt.date | None = None  # the run date whose lookback re-extracted this day (None: the day's own)
    #: ``checksum`` columns -> the source's sum in the extract's snapshot (exact decimal text; None: NULL)
    checksums: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> str:
        body = {
            "version": MANIFEST_VERSION,
            "tenant": self.tenant,
            "table": self.table,
            "date": self.date.isoformat(),
            "mode": self.mode,
            "window": {
                "start": self.window_start.isoformat() if self.window_start else None,
                "end": self.window_end.isoformat() if self.window_end else None,
            },
            "row_count": self.row_count,
            "source_count": self.source_count,
            "files": [asdict(f) for f in self.files],
            "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in self.schema],
            "arrow_schema_ipc": base64.b64encode(self.schema.serialize().to_pybytes()).decode("ascii"),
            "extracted_at": self.extracted_at.isoformat(),
            "run_id": self.run_id,
            "source": self.source,
            "source_table": self.source_table,
            "zero_dates_nulled": self.zero_dates_nulled,
            "details": self.details,
        }
        if self.refresh is not None:
            body["refresh"] = self.refresh.isoformat()
        if self.checksums:
            body["checksums"] = self.checksums
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse and shape-check; any defect raises :class:`ManifestFormatError` naming the field."""
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ManifestFormatError(f"not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise ManifestFormatError("not a JSON object")
        try:
            return cls._from_body(body)
        except ManifestFormatError:
            raise
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise ManifestFormatError(f"field {exc} is missing or malformed ({type(exc).__name__})") from None

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> Manifest:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(body["arrow_schema_ipc"], validate=True)))
        window = body.get("window") or {}
        return cls(
            tenant=_str(body, "tenant"),
            table=_str(body, "table"),
            date=dt.date.fromisoformat(_str(body, "date")),
            mode=_str(body, "mode"),
            row_count=_count(body, "row_count"),
            source_count=_count(body, "source_count"),
            files=tuple(_part(f) for f in _list(body, "files")),
            schema=schema,
            extracted_at=dt.datetime.fromisoformat(_str(body, "extracted_at")),
            run_id=_str(body, "run_id"),
            window_start=_dt_or_none(window.get("start")),
            window_end=_dt_or_none(window.get("end")),
            source=str(body.get("source", "")),
            source_table=str(body.get("source_table", "")),
            zero_dates_nulled=int(body.get("zero_dates_nulled", 0)),
            details=details if isinstance(details := body.get("details"), dict) else {},
            refresh=dt.date.fromisoformat(_str(body, "refresh")) if body.get("refresh") is not None else None,
            checksums=_checksums(body.get("checksums"), schema),
        )


def _str(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise ManifestFormatError(f"field {key!r} must be a string")
    return value


def _count(body: dict[str, Any], key: str) -> int:
    value: object = body[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestFormatError(f"field {key!r} must be a whole number >= 0")
    return value


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body[key]
    if not isinstance(value, list):
        raise ManifestFormatError(f"field {key!r} must be a list")
    return value


def _part(entry: Any) -> PartFile:
    if not isinstance(entry, dict) or set(entry) - {"name", "rows", "bytes", "sha256", "etag"}:
        raise ManifestFormatError(f"files entry {entry!r:.200} must be an object of name, rows, bytes, sha256, etag")
    sha = entry.get("sha256", "")
    etag = entry.get("etag")
    if not isinstance(sha, str) or (sha and not _SHA256_RE.match(sha)):
        raise ManifestFormatError(f"files entry {entry.get('name')!r:.200}: sha256 must be 64 hex digits")
    if etag is not None and not isinstance(etag, str):
        raise ManifestFormatError(f"files entry {entry.get('name')!r:.200}: etag must be a string")
    return PartFile(
        name=_str(entry, "name"), rows=_count(entry, "rows"), bytes=_count(entry, "bytes"), sha256=sha, etag=etag
    )


def _checksums(value: Any, schema: pa.Schema) -> dict[str, str | None]:
    """``checksums``: absent (older manifests, tables without ``checksum``) or column -> decimal text / null,
    each a column of the schema."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestFormatError("field 'checksums' must be an object of column -> decimal text or null")
    for column, text in value.items():
        if schema.get_field_index(column) < 0:
            raise ManifestFormatError(f"checksums entry {column!r:.200} is not a column of the schema")
        if text is not None and (not isinstance(text, str) or not _DECIMAL_RE.match(text)):
            raise ManifestFormatError(f"checksums entry {column!r:.200}: {text!r:.80} is not decimal text or null")
    return dict(value)


def _dt_or_none(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
