"""luigid's public HTTP API (``/api/{rpc method}?data={json}``, what its visualizer calls), asked once per call
with a short timeout: never Luigi's RPC retries, so a command fails in seconds, not minutes, when luigid is
down.

Used by ``mozart run`` (probe before building; the disabled tasks of the closing block), ``mozart enable``
(``re_enable_task``, the RPC behind the visualizer's "re-enable" button) and ``mozart status --luigid``.
"""

from __future__ import annotations

__all__ = ["DisabledTask", "LuigidClient", "LuigidUnreachable"]

import datetime as dt
import json
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_MOZART_FAMILIES = ("ExtractTable", "LoadIceberg", "DbtRun")


class LuigidUnreachable(OSError):
    """luigid did not answer (connection refused, timeout) or something else answered."""


@dataclass(frozen=True)
class DisabledTask:
    """A mozart task luigid holds as DISABLED (its retry policy: too many failures)."""

    task_id: str
    family: str
    tenant: str
    date: str
    table: str | None

    @property
    def label(self) -> str:
        what = {"ExtractTable": "extract", "LoadIceberg": "load"}.get(self.family, "")
        return f"{self.tenant}.{self.table} {what}" if self.table else f"{self.tenant} (dbt build)"


class LuigidClient:
    """One luigid at ``host:port``."""

    def __init__(self, host: str, port: int, *, timeout: float = 3.0) -> None:
        self.host, self.port, self.timeout = host, int(port), timeout

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, method: str, data: Mapping[str, Any]) -> Any:
        """The ``response`` of one RPC. Raises :class:`LuigidUnreachable`."""
        url = f"{self.url}/api/{method}?{urllib.parse.urlencode({'data': json.dumps(dict(data))})}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as answer:  # noqa: S310 - http://host:port only
                body = json.loads(answer.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise LuigidUnreachable(f"luigid at {self.url} did not answer: {exc}") from exc
        if not isinstance(body, dict) or "response" not in body:
            raise LuigidUnreachable(f"{self.url} did not answer like luigid")
        return body["response"]

    def task_list(self, status: str) -> Mapping[str, Any]:
        tasks = self.call("task_list", {"status": status, "upstream_status": "", "limit": False})
        if not isinstance(tasks, dict):
            raise LuigidUnreachable(f"{self.url}/api/task_list did not answer like luigid")
        return tasks

    def probe(self) -> None:
        """One cheap call (``resource_list``); raises :class:`LuigidUnreachable` when luigid does not answer."""
        self.call("resource_list", {})

    def disabled(self, *, tenants: Iterable[str] | None = None, date: dt.date | None = None) -> list[DisabledTask]:
        """The mozart tasks luigid holds as DISABLED, of these tenants (default all) and date (default all)."""
        wanted = set(tenants or ())
        out = []
        for task_id, task in sorted(self.task_list("DISABLED").items()):
            found = _disabled(task_id, task)
            if found and (not wanted or found.tenant in wanted) and (date is None or found.date == date.isoformat()):
                out.append(found)
        return out

    def re_enable(self, task_id: str) -> bool:
        """``re_enable_task``: a DISABLED task becomes FAILED with its failures forgotten, so the next run runs it.
        True when luigid re-enabled it (False: it was not disabled by the scheduler, or is unknown)."""
        return bool(self.call("re_enable_task", {"task_id": task_id}))


def _disabled(task_id: str, task: Any) -> DisabledTask | None:
    if not isinstance(task, Mapping) or task.get("name") not in _MOZART_FAMILIES:
        return None
    params = task.get("params")
    if not isinstance(params, Mapping) or not isinstance(params.get("tenant"), str):
        return None
    table = params.get("table")
    return DisabledTask(
        task_id, str(task["name"]), params["tenant"], str(params.get("date")), table if isinstance(table, str) else None
    )
