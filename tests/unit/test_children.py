"""children.popen: the child carries the parent-death signal (read back with PR_GET_PDEATHSIG in the child
itself), an orphan exits before exec, dbt's Popen goes through it in a new session, no-op off Linux."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mozart_luigi import children
from mozart_luigi.dbt_runner import _Invocation, _stream

pytestmark = pytest.mark.unit
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")

# Prints the process's parent-death signal (PR_GET_PDEATHSIG = 2) and whether it leads its own session.
REPORT = """\
import ctypes, os
sig = ctypes.c_int(-1)
assert ctypes.CDLL(None).prctl(2, ctypes.byref(sig)) == 0
print(f"pdeathsig={sig.value} session_leader={os.getsid(0) == os.getpid()}", flush=True)
"""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False)


@linux
def test_popen_gives_the_child_the_parent_death_signal() -> None:
    with children.popen([sys.executable, "-c", REPORT], stdout=subprocess.PIPE, text=True) as proc:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.strip() == f"pdeathsig={int(signal.SIGKILL)} session_leader=False"


@linux
def test_popen_takes_another_signal_and_a_new_session_keeps_it() -> None:
    with children.popen(
        [sys.executable, "-c", REPORT],
        death_signal=signal.SIGTERM,
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        out, _ = proc.communicate(timeout=60)
    assert out.strip() == f"pdeathsig={int(signal.SIGTERM)} session_leader=True"


@linux
def test_a_child_whose_parent_already_died_exits_before_going_on() -> None:
    # The hook as the child runs it, told to expect a parent it does not have (its parent died and it was
    # re-parented): it must exit at once, and never reach the print.
    code = (
        "import os; from mozart_luigi.children import _die_with, _prctl\n"
        "_die_with(_prctl(), os.getppid() + 1, 9)\nprint('went on')"
    )
    orphan = _run("-c", code)
    assert (orphan.returncode, orphan.stdout) == (children._ORPHANED_EXIT, "")

    code = (
        "import os; from mozart_luigi.children import _die_with, _prctl\n"
        "_die_with(_prctl(), os.getppid(), 9)\nprint('went on')"
    )
    assert _run("-c", code).stdout.strip() == "went on"


@linux
def test_dbt_is_started_with_the_parent_death_signal_in_a_new_session(tmp_path: Path) -> None:
    call = _Invocation(
        tenant="acme",
        run_date=dt.date(2026, 11, 28),
        target="local",
        command="build",
        argv=[sys.executable, "-c", REPORT],
        env={},
        work=tmp_path,
    )
    return_code, tail, timed_out = _stream(call, None, None)
    assert (return_code, timed_out) == (0, False)
    assert tail == [f"pdeathsig={int(signal.SIGKILL)} session_leader=True"]


def test_popen_refuses_another_preexec_fn() -> None:
    with pytest.raises(TypeError, match="preexec_fn"):
        children.popen(["true"], preexec_fn=lambda: None)


def test_off_linux_there_is_no_hook_and_popen_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_popen(args: list[str], **kwargs: object) -> str:
        seen.update(kwargs, args=args)
        return "proc"

    monkeypatch.setattr(children.sys, "platform", "darwin")
    monkeypatch.setattr(children.subprocess, "Popen", fake_popen)
    children._prctl.cache_clear()
    try:
        assert children.parent_death_hook() is None
        assert children.popen(["dbt", "build"], text=True) == "proc"
    finally:
        children._prctl.cache_clear()
    assert seen == {"args": ["dbt", "build"], "preexec_fn": None, "text": True}
