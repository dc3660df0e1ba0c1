"""SQL statements, kept in one file per dialect (``duckdb.sql``, ``trino.sql``) as named templates.

A template is introduced by a ``-- name: <statement>`` line. Values are never formatted into a template:
they are bound (``?``). Only identifiers are, already quoted by
:func:`mozart_luigi.warehouse.common.quote_ident`, through ``{placeholders}``.
"""

from __future__ import annotations

__all__ = ["statement", "statements"]

import functools
import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def statements(dialect: str) -> dict[str, str]:
    """Every named template of a dialect, read once."""
    text = resources.files(__package__).joinpath(f"{dialect}.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    return {name: _strip(body) for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def statement(dialect: str, name: str, **identifiers: str) -> str:
    """The template ``name`` of ``dialect`` with its ``{placeholders}`` filled by quoted identifiers."""
    return statements(dialect)[name].format(**identifiers)


def _strip(body: str) -> str:
    lines = [line for line in body.strip().splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip()
