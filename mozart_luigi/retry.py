"""Bounded retry with exponential backoff for transient errors only."""

from __future__ import annotations

__all__ = ["retrying"]

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from mozart_luigi.errors import MozartError

log = logging.getLogger(__name__)
T = TypeVar("T")


def retrying(
    operation: Callable[[], T],
    *,
    what: str,
    attempts: int = 4,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``; retry it while it raises a ``MozartError`` with ``retryable`` set.

    Terminal errors propagate at once. After ``attempts`` tries the last transient error propagates.
    """
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except MozartError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311
            log.warning("%s failed (attempt %d/%d), retrying in %.1fs: %s", what, attempt, attempts, delay, exc)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
