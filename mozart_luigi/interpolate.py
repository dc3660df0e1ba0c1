"""Environment interpolation over a parsed YAML tree, collecting every problem.

| syntax | VAR unset | VAR set but empty | VAR set |
|---|---|---|---|
| ``${VAR}`` | a problem | ``""`` | its value |
| ``${VAR:-default}`` (shell) | ``default`` | ``default`` | its value |
| ``${VAR-default}`` (shell) | ``default`` | ``""`` | its value |
| ``${VAR:default}`` | ``default`` | ``""`` | its value |

``$$`` is a literal ``$``. A default may be empty and may contain ``-`` and ``:`` but not ``}``; the operator is
the first one after the name, so ``${VAR:-x}`` is the shell's "unset or empty" form (a default of ``-x`` cannot
be written with the ``:`` form). Only strings are interpolated, never keys.

A string with a reference comes back as :class:`Interpolated`, which remembers the text as written: problem
messages quote that text through :func:`shown` (``got '${DB_PASSWORD}'``), never the value, which may be a secret.
"""

from __future__ import annotations

__all__ = ["Interpolated", "interpolate", "shown"]

import re
from collections.abc import Mapping
from typing import Any

from mozart_luigi.errors import ConfigProblem

# $$ escapes a literal dollar; ${NAME} requires NAME; ${NAME:-d} / ${NAME-d} / ${NAME:d} fall back (see above).
_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:)([^}]*))?\}")


class Interpolated(str):
    """A string that ``${VAR}`` references produced; ``raw`` is its text as written in the file.

    ``repr`` shows ``raw`` too. Config objects store plain ``str(value)``: the marker only lives while the files
    are validated.
    """

    raw: str

    def __new__(cls, value: str, raw: str) -> Interpolated:
        out = super().__new__(cls, value)
        out.raw = raw
        return out

    def __repr__(self) -> str:
        return repr(self.raw)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Interpolated, (str(self), self.raw))


def shown(value: object) -> str:
    """How a problem message quotes a config value: an interpolated one by its ``${VAR}`` text, never its value."""
    if isinstance(value, Interpolated):
        return f"{value.raw!r} (value hidden)"
    return repr(value)


def interpolate(node: Any, env: Mapping[str, str], *, file: str, path: str, problems: list[ConfigProblem]) -> Any:
    """Return ``node`` with every string interpolated; unset variables without default become problems."""
    if isinstance(node, str):
        return _interpolate_str(node, env, file=file, path=path, problems=problems)
    if isinstance(node, list):
        return [interpolate(v, env, file=file, path=f"{path}[{i}]", problems=problems) for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {
            k: interpolate(v, env, file=file, path=f"{path}.{k}" if path else str(k), problems=problems)
            for k, v in node.items()
        }
    return node


def _interpolate_str(text: str, env: Mapping[str, str], *, file: str, path: str, problems: list[ConfigProblem]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.groups()
        value = _lookup(env, name, operator, default)
        if value is None:
            problems.append(
                ConfigProblem(file, path, f"env var {name} is not set (set it in the environment or in .env)")
            )
            return ""
        return value

    out = _PATTERN.sub(replace, text)
    referenced = any(match.group(1) for match in _PATTERN.finditer(text))
    return Interpolated(out, text) if referenced else out


def _lookup(env: Mapping[str, str], name: str, operator: str | None, default: str | None) -> str | None:
    """The value of one reference; None when ``${NAME}`` has no value (a problem for the caller)."""
    value = env.get(name)
    if value is None:
        return default  # None for ${NAME}: no operator, no default
    if value == "" and operator == ":-":
        return default
    return value
