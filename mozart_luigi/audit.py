"""``mozart audit --from D1 --to D2``: which loaded days of incremental tables no longer match their source.

Per tenant, incremental table and day of the range that was loaded, the source's row count in the day's
window *now* (one ``count(*)`` per day, in one read transaction per table: the extract's own window query,
values bound, identifiers quoted by the dialect) is compared with the rows loaded (the newest ``LoadIceberg``
marker of the day). A day differs when rows were committed late into it, deleted, or moved out of it (their
cursor changed since); ``lookback_days`` re-extracts recent days every night, ``mozart rerun ... --from-extract``
any day. For a table with ``checksum`` the day's sums are compared too (in the same transaction), with those
its load checked (the marker's ``details.checksums``): a value updated in place, its cursor unchanged, differs.

The differing days are written to ``{MOZART_DATA_DIR}/audit/findings.json`` (merged: the cells this audit
checked are replaced, the others kept), which ``mozart status`` reads to show them as ``stale`` until the day
is loaded again. ``status`` never queries a source. A tenant whose source fails is reported with its error;
the other tenants are audited.
"""

from __future__ import annotations

__all__ = ["AuditResult", "Finding", "audit", "findings_path", "read_findings", "window_counts", "window_totals"]

import contextlib
import datetime as dt
import decimal
import fcntl
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mozart_luigi.config import Config, TableConfig
from mozart_luigi.connectors import Connector, Snapshot, Window, connector_for
from mozart_luigi.errors import MozartError
from mozart_luigi.report import newest_load
from mozart_luigi.settings import Settings
from mozart_luigi.warehouse import Marker, open_warehouse

log = logging.getLogger(__name__)
Cell = tuple[str, str, dt.date]  # (tenant, table, date)


@dataclass(frozen=True)
class Finding:
    """A loaded day whose source count differs now. ``loaded_at``: when the load it judged finished."""

    tenant: str
    table: str
    date: dt.date
    loaded_rows: int
    source_rows: int
    loaded_at: dt.datetime
    audited_at: dt.datetime
    #: ``(column, loaded sum, source sum now)`` of the ``checksum`` columns whose sum changed (docs/late-rows.md)
    sums: tuple[tuple[str, str | None, str | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: tenant, table, date, loaded_rows, source_rows (and ``checksums`` when a sum
        differs: ``{column: {"loaded": ..., "source": ...}}``)."""
        out: dict[str, Any] = {
            "tenant": self.tenant,
            "table": self.table,
            "date": self.date.isoformat(),
            "loaded_rows": self.loaded_rows,
            "source_rows": self.source_rows,
        }
        if self.sums:
            out["checksums"] = {column: {"loaded": then, "source": now} for column, then, now in self.sums}
        return out

    def describe(self) -> str:
        """``loaded 12, source now 12, sum(amount) loaded 10.50, source now 11.50``."""
        sums = "".join(f", sum({c}) loaded {then}, source now {now}" for c, then, now in self.sums)
        return f"loaded {self.loaded_rows:,}, source now {self.source_rows:,}{sums}"

    def record(self) -> dict[str, Any]:
        return {**self.to_dict(), "loaded_at": self.loaded_at.isoformat(), "audited_at": self.audited_at.isoformat()}

    @classmethod
    def from_record(cls, raw: Mapping[str, Any]) -> Finding:
        return cls(
            tenant=str(raw["tenant"]),
            table=str(raw["table"]),
            date=dt.date.fromisoformat(raw["date"]),
            loaded_rows=int(raw["loaded_rows"]),
            source_rows=int(raw["source_rows"]),
            loaded_at=_utc(dt.datetime.fromisoformat(raw["loaded_at"])),
            audited_at=_utc(dt.datetime.fromisoformat(raw["audited_at"])),
            sums=tuple((str(c), v["loaded"], v["source"]) for c, v in (raw.get("checksums") or {}).items()),
        )


@dataclass
class AuditResult:
    """The differing days, how many loaded days were compared, and each failed tenant's error."""

    findings: list[Finding] = field(default_factory=list)
    checked: list[Cell] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.errors


def audit(config: Config, start: dt.date, end: dt.date, *, tenants: Sequence[str] | None = None) -> AuditResult:
    """Compare every loaded day of ``[start, end]`` (see the module docstring) and record the findings."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    chosen = list(tenants) if tenants else list(config.tenants)
    audited_at = dt.datetime.now(dt.UTC)
    loaded = _loaded(config.settings, chosen, days)
    result = AuditResult()
    for tenant in chosen:
        tables = [t for t in config.tables_for(tenant) if t.mode == "incremental" and t.keys_of is None]
        try:
            connector = connector_for(config.tenant(tenant))
            try:
                for table in tables:
                    marked = {d: m for (t, x, d), m in loaded.items() if t == tenant and x == table.name}
                    if marked:
                        _audit_table(connector, table, marked, audited_at, result)
            finally:
                connector.dispose()
        except Exception as exc:  # noqa: BLE001 - one tenant's failure never stops the others; it is reported
            text = str(exc) if isinstance(exc, MozartError) else f"tenant '{tenant}': {type(exc).__name__}: {exc}"
            log.warning("audit: tenant %s: %s", tenant, text)
            result.errors[tenant] = text
    _record(config.settings, result)
    return result


def _audit_table(
    connector: Connector,
    table: TableConfig,
    marked: dict[dt.date, Marker],
    audited_at: dt.datetime,
    result: AuditResult,
) -> None:
    """Compare each loaded day of one table: its count and, for a ``checksum`` table, its sums (the ones the
    load's marker records, which the load checked against the day it loaded)."""
    counts, sums = window_totals(connector, table, sorted(marked))
    tenant = connector.tenant.id
    for day, marker in sorted(marked.items()):
        result.checked.append((tenant, table.name, day))
        differing = _differing_sums(marker.details.get("checksums"), sums.get(day, {}))
        if counts[day] != marker.rows or differing:
            loaded_at = _utc(marker.finished_at)
            rows = int(marker.rows or 0)
            result.findings.append(
                Finding(tenant, table.name, day, rows, counts[day], loaded_at, audited_at, sums=differing)
            )


def _differing_sums(loaded: Any, now: Mapping[str, str | None]) -> tuple[tuple[str, str | None, str | None], ...]:
    """``(column, loaded sum, source sum now)`` of every checksum column whose sum changed since the load."""
    if not isinstance(loaded, dict):
        return ()  # loaded before the table had ``checksum``: nothing to compare with
    out = []
    for column, then in loaded.items():
        if column in now and _decimal(then) != _decimal(now[column]):
            out.append((str(column), then, now[column]))
    return tuple(out)


def _decimal(text: str | None) -> decimal.Decimal | None:
    return None if text is None else decimal.Decimal(text)


def _loaded(settings: Settings, tenants: Sequence[str], days: Sequence[dt.date]) -> dict[Cell, Marker]:
    """The newest load marker of every (tenant, table, day): one marker query per day."""
    wanted = set(tenants)
    out: dict[Cell, Marker] = {}
    with open_warehouse(settings) as warehouse:
        for day in days:
            markers = [m for m in warehouse.markers(None, day) if m.tenant in wanted and m.rows is not None]
            for tenant, table in {(m.tenant, m.table) for m in markers if m.table}:
                marker = newest_load([m for m in markers if m.tenant == tenant], table)
                if marker is not None:
                    out[(tenant, table, day)] = marker
    return out


def window_counts(connector: Connector, table: TableConfig, days: Iterable[dt.date]) -> dict[dt.date, int]:
    """``count(*)`` of each day's window of ``table``, all in one read transaction (the table reflected once):
    the extract's own count query (bound window values, dialect-quoted names), never a row read."""
    return window_totals(connector, table, days)[0]


def window_totals(
    connector: Connector, table: TableConfig, days: Iterable[dt.date]
) -> tuple[dict[dt.date, int], dict[dt.date, dict[str, str | None]]]:
    """:func:`window_counts`, and for a table with ``checksum`` each day's sums (the extract's own sums query,
    in the same transaction)."""
    counts: dict[dt.date, int] = {}
    sums: dict[dt.date, dict[str, str | None]] = {}
    with connector.snapshot(table, None) as whole:
        conn = whole.connection
        for day in days:
            window = Snapshot(connector, conn, table, Window.for_date(day), whole.source_columns)
            with connector.errors("cannot count rows on", table):
                counts[day] = int(conn.execute(window.count_query).scalar_one())
                if window.sums_query is not None:
                    window.record_sums(conn.execute(window.sums_query).one())
                    sums[day] = window.sums
    return counts, sums


# ------------------------------------------------------------------------------------------ findings file


def findings_path(settings: Settings) -> Path:
    return settings.data_dir / "audit" / "findings.json"


def read_findings(settings: Settings) -> dict[Cell, Finding]:
    """The recorded findings by cell (empty when there are none or the file is unreadable)."""
    path = findings_path(settings)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        found = [Finding.from_record(raw) for raw in body.get("findings", [])]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable audit findings %s: %s", path, exc)
        return {}
    return {(f.tenant, f.table, f.date): f for f in found}


def _record(settings: Settings, result: AuditResult) -> None:
    """Merge into the findings file: the cells checked now take this audit's answer, the others stay."""
    path = findings_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent / ".findings.lock"):
        kept = {cell: f for cell, f in read_findings(settings).items() if cell not in set(result.checked)}
        kept.update({(f.tenant, f.table, f.date): f for f in result.findings})
        ordered = sorted(kept.values(), key=lambda f: (f.tenant, f.table, f.date))
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"findings": [f.record() for f in ordered]}, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
