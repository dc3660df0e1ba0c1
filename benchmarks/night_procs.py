"""The processes of ``benchmarks/night.py``: luigid on a free loopback port, and ``luigi`` worker processes
whose output is watched for Luigi's "Done scheduling tasks" and the first task running; CPU from ``/proc``."""

from __future__ import annotations

__all__ = ["BIN", "REPO", "Luigid", "Worker", "children_cpu", "process_cpu", "worker_argv"]

import contextlib
import datetime as dt
import json
import os
import re
import resource
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
DONE_SCHEDULING = "Done scheduling tasks"
RUNNING = " running   "
MAINTENANCE = "(maintenance "  # LoadIceberg's weekly snapshot expiry, with its seconds
WRAPPERS = ("AllTenants", "TenantPipeline", "NightLoads")  # tasks that do no work of their own
ACCESS = re.compile(r"\d{3} (?:GET|POST) /api/(\w+) \([^)]*\) ([\d.]+)ms")


class Luigid:
    """luigid on a free loopback port, its state file and logs under ``folder``."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        cfg = folder / "luigid.cfg"  # keep-alive workers retry a failed task after 5 s, not 900 s
        cfg.write_text("[scheduler]\nretry_delay = 5\n")
        argv = [str(BIN / "luigid"), "--address", "127.0.0.1", "--port", str(self.port)]
        argv += ["--state-path", str(folder / "state.pickle"), "--logdir", str(folder)]
        self.log = (folder / "luigid.out").open("w")
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env={**env, "LUIGI_CONFIG_PATH": str(cfg)}, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api("task_list", {"status": "RUNNING"})
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"luigid did not start: {(folder / 'luigid.out').read_text()[-2000:]}") from None
                time.sleep(0.2)

    def api(self, method: str, data: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode({"data": json.dumps(data or {})})
        url = f"http://127.0.0.1:{self.port}/api/{method}?{query}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback, our own luigid
            return json.loads(resp.read().decode())["response"]

    def cpu(self) -> float:
        return process_cpu(self.proc.pid)

    def log_offset(self) -> int:
        log = self.folder / "luigi-server.log"
        return log.stat().st_size if log.exists() else 0

    def api_calls(self, since: int) -> dict[str, dict[str, float]]:
        """Per API method since ``since`` (a :meth:`log_offset`): calls and luigid's summed handling time
        (tornado's access log: wall time in luigid, so waiting for the CPU on a loaded box is included)."""
        log = self.folder / "luigi-server.log"
        if not log.exists():
            return {}
        with log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        calls: dict[str, dict[str, float]] = {}
        for method, ms in ACCESS.findall(text):
            entry = calls.setdefault(method, {"calls": 0, "seconds": 0.0})
            entry["calls"] += 1
            entry["seconds"] += float(ms) / 1000
        return {m: {"calls": int(e["calls"]), "seconds": round(e["seconds"], 2)} for m, e in sorted(calls.items())}

    def memory_mb(self) -> dict[str, float]:
        status = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        values = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status if line.startswith("Vm")}
        return {"rss_mb": round(values.get("VmRSS", 0), 1), "peak_rss_mb": round(values.get("VmHWM", 0), 1)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


class Worker:
    """One ``luigi`` process (its own session, so stopping it stops its children); its output goes to a log
    file and the first times it printed "Done scheduling tasks" and a task running are kept."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.started = time.monotonic()
        self.times: dict[str, float] = {}
        self.lines: list[str] = []
        self.log_path = log
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.proc.stdout:
                now = time.monotonic() - self.started
                if "Informed scheduler that task" in line:
                    self.times.setdefault("first_task_added", now)
                if DONE_SCHEDULING in line:
                    self.times.setdefault("scheduled", now)
                if RUNNING in line:
                    self.times.setdefault("first_running", now)
                    if not any(f" {wrapper}(" in line for wrapper in WRAPPERS):
                        self.times.setdefault("first_work_running", now)  # an extract, load or dbt run
                if "retrying in" in line or "commit conflict" in line or MAINTENANCE in line:
                    self.lines.append(line.strip())
                log.write(line)
        self.times["exited"] = time.monotonic() - self.started

    def wait_for(self, key: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while key not in self.times and "exited" not in self.times and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.times.get(key)

    def finish(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            code = -1
        self.reader.join(timeout=30)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def worker_argv(
    root: str, date: dt.date, port: int, worker: str, *, keep_alive: bool, expand: str | None = None
) -> list[str]:
    """``expand``: ``AllTenants --expand`` (how much of the graph luigid gets up front), when given."""
    module = "night" if root == "NightLoads" else "mozart_luigi"
    argv = [str(BIN / "luigi"), "--module", module, root, "--date", date.isoformat()]
    if expand is not None and root == "AllTenants":
        argv += ["--expand", expand]
    argv += ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(port), "--workers", "1"]
    return [*argv, "--worker-id", worker] + (["--worker-keep-alive"] if keep_alive else [])


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """User + system CPU seconds of this process's children that have exited (and their waited-for ones)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
