"""A string that never renders: not in ``str``, ``repr``, f-strings, logs, Luigi parameters or exceptions."""

from __future__ import annotations

__all__ = ["Secret", "redact"]

from collections.abc import Iterable
from typing import Any


class Secret:
    """Holds a secret value; only :meth:`reveal` gives it back."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[Any, ...]:  # pickling would write the secret into Luigi's state file
        raise TypeError("Secret values are not picklable")


def redact(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """Replace every occurrence of each secret in ``text`` (for driver messages we re-raise)."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 3:
            text = text.replace(value, "***")
    return text
