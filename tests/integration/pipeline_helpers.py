"""Helpers for the end-to-end tests of issue 6: isolated configs (unique tenant ids), the environment of a
subprocess run, luigid on a free loopback port, and the clean-up of everything a tenant left behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mozart_luigi.config import load_config
from mozart_luigi.demo import generate_source
from mozart_luigi.lake import Lake
from mozart_luigi.retry import retrying
from mozart_luigi.targets import clear_marker_cache
from mozart_luigi.warehouse import open_warehouse

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
LAYERS = ("staging", "intermediate", "mart")
_STACK_SOURCES = {
    "acme": {
        "kind": "postgresql",
        "host": "${MOZART_PG_HOST}",
        "port": "${MOZART_PG_PORT}",
        "database": "acme",
        "user": "acme_reader",
        "schema": "public",
    },
    "globex": {
        "kind": "mysql",
        "host": "${MOZART_MYSQL_HOST}",
        "port": "${MOZART_MYSQL_PORT}",
        "database": "globex",
        "user": "globex_reader",
    },
}


@dataclass
class Setup:
    """One isolated pipeline: its config folder, data folder, tenant ids and subprocess environment."""

    config_dir: Path
    data_dir: Path
    tenants: list[str]
    env: dict[str, str]
    profile: str


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def stack_setup(
    tmp_path: Path,
    stack_env: Mapping[str, str],
    prefix: str,
    sources: list[str],
    *,
    canary_var: str | None = None,
) -> Setup:
    """Tenants ``{prefix}_{source}`` reading the stack's sample databases (acme on PG, globex on MariaDB).

    The first tenant's password comes from ``canary_var`` when given (set to the real password, so the run
    succeeds and the test can look for that value everywhere).
    """
    tenants: dict[str, Any] = {}
    env = {**os.environ, **stack_env, "MOZART_PROFILE": "stack"}
    for n, source in enumerate(sources):
        var = canary_var if canary_var and n == 0 else f"{source.upper()}_DB_PASSWORD"
        env[var] = stack_env[f"{source.upper()}_DB_PASSWORD"]
        tenants[f"{prefix}_{source}"] = {
            "profiles": ["stack"],
            "source": {**_STACK_SOURCES[source], "password": f"${{{var}}}"},
        }
    return _write(tmp_path, tenants, env, "stack")


def local_setup(tmp_path: Path, tenants: list[str], *, canary: str | None = None) -> Setup:
    """Demo SQLite tenants under ``tmp_path`` (sources generated here), profile ``local``."""
    data = tmp_path / "data"
    env = {**os.environ, "MOZART_PROFILE": "local"}
    entries: dict[str, Any] = {}
    for tenant in tenants:
        path = data / "sources" / f"{tenant}.sqlite"
        generate_source(path, tenant)
        source: dict[str, Any] = {"kind": "sqlite", "path": str(path)}
        if canary:
            env["MOZART_TEST_CANARY_PW"] = canary
            source["password"] = "${MOZART_TEST_CANARY_PW}"  # ignored by SQLite; must never be printed
        entries[tenant] = {"profiles": ["local"], "source": source}
    for name in ("MOZART_LAKE_URL", "MOZART_DUCKDB_PATH", "MOZART_REPORT_DIR"):
        env.pop(name, None)
    return _write(tmp_path, entries, env, "local")


def _write(tmp_path: Path, tenants: dict[str, Any], env: dict[str, str], profile: str) -> Setup:
    config_dir = tmp_path / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config" / "tables.yaml", config_dir / "tables.yaml")
    (config_dir / "tenants.yaml").write_text(yaml.safe_dump({"tenants": tenants}, sort_keys=False))
    data_dir = tmp_path / "data"
    env.update(MOZART_CONFIG_DIR=str(config_dir), MOZART_DATA_DIR=str(data_dir))
    env.pop("LUIGI_CONFIG_PATH", None)
    return Setup(config_dir, data_dir, list(tenants), env, profile)


def run(
    argv: list[str], setup: Setup, *, timeout: float = 1200, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command from the project folder (so luigi.cfg applies) with the setup's environment."""
    done = subprocess.run(argv, cwd=REPO, env=setup.env, capture_output=True, text=True, timeout=timeout, check=False)
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}\n")
    return done


def cleanup(setup: Setup) -> None:
    """Drop what the tenants left: dbt schemas, Iceberg/DuckDB tables, raw tables, markers, lake files."""
    config = load_config(setup.config_dir, env=setup.env)
    settings = config.settings
    if settings.profile == "stack":
        with open_warehouse(settings) as wh:
            for tenant in setup.tenants:
                # other tests commit to mozart_meta at the same time: Iceberg commit conflicts are retried
                retrying(lambda t=tenant: drop_dbt_schemas(wh, t), what="drop dbt schemas")
                retrying(lambda t=tenant: wh.drop_tenant(t), what=f"drop tenant {tenant}", attempts=6)
        lake = Lake.from_settings(settings)
        for tenant in setup.tenants:
            for table in config.tables:
                _clear_table(lake, tenant, table)
    clear_marker_cache()


def _clear_table(lake: Lake, tenant: str, table: str) -> None:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(lake.fs_path(lake.table_url(tenant, table)), allow_not_found=True, recursive=True)
    for info in lake.filesystem.get_file_info(selector):
        if info.type == pafs.FileType.File:
            lake.filesystem.delete_file(info.path)


def drop_dbt_schemas(wh: Any, tenant: str) -> None:
    """The tenant's dbt schemas (``{tenant}_staging`` ...), with their views and tables."""
    for layer in LAYERS:
        wh.drop_schema(f"{tenant}_{layer}", tenant=tenant)


# ---------------------------------------------------------------------------------------------- luigid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Luigid:
    port: int
    state_path: Path
    log_dir: Path

    def api(self, method: str, data: Mapping[str, Any] | None = None) -> tuple[str, Any]:
        """``GET /api/{method}?data=...``: the raw answer text and its decoded ``response``."""
        query = urllib.parse.urlencode({"data": json.dumps(data or {})})
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/{method}?{query}", timeout=10) as resp:  # noqa: S310
            text = resp.read().decode("utf-8")
        return text, json.loads(text)["response"]


@contextmanager
def luigid(tmp_path: Path, env: Mapping[str, str]) -> Iterator[Luigid]:
    """luigid on a free loopback port with a state file under ``tmp_path``; stopped (SIGTERM) on exit."""
    server = Luigid(free_port(), tmp_path / "luigid" / "state.pickle", tmp_path / "luigid")
    server.log_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(BIN / "luigid"),
        "--address",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--state-path",
        str(server.state_path),
        "--logdir",
        str(server.log_dir),
    ]
    with (server.log_dir / "stdout.log").open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_up(server, proc)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_up(server: Luigid, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60  # a loaded CI box can take a while to import and bind
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"luigid exited with {proc.returncode}: {(server.log_dir / 'stdout.log').read_text()[-2000:]}"
            )
        try:
            server.api("task_list", {"status": "DONE"})
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("luigid did not answer within 60 s")


@pytest.fixture(name="setup")  # test modules: setup = pipeline_helpers.made_setups
def made_setups() -> Iterator[list[Setup]]:
    """A test's list of set-ups (tenants, schemas, lake prefixes), each cleaned up afterwards."""
    made: list[Setup] = []
    yield made
    for each in made:
        cleanup(each)
