"""The one module that invokes dbt: command, environment, subprocess, progress, ``run_results.json``.

dbt runs in a subprocess (``dbt`` next to ``sys.executable``), never in-process: dbt keeps global state and
is not safe to run twice at once in one process, while separate processes for different tenants are (each
gets its own ``--target-path`` and ``--log-path`` under ``{data_dir}/dbt/{tenant}/``). Nothing secret is put
on the command line: ``dbt/profiles.yml`` reads connection settings through ``env_var()``, and the
environment is passed through with the values of :class:`~mozart_luigi.settings.Settings` exported.

dbt starts in a new session (its own process group), so that a timeout or an interrupted worker stops dbt
and anything dbt started with one ``killpg``, and a terminal's Ctrl-C reaches the worker, which stops dbt
itself. A new session also escapes the worker's own group, so dbt is started through
:func:`mozart_luigi.children.popen`: the kernel kills it when the worker dies, even by SIGKILL, instead of
leaving it running with the DuckDB file locked.

Failure semantics: :func:`run_dbt` returns a :class:`DbtRunResult` only when every node succeeded (``warn``
counts as success); otherwise it raises :class:`DbtFailure` (a ``TransformError``) naming the tenant and
each failed model or test with dbt's message, or, when dbt stopped before running nodes (compile error,
connection refused), the tail of its output. A DuckDB file locked by another writer is retried briefly.
"""

from __future__ import annotations

__all__ = [
    "DbtFailure",
    "DbtNodeResult",
    "DbtProgress",
    "DbtRunResult",
    "ProgressTracker",
    "build_command",
    "dbt_env",
    "dbt_executable",
    "parse_project",
    "project_dir",
    "project_selectors",
    "read_run_results",
    "run_dbt",
    "tables_var",
    "target_for_profile",
    "work_dir",
]

import datetime as dt
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mozart_luigi import children
from mozart_luigi.config import TableConfig
from mozart_luigi.errors import TransformError
from mozart_luigi.names import validate_tenant_id
from mozart_luigi.settings import Settings

log = logging.getLogger(__name__)
_SECRET_PASSWORD = "DBT_ENV_SECRET_MOZART_TRINO_PASSWORD"
_SECRET_JWT = "DBT_ENV_SECRET_MOZART_TRINO_JWT"
_TRINO_CREDENTIALS = ("MOZART_TRINO_PASSWORD", "MOZART_TRINO_JWT", _SECRET_PASSWORD, _SECRET_JWT)

TARGETS = {"local": "local", "stack": "trino"}
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
_FINISHED = re.compile(r"\b(\d+) of (\d+) (OK|PASS|WARN|ERROR|FAIL|SKIP|NO-OP)\b(.*)$")
_FOUND = re.compile(r"\bFound (\d+) models?\b")
_LOCK_CONFLICT = re.compile(r"Could not set lock on file|Conflicting lock is held", re.IGNORECASE)
_LOCK_ATTEMPTS = 4


class DbtFailure(TransformError):
    """dbt failed for a tenant. ``result`` holds the node results when dbt got as far as running nodes."""

    def __init__(self, message: str, *, tenant: str, result: DbtRunResult | None = None) -> None:
        self.result = result
        super().__init__(message, tenant=tenant)


@dataclass(frozen=True)
class DbtNodeResult:
    """One node of ``run_results.json``: a model, test, seed or snapshot."""

    unique_id: str
    status: str
    message: str | None = None
    failures: int | None = None
    execution_time: float = 0.0
    relation_name: str | None = None

    @property
    def resource_type(self) -> str:
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        """``stg_orders`` for a model; the test name (without dbt's hash suffix) for a test."""
        parts = self.unique_id.split(".")
        return parts[2] if len(parts) > 2 else self.unique_id

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def describe(self) -> str:
        detail = f": {self.message.strip()}" if self.message else ""
        return f"{self.resource_type} {self.name} ({self.status}{detail})"


@dataclass(frozen=True)
class DbtRunResult:
    """What one dbt invocation did, read from its ``run_results.json``."""

    tenant: str
    run_date: dt.date
    target: str
    command: str
    nodes: tuple[DbtNodeResult, ...]
    elapsed_seconds: float
    run_results_path: Path
    invocation_id: str | None = None
    return_code: int = 0

    @property
    def failed(self) -> list[DbtNodeResult]:
        return [n for n in self.nodes if n.failed]

    @property
    def ok(self) -> bool:
        return self.return_code == 0 and not self.failed

    @property
    def models_built(self) -> int:
        return sum(1 for n in self.nodes if n.resource_type == "model" and n.status == "success")

    def counts(self) -> dict[str, int]:
        """``{"model:success": 9, "test:pass": 44, ...}`` plus ``nodes`` and ``models_built``."""
        out: dict[str, int] = {"nodes": len(self.nodes), "models_built": self.models_built}
        for node in self.nodes:
            key = f"{node.resource_type}:{node.status}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))


@dataclass
class DbtProgress:
    """Live progress parsed from dbt's output lines."""

    nodes_done: int = 0
    nodes_total: int | None = None
    models_done: int = 0
    models_total: int | None = None
    last: str = ""
    failures: list[str] = field(default_factory=list)

    def message(self, tenant: str) -> str:
        models = f"{self.models_done}/{self.models_total if self.models_total is not None else '?'} models"
        nodes = f"{self.nodes_done}/{self.nodes_total if self.nodes_total is not None else '?'} nodes"
        failed = f", {len(self.failures)} failed" if self.failures else ""
        last = f", last: {self.last}" if self.last else ""
        return f"dbt {tenant}: {models} done ({nodes}{failed}){last}"


class ProgressTracker:
    """Feeds on dbt's text log lines (``12:00:01  3 of 53 OK created sql view model ...``)."""

    def __init__(self) -> None:
        self.state = DbtProgress()

    def feed(self, line: str) -> bool:
        """Update from one line; True when a node finished (the state changed)."""
        found = _FOUND.search(line)
        if found and self.state.models_total is None:
            self.state.models_total = int(found.group(1))
            return False
        finished = _FINISHED.search(line)
        if not finished:
            return False
        index, total, status, rest = finished.groups()
        self.state.nodes_total = int(total)
        self.state.nodes_done += 1
        self.state.last = f"{_node_name(rest) or '#' + index} {status}"
        if " model " in f" {rest} " or (status == "SKIP" and "relation" in rest):
            self.state.models_done += 1
        if status in ("ERROR", "FAIL"):
            self.state.failures.append(self.state.last)
        return True


def _node_name(rest: str) -> str:
    """``created sql view model acme_staging.stg_orders ... [OK in 0.1s]`` -> ``acme_staging.stg_orders``."""
    words = re.split(r"\s\.{2,}|\s\[", rest, maxsplit=1)[0].split()
    return words[-1] if words else ""


# ------------------------------------------------------------------------------------------- building


def project_dir() -> Path:
    """The dbt project: ``$MOZART_DBT_PROJECT_DIR``, else ``dbt/`` next to the package."""
    configured = os.environ.get("MOZART_DBT_PROJECT_DIR")
    return Path(configured).resolve() if configured else Path(__file__).resolve().parent.parent / "dbt"


def project_selectors(project: Path) -> frozenset[str]:
    """The selector names a dbt project defines in its ``selectors.yml`` (none when it has no such file)."""
    path = project / "selectors.yml"
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return frozenset()
    except (OSError, yaml.YAMLError) as exc:
        raise TransformError(f"cannot read the dbt selectors {path}: {exc}") from exc
    entries = spec.get("selectors") if isinstance(spec, dict) else None
    return frozenset(str(e["name"]) for e in entries or () if isinstance(e, dict) and "name" in e)


def target_for_profile(profile: str) -> str:
    """dbt target of a mozart profile: ``trino`` for ``stack``, ``local`` (dbt-duckdb) for ``local``."""
    try:
        return TARGETS[profile]
    except KeyError:
        raise TransformError(
            f"no dbt target for profile {profile!r} (MOZART_PROFILE); known: {', '.join(sorted(TARGETS))}"
        ) from None


def dbt_executable() -> str:
    """``dbt`` installed next to the running interpreter (the venv's), else the one on PATH."""
    sibling = Path(sys.executable).with_name("dbt")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("dbt")
    if not found:
        raise TransformError(f"dbt executable not found next to {sys.executable} nor on PATH (pip install dbt-core)")
    return found


def work_dir(settings: Settings, tenant: str) -> Path:
    """Per-tenant dbt working folder (target/ and logs/), so tenants never share dbt's files."""
    return settings.data_dir / "dbt" / tenant


def tables_var(tables: Iterable[TableConfig]) -> dict[str, dict[str, Any]]:
    """The ``tables`` dbt var (mode, primary key, cursor per table; ``deletes: keys`` when set) from the
    configuration. Keys streams (``{table}__keys``) are no staging input of their own: their table's
    ``deletes`` says staging reads them."""
    out: dict[str, dict[str, Any]] = {}
    for t in tables:
        if t.keys_of is None:
            out[t.name] = {"mode": t.mode, "primary_key": list(t.primary_key), "cursor": t.cursor}
            if t.deletes:
                out[t.name]["deletes"] = t.deletes
    return out


def build_command(
    tenant: str,
    *,
    target: str,
    project: Path,
    work: Path,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
    command: str = "build",
    executable: str | None = None,
    selector: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The dbt command line for one tenant (no secrets: connection settings come from the environment).

    The run date is not a var but ``MOZART_RUN_DATE`` in the environment (:func:`dbt_env`): a var that
    changes makes dbt re-parse the whole project, an env var read by a macro at run time only does not, so a
    tenant's builds for successive dates reuse its saved parse (``partial_parse.msgpack`` in its target
    folder) unchanged. ``selector`` names a selector of ``dbt/selectors.yml`` (``nightly``, ``full``);
    selection happens after parsing, so it does not invalidate the saved parse either.
    """
    # an edge: dbt renders the tenant into SQL schema names unquoted, so the rule is checked here too
    dbt_vars: dict[str, Any] = {"tenant": validate_tenant_id(tenant, origin="dbt", key="tenant")}
    if tables is not None:
        dbt_vars["tables"] = {name: dict(spec) for name, spec in tables.items()}
    return [
        executable or dbt_executable(),
        command,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target",
        target,
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
        "--vars",
        json.dumps(dbt_vars, sort_keys=True),
        "--no-use-colors",
        "--log-format",
        "text",
        "--printer-width",
        "100",
        "--no-send-anonymous-usage-stats",
        "--no-version-check",
        *(["--selector", selector] if selector else []),
        *extra_args,
    ]


def dbt_env(
    settings: Settings, target: str, base: Mapping[str, str] | None = None, *, run_date: dt.date | None = None
) -> dict[str, str]:
    """The subprocess environment: ``base`` (default ``os.environ``) plus what profiles.yml and the
    ``mozart_run_date`` macro read (``MOZART_RUN_DATE``; dropped when no date is given).

    A Trino password or JWT goes only as ``DBT_ENV_SECRET_*`` (dbt masks those in its logs and refuses them
    outside profiles.yml, so no model can render one into SQL); the plain ``MOZART_TRINO_PASSWORD`` /
    ``MOZART_TRINO_JWT`` are removed, and so are ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when
    ``MOZART_TRINO_VERIFY`` names a CA bundle or is false.
    """
    env = dict(os.environ if base is None else base)
    for name in ("MOZART_RUN_DATE", *_TRINO_CREDENTIALS):
        env.pop(name, None)
    if settings.trino_verify is not True:  # requests lets these replace dbt-trino's `cert` (psf/requests#3829)
        env.pop("REQUESTS_CA_BUNDLE", None)
        env.pop("CURL_CA_BUNDLE", None)
    if run_date is not None:
        env["MOZART_RUN_DATE"] = run_date.isoformat()
    env.update(
        {
            "MOZART_DBT_TARGET": target,
            "MOZART_DUCKDB_PATH": str(settings.duckdb_path),
            "MOZART_TRINO_HOST": settings.trino_host,
            "MOZART_TRINO_PORT": str(settings.trino_port),
            "MOZART_TRINO_USER": settings.trino_user,
            "MOZART_TRINO_CATALOG": settings.trino_catalog,
            **_trino_auth_env(settings),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_VERSION_CHECK": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("DBT_PROFILES_DIR", None)  # --profiles-dir wins anyway; avoid confusion in logs
    return env


def _trino_auth_env(settings: Settings) -> dict[str, str]:
    """Scheme, dbt-trino ``method`` (``ldap`` is its HTTP basic password method, whatever the server checks
    the password against), ``cert`` (True, False or a CA bundle path, read with ``as_native``) and the secret."""
    out = {
        "MOZART_TRINO_HTTP_SCHEME": settings.trino_http_scheme,
        "MOZART_DBT_TRINO_METHOD": "none",
        "MOZART_DBT_TRINO_CERT": str(settings.trino_verify),
    }
    if settings.trino_password:
        out.update({"MOZART_DBT_TRINO_METHOD": "ldap", _SECRET_PASSWORD: settings.trino_password.reveal()})
    elif settings.trino_jwt:
        out.update({"MOZART_DBT_TRINO_METHOD": "jwt", _SECRET_JWT: settings.trino_jwt.reveal()})
    return out


# -------------------------------------------------------------------------------------------- running

ProgressCallback = Callable[[DbtProgress], None]


@dataclass(frozen=True)
class _Invocation:
    tenant: str
    run_date: dt.date
    target: str
    command: str
    argv: list[str]
    env: dict[str, str]
    work: Path

    @property
    def what(self) -> str:
        return f"dbt {self.command} for {self.run_date} (target {self.target})"

    @property
    def log_file(self) -> Path:
        return self.work / "logs" / "dbt.log"


def run_dbt(
    tenant: str,
    run_date: dt.date,
    *,
    settings: Settings,
    tables: Iterable[TableConfig] | None = None,
    command: str = "build",
    target: str | None = None,
    project: Path | None = None,
    on_progress: ProgressCallback | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    selector: str | None = None,
    extra_args: Sequence[str] = (),
) -> DbtRunResult:
    """Run ``dbt {command}`` for one tenant and date; return its result, or raise :class:`DbtFailure`.

    ``target`` defaults to the profile's (``trino`` for ``stack``, ``local`` otherwise); ``tables`` (the
    tenant's configured tables) becomes the ``tables`` var; ``selector`` picks the nodes (a selector of
    ``dbt/selectors.yml``; None: every node); ``on_progress`` is called after each finished node;
    ``timeout`` (seconds) stops dbt and fails.
    """
    target = target or target_for_profile(settings.profile)
    work = work_dir(settings, tenant)
    argv = build_command(
        tenant,
        target=target,
        project=project or project_dir(),
        work=work,
        tables=tables_var(tables) if tables is not None else None,
        command=command,
        selector=selector,
        extra_args=extra_args,
    )
    call = _Invocation(tenant, run_date, target, command, argv, dbt_env(settings, target, env, run_date=run_date), work)
    for attempt in range(1, _LOCK_ATTEMPTS + 1):
        try:
            return _run_once(call, on_progress, timeout)
        except _LockConflictError as conflict:
            if attempt == _LOCK_ATTEMPTS:
                raise DbtFailure(
                    f"{call.what}: the DuckDB file {settings.duckdb_path} stayed locked by "
                    f"another process ({conflict})",
                    tenant=tenant,
                ) from None
            log.warning("dbt tenant=%s: DuckDB file locked by another process, retry in %ds", tenant, 2 * attempt)
            time.sleep(2.0 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def parse_project(
    tenant: str,
    *,
    settings: Settings,
    run_date: dt.date | None = None,
    tables: Iterable[TableConfig] | None = None,
    target: str | None = None,
    project: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """``dbt parse`` for one tenant (no connection needed): validates the project, returns manifest.json.

    Raises :class:`DbtFailure` with dbt's error (e.g. an invalid ``tenant``) when parsing fails.
    """
    target = target or target_for_profile(settings.profile)
    work = work_dir(settings, tenant)
    run_date = run_date or dt.date.today()
    spec = tables_var(tables) if tables is not None else None
    argv = build_command(
        tenant, target=target, project=project or project_dir(), work=work, tables=spec, command="parse"
    )
    call = _Invocation(tenant, run_date, target, "parse", argv, dbt_env(settings, target, env, run_date=run_date), work)
    work.mkdir(parents=True, exist_ok=True)
    return_code, tail, _ = _stream(call, None, None)
    manifest = work / "target" / "manifest.json"
    if return_code != 0 or not manifest.exists():
        raise DbtFailure(f"{call.what} failed (exit code {return_code}):\n{_last_error(tail)}", tenant=tenant)
    return manifest


class _LockConflictError(Exception):
    pass


def _run_once(call: _Invocation, on_progress: ProgressCallback | None, timeout: float | None) -> DbtRunResult:
    results_path = call.work / "target" / "run_results.json"
    results_path.unlink(missing_ok=True)  # never mistake a previous run's results for this one's
    call.work.mkdir(parents=True, exist_ok=True)
    log.info("dbt %s tenant=%s date=%s target=%s", call.command, call.tenant, call.run_date, call.target)
    started = time.monotonic()
    return_code, tail, timed_out = _stream(call, on_progress, timeout)
    elapsed = time.monotonic() - started
    if timed_out:
        raise DbtFailure(f"{call.what} timed out after {timeout:.0f}s and was stopped", tenant=call.tenant)
    if not results_path.exists():
        if any(_LOCK_CONFLICT.search(line) for line in tail):
            raise _LockConflictError(_last_error(tail))
        raise DbtFailure(
            f"{call.what} stopped before running any node (exit code {return_code}):\n"
            f"{_last_error(tail)}\nfull log: {call.log_file}",
            tenant=call.tenant,
        )
    result = read_run_results(
        results_path,
        tenant=call.tenant,
        run_date=call.run_date,
        target=call.target,
        command=call.command,
        return_code=return_code,
        elapsed=elapsed,
    )
    if not result.ok:
        raise DbtFailure(_failure_message(result, tail, call.log_file), tenant=call.tenant, result=result)
    log.info(
        "dbt %s tenant=%s date=%s done in %.1fs: %s", call.command, call.tenant, call.run_date, elapsed, result.counts()
    )
    return result


def _stream(
    call: _Invocation, on_progress: ProgressCallback | None, timeout: float | None
) -> tuple[int, list[str], bool]:
    """Run dbt, log its lines, feed progress; return (exit code, last lines, timed out)."""
    tracker = ProgressTracker()
    tail: deque[str] = deque(maxlen=60)
    # this thread waits for dbt until it exits: the parent-death signal follows the spawning thread
    with children.popen(
        call.argv,
        env=call.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    ) as proc:
        timer = _Watchdog(proc, timeout)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                tail.append(line)
                log.debug("dbt[%s] %s", call.tenant, line)
                if tracker.feed(line) and on_progress is not None:
                    on_progress(tracker.state)
            return_code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                _kill(proc)
    return return_code, list(tail), timer.fired


class _Watchdog:
    """Stops dbt (its whole process group) when it runs past ``timeout`` seconds."""

    def __init__(self, proc: subprocess.Popen[str], timeout: float | None) -> None:
        self.fired = False
        self._proc = proc
        self._timer = threading.Timer(timeout, self._fire) if timeout else None
        if self._timer:
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        _kill(self._proc)

    def cancel(self) -> None:
        if self._timer:
            self._timer.cancel()


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


# -------------------------------------------------------------------------------------------- results


def read_run_results(
    path: Path,
    *,
    tenant: str,
    run_date: dt.date,
    target: str,
    command: str = "build",
    return_code: int = 0,
    elapsed: float | None = None,
) -> DbtRunResult:
    """Parse dbt's ``run_results.json`` (schema v6) into a :class:`DbtRunResult`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        nodes = tuple(_node(raw) for raw in data["results"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DbtFailure(f"cannot read dbt's {path}: {exc}", tenant=tenant) from exc
    return DbtRunResult(
        tenant=tenant,
        run_date=run_date,
        target=target,
        command=command,
        nodes=nodes,
        elapsed_seconds=float(data.get("elapsed_time") or 0.0) if elapsed is None else elapsed,
        run_results_path=Path(path),
        invocation_id=(data.get("metadata") or {}).get("invocation_id"),
        return_code=return_code,
    )


def _node(raw: Mapping[str, Any]) -> DbtNodeResult:
    return DbtNodeResult(
        unique_id=str(raw["unique_id"]),
        status=str(raw["status"]),
        message=raw.get("message"),
        failures=raw.get("failures"),
        execution_time=float(raw.get("execution_time") or 0.0),
        relation_name=raw.get("relation_name"),
    )


def _failure_message(result: DbtRunResult, tail: list[str], log_file: Path) -> str:
    failed = result.failed
    skipped = sum(1 for n in result.nodes if n.status == "skipped")
    head = f"dbt {result.command} for {result.run_date} (target {result.target}) failed"
    if not failed:
        return f"{head} with exit code {result.return_code}:\n{_last_error(tail)}"
    lines = [f"{head}: {len(failed)} node(s) failed, {skipped} skipped:"]
    lines += [f"  - {node.describe()}" for node in failed]
    lines.append(f"run_results: {result.run_results_path}; log: {log_file}")
    return "\n".join(lines)


def _last_error(tail: list[str]) -> str:
    """The interesting end of dbt's output: from its first error line, else the last lines."""
    marks = ("Encountered an error", "Error", "error:")
    start = next((i for i, line in enumerate(tail) if any(m in line for m in marks)), max(0, len(tail) - 15))
    return "\n".join(line for line in tail[start : start + 25] if line.strip())
