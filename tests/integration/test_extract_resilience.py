"""Crash safety (SIGKILL at named points), wrong credentials isolated to one tenant, no secret in messages."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import extract_helpers
import pytest
from extract_helpers import (
    DAY,
    build,
    create_big_table,
    extract,
    lake,
    pg_tenant,
    read_back,
    write_config,
)
from sqlalchemy.engine import make_url

from mozart_luigi.errors import SourceError
from mozart_luigi.manifest import MANIFEST_NAME

pytestmark = pytest.mark.integration
pg_schema = extract_helpers.pg_schema
mysql_db = extract_helpers.mysql_db
lake_url = extract_helpers.lake_url
reader = extract_helpers.reader
WRONG_PASSWORD = "wrong-pw-Xq7Zr2"


def run_luigi_subprocess(cwd: Path, crash_at: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOZART_TEST_CRASH_AT": crash_at}
    command = [
        sys.executable,
        "-m",
        "luigi",
        "--module",
        "mozart_luigi",
        "ExtractTable",
        "--tenant",
        "acme",
        "--table",
        "big",
        "--date",
        DAY.isoformat(),
        "--local-scheduler",
    ]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("crash_at", ["mid_stream", "before_manifest"])
def test_sigkill_leaves_no_manifest_and_the_rerun_lands_the_count(
    pg_schema, reader, lake_url, tmp_path: Path, monkeypatch, crash_at: str
) -> None:
    engine, schema = pg_schema
    create_big_table(engine, schema)
    monkeypatch.setenv("MOZART_BATCH_ROWS", "300")
    monkeypatch.setenv("MOZART_PART_ROWS", "1000")
    write_config(tmp_path, monkeypatch, {"acme": pg_tenant(schema, reader)}, {"big": {"mode": "full"}}, lake_url)
    folder = lake().date_url("acme", "big", DAY)

    crashed = run_luigi_subprocess(tmp_path, crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    leftovers = lake().list_files(folder)
    assert MANIFEST_NAME not in leftovers
    assert leftovers, "a crash after a finished part leaves that part behind (garbage without a manifest)"
    if crash_at == "before_manifest":
        assert len([n for n in leftovers if n.startswith("part-")]) == 3

    assert build(extract("acme", "big")).scheduling_succeeded
    manifest, data = read_back("acme", "big")
    assert manifest.row_count == manifest.source_count == 2500 and data.num_rows == 2500
    assert sorted(data.column("id").to_pylist()) == list(range(1, 2501))
    assert lake().list_files(folder) == sorted([MANIFEST_NAME, *(f.name for f in manifest.files)])


def bad_url(url: str) -> str:
    return make_url(url).set(password=WRONG_PASSWORD).render_as_string(hide_password=False)


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_wrong_password_fails_one_tenant_cleanly_while_another_completes(
    pg_schema, mysql_db, stack_env, tmp_path: Path, monkeypatch, caplog, kind: str
) -> None:
    engine, schema = pg_schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{schema}".orders (id int)')
        conn.exec_driver_sql(f'INSERT INTO "{schema}".orders VALUES (1), (2)')
    env_key = "MOZART_TEST_PG_URL" if kind == "postgresql" else "MOZART_TEST_MYSQL_URL"
    monkeypatch.setenv("BADCO_URL", bad_url(stack_env[env_key]))
    tenants = {"acme": pg_tenant(schema), "badco": {"source": {"kind": kind, "url": "${BADCO_URL}"}}}
    write_config(tmp_path, monkeypatch, tenants, {"orders": {"mode": "full"}})
    caplog.set_level(logging.DEBUG)

    result = build(extract("badco", "orders"), extract("acme", "orders"), workers=2)
    assert not result.scheduling_succeeded or "failed" in result.summary_text
    assert extract("acme", "orders").complete() and read_back("acme", "orders")[0].row_count == 2
    assert not extract("badco", "orders").complete()

    caplog.clear()
    with pytest.raises(SourceError) as info:
        extract("badco", "orders").run()
    assert "retrying in" not in caplog.text, "a wrong password is terminal: no retries"
    message = str(info.value)
    assert not info.value.retryable
    assert message.startswith("tenant 'badco', table 'orders': cannot connect to")
    assert "127.0.0.1:" in message and ("password" in message.lower() or "denied" in message.lower())
    assert WRONG_PASSWORD not in message
    assert WRONG_PASSWORD not in caplog.text
