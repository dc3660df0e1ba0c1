"""A real luigid for unit-level tests of what talks to it (status grid, ``mozart enable``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def luigid(folder: Path) -> Iterator[int]:
    """A real luigid on a free loopback port (state and logs under ``folder``), stopped on exit."""
    port = free_port()
    argv = [
        str(REPO / ".venv" / "bin" / "luigid"),
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--state-path",
        str(folder / "luigid.pickle"),
        "--logdir",
        str(folder),
    ]
    with (folder / "luigid.out").open("w") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert proc.poll() is None and time.monotonic() < deadline, (folder / "luigid.out").read_text()
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
