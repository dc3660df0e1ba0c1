"""``${VAR}`` / ``${VAR:default}`` interpolation over a parsed YAML tree, collecting every problem."""

from __future__ import annotations

__all__ = ["interpolate"]

import re
from collections.abc import Mapping
from typing import Any

from mozart_luigi.errors import ConfigProblem

# $$ escapes a literal dollar; ${NAME} requires NAME; ${NAME:default} falls back (default may be empty).
_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def interpolate(
    node: Any, env: Mapping[str, str], *, file: str, path: str, problems: list[ConfigProblem]
) -> Any:
    """Return ``node`` with every string interpolated; unset variables without default become problems."""
    if isinstance(node, str):
        return _interpolate_str(node, env, file=file, path=path, problems=problems)
    if isinstance(node, list):
        return [
            interpolate(v, env, file=file, path=f"{path}[{i}]", problems=problems) for i, v in enumerate(node)
        ]
    if isinstance(node, dict):
        return {
            k: interpolate(v, env, file=file, path=f"{path}.{k}" if path else str(k), problems=problems)
            for k, v in node.items()
        }
    return node


def _interpolate_str(
    text: str, env: Mapping[str, str], *, file: str, path: str, problems: list[ConfigProblem]
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(file, path, f"env var {name} is not set (set it in the environment or in .env)")
        )
        return ""

    return _PATTERN.sub(replace, text)
