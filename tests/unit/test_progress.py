"""Progress reports to luigid: rate-limited, never a repeat of what was last sent, never the 0 % luigid starts
with; a short extract and load cost luigid three requests each (they were six)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import luigi
import pytest
from local_pipeline import build

from mozart_luigi.config import get_config
from mozart_luigi.demo import DEMO_DATE, generate_source
from mozart_luigi.tasks.base import Progress
from mozart_luigi.tasks.load import LoadIceberg

pytestmark = pytest.mark.unit


class _Task:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.set_status_message = lambda m: self.sent.append(("message", m))
        self.set_progress_percentage = lambda p: self.sent.append(("percentage", p))


def test_progress_sends_only_changes_and_respects_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("mozart_luigi.tasks.base.time.monotonic", lambda: clock[0])
    task = _Task()
    progress = Progress(task, 200)  # type: ignore[arg-type]
    progress.update(0, "t: 0/200 rows")
    assert task.sent == [("message", "t: 0/200 rows")]  # 0 %: luigid's own starting value, not sent
    clock[0] += 1
    progress.update(50, "t: 50/200 rows")  # within 2 s: nothing
    assert len(task.sent) == 1
    clock[0] += 2
    progress.update(50, "t: 50/200 rows")
    assert task.sent[1:] == [("message", "t: 50/200 rows"), ("percentage", 25)]
    clock[0] += 5
    progress.update(50, "t: 50/200 rows")  # the same again: nothing
    assert len(task.sent) == 3
    progress.update(200, "t: 50/200 rows", force=True)  # forced, same message: only the percentage
    assert task.sent[3:] == [("percentage", 100)]
    progress.update(200, "t: done", force=True)
    assert task.sent[4:] == [("message", "t: done")]
    empty = _Task()
    Progress(empty, 0).update(0, "t: 0 rows", force=True)  # type: ignore[arg-type]
    assert empty.sent == [("message", "t: 0 rows"), ("percentage", 100)]
    unknown = _Task()
    Progress(unknown, None).update(3, "t: 3 rows", force=True)  # type: ignore[arg-type]
    assert unknown.sent == [("message", "t: 3 rows")]


def test_a_short_extract_and_load_make_three_progress_requests_each(
    local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_source(Path(get_config().tenant("demo_west").source.path), "demo_west")
    calls: Counter[tuple[str, str]] = Counter()
    scheduler = luigi.scheduler.Scheduler
    for method, kind in (("set_task_status_message", "message"), ("set_task_progress_percentage", "percentage")):
        original = getattr(scheduler, method)

        def counting(self: Any, task_id: str, value: Any, _original: Any = original, _kind: str = kind) -> Any:
            calls[(task_id.split("_", 1)[0], _kind)] += 1
            return _original(self, task_id, value)

        monkeypatch.setattr(scheduler, method, counting)
    result = build(LoadIceberg(tenant="demo_west", table="orders", date=DEMO_DATE))
    assert result.status == luigi.execution_summary.LuigiStatusCode.SUCCESS, result.summary_text
    assert calls == {
        ("ExtractTable", "message"): 2,  # "0/N rows", then the closing "N rows, B bytes in S s"
        ("ExtractTable", "percentage"): 1,  # 100
        ("LoadIceberg", "message"): 2,  # "reading the manifest", then "N row(s) loaded"
        ("LoadIceberg", "percentage"): 1,
    }, calls
