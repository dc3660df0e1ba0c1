"""Child processes that die with the process that started them: Linux's parent-death signal.

A worker killed with SIGKILL runs no cleanup (no ``finally``, no ``atexit``), so a child it started kept
running: dbt, in its own session, kept the DuckDB file locked and kept writing ``target/``. :func:`popen`
starts a child with ``prctl(PR_SET_PDEATHSIG, sig)`` set between fork and exec, so the kernel itself sends
``sig`` (SIGKILL by default) to the child when its parent goes away, whatever the cause. The setting
survives ``exec`` (of anything but a set-user-ID program) and ``setsid``, so ``start_new_session=True``
does not defeat it.

Two edges of the kernel's contract:

* The "parent" is the *thread* that forked the child: the signal also comes when that thread exits while
  the process lives on. So start a child from the thread that waits for it (``run_dbt`` starts dbt and
  reads its output until it exits, in one thread), never from a short-lived helper thread.
* A parent that died between fork and ``prctl`` sends no signal. So the child then compares
  ``os.getppid()`` with the parent's pid and, when it changed (re-parented), exits before ``exec``.

Linux only: elsewhere, or where libc has no ``prctl``, :func:`popen` is plain ``subprocess.Popen``.
The hook runs as ``preexec_fn``, whose hazard in a threaded process is a lock held by another thread at
fork time; the hook takes none: it calls the ``prctl`` symbol resolved before the fork, ``getppid`` and
``_exit``, and imports nothing.
"""

from __future__ import annotations

__all__ = ["PARENT_DEATH_SIGNAL", "die_with_parent", "parent_death_hook", "popen"]

import ctypes
import functools
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

PARENT_DEATH_SIGNAL: int = getattr(signal, "SIGKILL", 9)  # sure and at once (Windows has no SIGKILL name)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_ORPHANED_EXIT = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved once (before any fork); None off Linux or when it is missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def parent_death_hook(sig: int = PARENT_DEATH_SIGNAL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when the calling thread's process (or the
    calling thread) dies; None where the platform has no parent-death signal.

    Build it right before the ``Popen`` (it records the current pid as the parent to check against).
    """
    prctl = _prctl()
    if prctl is None:
        return None
    return functools.partial(_die_with, prctl, os.getpid(), int(sig))


def _die_with(prctl: Callable[..., int], parent: int, sig: int) -> None:
    """In the child, between fork and exec: ask for ``sig`` on the parent's death, then close the race."""
    if prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"prctl(PR_SET_PDEATHSIG, {sig}): {os.strerror(number)}")
    if os.getppid() != parent:  # the parent died before prctl ran: no signal will ever come
        os._exit(_ORPHANED_EXIT)


def popen(args: Sequence[str], *, death_signal: int = PARENT_DEATH_SIGNAL, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(args, **kwargs)`` whose child gets ``death_signal`` when this process dies.

    Call it from the thread that waits for the child (see the module docstring). ``preexec_fn`` is this
    module's; passing another one is a ``TypeError``.
    """
    if "preexec_fn" in kwargs:
        raise TypeError("children.popen sets preexec_fn itself")
    return subprocess.Popen(args, preexec_fn=parent_death_hook(death_signal), **kwargs)  # noqa: PLW1509


def die_with_parent(sig: int = PARENT_DEATH_SIGNAL) -> bool:
    """In a process forked by ``multiprocessing`` (Luigi's task process with ``--workers`` > 1): have the
    kernel send ``sig`` when the parent worker dies, so a killed run leaves no straggler finishing its
    task later. Returns False (nothing done) in a main process or off Linux."""
    parent = multiprocessing.parent_process()
    prctl = _prctl()
    if parent is None or parent.pid is None or prctl is None:
        return False
    _die_with(prctl, parent.pid, int(sig))
    return True
