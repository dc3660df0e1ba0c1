"""The completeness matrix as a console grid and as a self-contained HTML page.

Both draw one row per tenant x table (``(dbt build)`` last in each tenant) and one column per date. The page
has no external assets and no script (its Content-Security-Policy forbids both); every string in it goes
through :func:`html.escape`, since tenant and table names come from configuration and errors from sources.
"""

from __future__ import annotations

__all__ = ["SYMBOLS", "to_html", "to_text", "write_html"]

import datetime as dt
import html
from collections.abc import Iterator, Sequence
from pathlib import Path

from mozart_luigi.report import DBT_TABLE, DONE, FAILED, MISSING
from mozart_luigi.status_grid import DISABLED, RUNNING, STALE, STATES, Cell, Matrix

SYMBOLS = {DONE: "#", MISSING: ".", FAILED: "X", DISABLED: "D", RUNNING: "R", STALE: "S"}
_BLOCK = 31  # dates per block of the console grid
_ATTENTION = (FAILED, STALE, DISABLED, RUNNING)


# ---------------------------------------------------------------------------------------------- console


def to_text(matrix: Matrix, *, limit: int = 20) -> str:
    """The grid (blocks of 31 dates), a legend, the failed / disabled / running cells with their error and
    rerun command (the first ``limit``), and the backfill command for what is missing."""
    out = [_headline(matrix)]
    if not matrix.cells:
        return "\n".join([*out, "every cell is done" if matrix.filtered else "nothing configured"])
    rows, width = matrix.rows(), max(len(f"{t}.{x}") for t, x in matrix.rows())
    for block in _chunks(matrix.dates(), _BLOCK):
        out += [_month_line(block, width), " " * width + "".join(f" {d.day:>2}" for d in block)]
        out += [
            f"{f'{t}.{x}':<{width}}" + "".join(f"  {_symbol(matrix.cell(t, x, d))}" for d in block) for t, x in rows
        ]
    hidden = "  (blank) done, not shown" if matrix.filtered else ""
    out.append("legend: " + "  ".join(f"{SYMBOLS[s]} {s}" for s in STATES) + hidden)
    return "\n".join(out + _attention_lines(matrix, limit) + _missing_lines(matrix))


def _headline(matrix: Matrix) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in matrix.counts().items() if n or state in (DONE, MISSING))
    return f"Completeness {matrix.start.isoformat()} .. {matrix.end.isoformat()} (profile {matrix.profile}): {counts}"


def _month_line(block: Sequence[dt.date], width: int) -> str:
    """``YYYY-MM`` above the first day of each month in the block, where it fits."""
    line = [" "] * (width + 3 * len(block) + 8)
    for i, day in enumerate(block):
        if i == 0 or day.day == 1:
            label, at = f"{day:%Y-%m}", width + 3 * i + 1
            if all(c == " " for c in line[max(at - 1, 0) : at + len(label)]):
                line[at : at + len(label)] = label
    return "".join(line).rstrip()


def _symbol(cell: Cell | None) -> str:
    return " " if cell is None else SYMBOLS[cell.state]


def _attention_lines(matrix: Matrix, limit: int) -> list[str]:
    cells = [c for c in matrix.cells if c.state in _ATTENTION]
    if not cells:
        return []
    shown = f"first {limit} of {len(cells)}" if len(cells) > limit else str(len(cells))
    out = [f"needs attention ({shown}):"]
    for c in cells[:limit]:
        error = f": {_printable(c.error)}" if c.error else ""
        out += [
            f"  {SYMBOLS[c.state]} {c.tenant}.{c.table} {c.date.isoformat()} {c.state}{error}",
            f"      rerun: {c.rerun}",
        ]
    return out


def _missing_lines(matrix: Matrix) -> list[str]:
    command = _backfill_command(matrix)
    return [f"missing: {command}"] if command else []


def _backfill_command(matrix: Matrix) -> str | None:
    """``mozart backfill`` over the dates with missing cells, for the tenants that have them."""
    missing = [c for c in matrix.cells if c.state == MISSING]
    if not missing:
        return None
    dates = sorted({c.date for c in missing})
    tenants = "".join(f" --tenant {t}" for t in dict.fromkeys(c.tenant for c in missing))
    return f"mozart backfill --from {dates[0].isoformat()} --to {dates[-1].isoformat()}{tenants} --only-missing"


def _printable(text: str) -> str:
    """One line, no control characters (an error is untrusted text; it must not drive the terminal)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _chunks(items: Sequence[dt.date], size: int) -> Iterator[Sequence[dt.date]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ------------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.summary,.legend{margin:4px 0 12px;color:#57606a}
.legend span.cell{display:inline-block;width:22px;margin:0 4px 0 12px}
table.grid{border-collapse:separate;border-spacing:2px}
.grid th{font-weight:normal;color:#57606a;font-size:12px;white-space:nowrap}
.grid th.name{text-align:left;padding-right:10px;color:#1f2328;font-size:13px}
.grid th.month{text-align:left;border-bottom:1px solid #d0d7de}
.grid tr.dbt th.name{font-style:italic}
.cell{width:24px;height:22px;text-align:center;font:12px/22px ui-monospace,monospace;border-radius:3px}
.cell.done{background:#2da44e;color:#fff}.cell.missing{background:#d8dee4;color:#57606a}
.cell.failed{background:#cf222e;color:#fff;font-weight:bold}.cell.disabled{background:#8250df;color:#fff}
.cell.running{background:#0969da;color:#fff}.cell.stale{background:#bf8700;color:#fff}
.cell.hidden{background:transparent}
td.cell{cursor:default}td.cell:hover{outline:2px solid #1f2328}
ul.attention{padding-left:20px}ul.attention li{margin-bottom:6px}
code{background:#f6f8fa;padding:1px 4px;border-radius:3px;font-size:12px}
"""


def to_html(matrix: Matrix) -> str:
    """A static page: the grid coloured by state; each cell's title holds its state, rows or error, and
    (when not done) the rerun command; the failed, disabled and running cells are also listed in the text."""
    title = f"mozart status {matrix.start.isoformat()} .. {matrix.end.isoformat()}"
    counts = " · ".join(f"{n} {state}" for state, n in matrix.counts().items() if n)
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="summary">profile {_e(matrix.profile)} · {_e(counts or "no cells")} · generated '
        f"{_e(f'{matrix.generated_at:%Y-%m-%d %H:%M:%S} UTC')}</p>",
        _legend(matrix),
        *_grid(matrix),
        *_attention_html(matrix),
        "</body>\n</html>\n",
    ]
    return "\n".join(parts)


def write_html(matrix: Matrix, path: Path) -> Path:
    """Write :func:`to_html` to ``path`` atomically (temp file + rename); returns the resolved path."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(to_html(matrix), encoding="utf-8")
    tmp.replace(path)
    return path


def _legend(matrix: Matrix) -> str:
    items = "".join(f'<span class="cell {s}">{_e(SYMBOLS[s])}</span>{_e(s)}' for s in STATES)
    hidden = " · blank: done, not shown (--missing)" if matrix.filtered else ""
    return f'<p class="legend">{items}{_e(hidden)}</p>'


def _grid(matrix: Matrix) -> list[str]:
    dates = matrix.dates()
    months: dict[str, int] = {}
    for d in dates:
        months[f"{d:%Y-%m}"] = months.get(f"{d:%Y-%m}", 0) + 1
    head = "".join(f'<th class="month" colspan="{n}">{_e(m)}</th>' for m, n in months.items())
    days = "".join(f'<th class="day" title="{_e(d.isoformat())}">{d.day:02d}</th>' for d in dates)
    out = [
        '<table class="grid" id="grid">',
        f"<thead>\n<tr><th></th><th></th>{head}</tr>",
        f'<tr><th class="name">tenant</th><th class="name">table</th>{days}</tr>\n</thead>',
        "<tbody>",
    ]
    for tenant, table in matrix.rows():
        kind = ' class="dbt"' if table == DBT_TABLE else ""
        cells = "".join(_td(matrix.cell(tenant, table, d)) for d in dates)
        out.append(
            f'<tr{kind} data-tenant="{_e(tenant)}" data-table="{_e(table)}"><th class="name">{_e(tenant)}'
            f'</th><th class="name">{_e(table)}</th>{cells}</tr>'
        )
    return [*out, "</tbody>\n</table>"]


def _td(cell: Cell | None) -> str:
    if cell is None:
        return '<td class="cell hidden"></td>'
    return (
        f'<td class="cell {_e(cell.state)}" data-date="{_e(cell.date.isoformat())}" data-state="{_e(cell.state)}"'
        f' title="{_e(_title(cell))}">{_e(SYMBOLS[cell.state])}</td>'
    )


def _title(cell: Cell) -> str:
    """The hover text: what the cell is, its rows or error, and how to run it again."""
    lines = [f"{cell.tenant}.{cell.table} {cell.date.isoformat()}: {cell.state}"]
    if cell.state == DONE:
        rows = "" if cell.rows is None else f"{cell.rows:,} {'models' if cell.table == DBT_TABLE else 'rows'}, "
        lines.append(f"{rows}finished {_when(cell.finished_at)}")
    if cell.error:
        lines.append(cell.error)
    if cell.extracted is not None:
        lines.append("extracted, not loaded" if cell.extracted else "not extracted")
    if cell.rerun:
        lines.append(f"rerun: {cell.rerun}")
    return "\n".join(lines)


def _attention_html(matrix: Matrix) -> list[str]:
    cells = [c for c in matrix.cells if c.state in _ATTENTION]
    command = _backfill_command(matrix)
    if not cells and not command:
        return []
    out = ["<h2>Needs attention</h2>", '<ul class="attention">']
    for c in cells:
        error = f": {_e(c.error)}" if c.error else ""
        out.append(
            f"<li><b>{_e(c.tenant)}.{_e(c.table)}</b> {_e(c.date.isoformat())} {_e(c.state)}{error}<br>"
            f"<code>{_e(c.rerun or '')}</code></li>"
        )
    if command:
        out.append(f"<li>missing cells: <code>{_e(command)}</code></li>")
    return [*out, "</ul>"]


def _when(value: dt.datetime | None) -> str:
    return "at an unknown time" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
