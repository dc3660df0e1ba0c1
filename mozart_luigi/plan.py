"""``mozart plan``: walk the graph of a root task and say which tasks are complete; nothing runs.

Like Luigi's scheduler, the walk does not descend below a complete task (its requirements are not needed).
"""

from __future__ import annotations

__all__ = ["plan_lines"]

import luigi
from luigi.task import flatten

from mozart_luigi.errors import MozartError

DONE, TODO, ERROR = "done", "to run", "error"


def plan_lines(root: luigi.Task) -> tuple[list[tuple[int, str, str]], dict[str, int]]:
    """``[(depth, task repr, state)]`` depth-first, each task once, and ``{state: count}``."""
    lines: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    memo: dict[str, str] = {}
    stack: list[tuple[int, luigi.Task]] = [(0, root)]
    while stack:
        depth, task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        state = _state(task, memo)
        lines.append((depth, repr(task), state))
        if state == TODO:
            stack += [(depth + 1, child) for child in reversed(_children(task))]
    counts = {s: sum(1 for _, _, st in lines if st.startswith(s)) for s in (DONE, TODO, ERROR)}
    return lines, counts


def _children(task: luigi.Task) -> list[luigi.Task]:
    """A task's requirements, including those it yields at run time (``TenantPipeline`` deferred)."""
    planned = getattr(task, "planned_requires", None)
    return list(flatten(planned() if callable(planned) else task.requires()))


def _state(task: luigi.Task, memo: dict[str, str]) -> str:
    if task.task_id not in memo:
        memo[task.task_id] = _check(task, memo)
    return memo[task.task_id]


def _check(task: luigi.Task, memo: dict[str, str]) -> str:
    try:
        if isinstance(task, luigi.WrapperTask):
            return TODO if any(_state(t, memo) != DONE for t in _children(task)) else DONE
        return DONE if task.complete() else TODO
    except MozartError as exc:
        return f"{ERROR}: {exc}"
