"""The ``_SUCCESS`` manifest: written last, after every part; its presence means the extract is whole.

Layout: ``{lake}/{tenant}/{table}/{YYYY-MM-DD}/part-{run_id}-{n:05d}.parquet`` ... then ``_SUCCESS`` (JSON).
"""

from __future__ import annotations

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "Manifest", "PartFile"]

import base64
import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

MANIFEST_NAME = "_SUCCESS"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PartFile:
    name: str
    rows: int
    bytes: int


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
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body = json.loads(text)
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(body["arrow_schema_ipc"])))
        window = body.get("window") or {}
        return cls(
            tenant=body["tenant"],
            table=body["table"],
            date=dt.date.fromisoformat(body["date"]),
            mode=body["mode"],
            row_count=int(body["row_count"]),
            source_count=int(body["source_count"]),
            files=tuple(PartFile(**f) for f in body["files"]),
            schema=schema,
            extracted_at=dt.datetime.fromisoformat(body["extracted_at"]),
            run_id=body["run_id"],
            window_start=_dt_or_none(window.get("start")),
            window_end=_dt_or_none(window.get("end")),
            source=body.get("source", ""),
            source_table=body.get("source_table", ""),
            zero_dates_nulled=int(body.get("zero_dates_nulled", 0)),
            details=body.get("details") or {},
        )


def _dt_or_none(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
