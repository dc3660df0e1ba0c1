"""The pipeline through an authenticated, encrypted Trino: the stack's opt-in TLS Trino (HTTPS with a
certificate from a CA made at its start, password and JWT authentication, the same catalogs as the plain one)
is started for this module with a random password, the canary.

One tenant's day runs through luigid with ``mozart run`` (extract, ``LoadIceberg`` with its snapshot expiry
through Trino, dbt), then counts and queries go through ``TrinoWarehouse`` with
``MOZART_TRINO_HTTP_SCHEME=https``, ``MOZART_TRINO_PASSWORD=<canary>`` and ``MOZART_TRINO_VERIFY=<the CA>``.
The canary must be nowhere: not in the worker's or the stack's output, the captured logs, any file under the
run's data folder (reports, dbt's target and logs), luigid's answers, state and logs, Trino's own logs, nor
the text of any query Trino ran (``system.runtime.queries``). A wrong password, a bad JWT and an untrusted
certificate fail with clear errors that hold no secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipeline_helpers import REPO, Setup, cleanup, free_port, luigid, run, stack_setup, unique

from mozart_luigi.config import load_config
from mozart_luigi.secrets import Secret
from mozart_luigi.settings import Settings
from mozart_luigi.tasks.load import maintenance_due
from mozart_luigi.warehouse.trino import TrinoQueryFailed, TrinoWarehouse

pytestmark = pytest.mark.integration
DATE = "2026-11-29"  # customers and products have their weekly snapshot expiry (through Trino) that day
TABLES = ("customers", "products", "orders", "order_items")
STACK = REPO / "scripts" / "stack"
TLS_DIR = REPO / ".stack" / "trino-tls"


@dataclass(frozen=True)
class TlsTrino:
    port: int
    ca: Path
    password: str
    jwt_key: bytes
    stack_output: str

    def env(self, password: str | None = None) -> dict[str, str]:
        """What a client of this Trino sets (on top of ``scripts/stack env``)."""
        return {
            "MOZART_TRINO_HOST": "127.0.0.1",
            "MOZART_TRINO_PORT": str(self.port),
            "MOZART_TRINO_HTTP_SCHEME": "https",
            "MOZART_TRINO_USER": "mozart",
            "MOZART_TRINO_PASSWORD": password or self.password,
            "MOZART_TRINO_VERIFY": str(self.ca),
        }

    def settings(self, **env: str) -> Settings:
        problems: list = []
        settings = Settings.from_env({**os.environ, "MOZART_PROFILE": "stack", **self.env(), **env}, problems)
        assert problems == []
        return settings


def _stack(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STACK), command], env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )


@pytest.fixture(scope="module")
def tls_trino() -> Iterator[TlsTrino]:
    """``MOZART_TRINO_TLS=only scripts/stack up`` on free ports with a random password; ``down`` afterwards."""
    if not (os.environ.get("MOZART_TRINO_HOST") and os.environ.get("MOZART_TEST_PG_URL")):
        pytest.skip('stack not configured: run `eval "$(scripts/stack env)"` after `scripts/stack up`')
    env = {**os.environ, "MOZART_TRINO_TLS": "only"}
    if _stack("status", env, 60).returncode == 0:
        pytest.skip(
            "a TLS Trino already runs (.stack/trino-tls) with a password this test does not know; "
            "stop it with `MOZART_TRINO_TLS=only scripts/stack down`"
        )
    https, internal = free_port(), free_port()
    while internal == https:
        internal = free_port()
    canary = f"c4n4ry-{uuid.uuid4().hex}"
    env.update(
        MOZART_TRINO_TLS_PORT=str(https), MOZART_TRINO_TLS_HTTP_PORT=str(internal), MOZART_TRINO_TLS_PASSWORD=canary
    )
    up = _stack("up", env, 1500)
    output = up.stdout + up.stderr
    if up.returncode != 0:
        pytest.fail(f"MOZART_TRINO_TLS=only scripts/stack up failed:\n{output[-4000:]}".replace(canary, "***"))
    try:
        key = base64.b64decode((TLS_DIR / "tls" / "jwt-hmac.key").read_text())
        yield TlsTrino(https, TLS_DIR / "tls" / "ca.pem", canary, key, output)
    finally:
        down = _stack("down", env, 300)
        assert down.returncode == 0, down.stderr[-2000:]


def _jwt(key: bytes, subject: str = "mozart", expires_in: int = 600) -> str:
    """An HS256 token, as the TLS Trino's JWT authenticator (key file ``jwt-hmac.key``) accepts."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = part(json.dumps({"sub": subject, "exp": int(time.time()) + expires_in}).encode())
    signature = part(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{signature}"


def _date_with_maintenance() -> None:
    """The load's weekly snapshot expiry (a Trino statement) must run on DATE for at least one table."""
    due = [t for t in TABLES if maintenance_due(t, dt.date.fromisoformat(DATE))]
    assert due, f"no table has its weekly maintenance on {DATE}: choose another date"


def _files_text(root: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------- tests


def test_pipeline_through_tls_trino_never_shows_the_password(
    tls_trino: TlsTrino, stack_env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _date_with_maintenance()
    setup: Setup = stack_setup(tmp_path, stack_env, unique("t_tls"), ["acme"])
    setup.env.update(tls_trino.env())
    tenant = setup.tenants[0]
    seen: dict[str, str] = {"scripts/stack up": tls_trino.stack_output}
    try:
        log = tmp_path / "worker.log"
        with luigid(tmp_path, setup.env) as server:
            argv = [
                str(REPO / ".venv" / "bin" / "mozart"),
                "run",
                "--date",
                DATE,
                "--workers",
                "2",
                "--scheduler-host",
                "127.0.0.1",
                "--scheduler-port",
                str(server.port),
            ]
            done = run(argv, setup, log=log)
            assert done.returncode == 0, log.read_text()[-6000:]
            texts = [
                server.api("task_list", {"status": s, "upstream_status": "", "search": ""})[0]
                for s in ("DONE", "FAILED", "PENDING")
            ]
            texts += [server.api("worker_list")[0], server.api("task_search", {"task_str": ""})[0]]
            seen["luigid API"] = "\n".join(texts)
        seen["worker log"] = log.read_text()
        seen["luigid state"] = server.state_path.read_bytes().decode("latin-1")
        seen.update({f"luigid {p.name}": p.read_text() for p in server.log_dir.glob("*.log")})

        report = json.loads((setup.data_dir / "reports" / DATE / "report.json").read_text())
        assert report["ok"] is True, report
        assert {d["tenant"]: d["status"] for d in report["dbt"]} == {tenant: "done"}
        loaded = {r["table"]: r["rows_loaded"] for r in report["tables"]}
        assert set(loaded) == set(TABLES) and loaded["customers"] > 0

        # a Trino count and the generic query path, in this process, through HTTPS with the password
        settings = load_config(setup.config_dir, env=setup.env).settings
        assert (settings.trino_http_scheme, settings.trino_port) == ("https", tls_trino.port)
        warehouse = TrinoWarehouse.from_settings(settings, tenant=tenant)
        try:
            day = dt.date.fromisoformat(DATE)
            counts = {table: warehouse.count_partition(tenant, table, day) for table in TABLES}
            assert counts == loaded
            assert warehouse.query("SELECT current_user") == [["mozart"]]
            [[marts]] = warehouse.query(
                "SELECT count(*) FROM iceberg.information_schema.tables WHERE table_schema = ?", [f"{tenant}_mart"]
            )
            assert marts > 0  # dbt built its marts through the same Trino
            queries = warehouse.query("SELECT query, source FROM system.runtime.queries")
        finally:
            warehouse.close()
        seen["Trino query text"] = "\n".join(query for query, _ in queries)
        sources = {source for _, source in queries}
        assert "mozart-luigi" in sources and any((s or "").startswith("dbt-trino") for s in sources), sources
        assert any(tenant in query for query, _ in queries)  # the history covers this run,
        assert any("EXECUTE expire_snapshots" in query for query, _ in queries)  # the load's expiry included

        status = run([str(REPO / ".venv" / "bin" / "mozart"), "status", "--date", DATE, "--json"], setup)
        assert status.returncode == 0, status.stderr[-3000:]
        seen["mozart status"] = status.stdout + status.stderr
    finally:
        cleanup(setup)
    seen["captured logs"] = caplog.text
    seen.update(_files_text(setup.data_dir))  # reports, dbt's target/ and logs/, everything the run wrote
    seen.update({f"Trino {p.name}": p.read_text() for p in TLS_DIR.glob("*log*") if p.is_file()})
    assert len(seen) > 10
    for where, text in seen.items():
        assert tls_trino.password not in text, f"the Trino password leaked into {where}"


def test_wrong_password_fails_at_once_with_a_clear_error(tls_trino: TlsTrino, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{uuid.uuid4().hex}"
    settings = tls_trino.settings(MOZART_TRINO_PASSWORD=wrong)
    warehouse = TrinoWarehouse.from_settings(settings)
    started = time.monotonic()
    with pytest.raises(TrinoQueryFailed) as info:
        warehouse.count_partition("acme", "orders", dt.date.fromisoformat(DATE))
    assert time.monotonic() - started < 30  # terminal: not retried with backoff
    message = str(info.value)
    assert not info.value.retryable
    assert "401" in message and "Invalid credentials" in message, message
    assert f"127.0.0.1:{tls_trino.port}" in message
    for text in (message, repr(info.value), caplog.text):
        assert wrong not in text and tls_trino.password not in text


def test_jwt_authenticates_and_a_bad_token_is_refused(tls_trino: TlsTrino) -> None:
    good = TrinoWarehouse.from_settings(
        tls_trino.settings(MOZART_TRINO_PASSWORD="", MOZART_TRINO_JWT=_jwt(tls_trino.jwt_key))
    )
    assert good.query("SELECT current_user") == [["mozart"]]
    forged = _jwt(b"not-the-server-key-" * 2)
    bad = TrinoWarehouse.from_settings(tls_trino.settings(MOZART_TRINO_PASSWORD="", MOZART_TRINO_JWT=forged))
    with pytest.raises(TrinoQueryFailed, match="401") as info:
        bad.query("SELECT 1")
    assert forged not in str(info.value)


def test_an_untrusted_certificate_is_refused(tls_trino: TlsTrino) -> None:
    """Without the stack's CA (the system bundle only), the TLS handshake fails: no password is sent."""
    settings = tls_trino.settings()
    warehouse = TrinoWarehouse(
        host="127.0.0.1",
        port=tls_trino.port,
        user="mozart",
        http_scheme="https",
        password=Secret(tls_trino.password),
        verify=True,
        attempts=1,
        secrets=settings.secrets(),
    )
    with pytest.raises(TrinoQueryFailed, match="certificate that is not trusted") as info:
        warehouse.query("SELECT 1")
    assert not info.value.retryable  # a retry cannot fix an untrusted certificate
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) and tls_trino.password not in str(info.value)


def test_the_server_keeps_only_a_bcrypt_hash(tls_trino: TlsTrino) -> None:
    """The password file holds a bcrypt hash; the password is in no config file, nor in Trino's environment
    or command line."""
    assert (TLS_DIR / "etc" / "password.db").read_text().startswith("mozart:$2y$10$")
    for where, text in _files_text(TLS_DIR / "etc").items():
        assert tls_trino.password not in text, where
    pid = int((TLS_DIR / "pid").read_text().strip())
    for name in ("environ", "cmdline"):
        assert tls_trino.password.encode() not in Path(f"/proc/{pid}/{name}").read_bytes(), name
