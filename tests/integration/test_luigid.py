"""AllTenants through a real luigid (not the local scheduler): every task DONE in its API, and a tenant's
password (the canary) appears nowhere: not in the API's answers, its state file, its log, the worker's log."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from pipeline_helpers import BIN, REPO, Luigid, Setup, cleanup, local_setup, luigid, run, stack_setup, unique

pytestmark = pytest.mark.integration
DATE = "2026-11-28"
CANARY = "canary-Luigid-Pw-5b1d0c"
STATUSES = ("PENDING", "RUNNING", "FAILED", "DISABLED", "UNKNOWN", "BATCH_RUNNING")


def _expected_families(tenants: int, tables: int = 4) -> dict[str, int]:
    return {
        "AllTenants": 1,
        "TenantPipeline": tenants,
        "DbtRun": tenants,
        "LoadIceberg": tenants * tables,
        "ExtractTable": tenants * tables,
    }


def _api_answers(server: Luigid, done: dict[str, dict]) -> str:
    """Every answer a visualizer user could see, concatenated."""
    texts = []
    for status in ("DONE", *STATUSES):
        texts.append(server.api("task_list", {"status": status, "upstream_status": "", "search": ""})[0])
    texts.append(server.api("worker_list")[0])
    texts.append(server.api("resource_list")[0])
    texts.append(server.api("task_search", {"task_str": ""})[0])
    for task_id in done:
        texts.append(server.api("fetch_error", {"task_id": task_id})[0])
        texts.append(server.api("dep_graph", {"task_id": task_id, "include_done": True})[0])
    return "\n".join(texts)


def _run_through_luigid(setup: Setup, tmp_path: Path, secrets: list[str]) -> None:
    log = tmp_path / "worker.log"
    with luigid(tmp_path, setup.env) as server:
        scheduler = ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(server.port)]
        argv = [
            str(BIN / "luigi"),
            "--module",
            "mozart_luigi",
            "AllTenants",
            "--date",
            DATE,
            *scheduler,
            "--workers",
            "2",
        ]
        first = run(argv, setup, log=log)
        assert first.returncode == 0, log.read_text()[-6000:]
        _, done = server.api("task_list", {"status": "DONE", "upstream_status": "", "search": ""})
        families: dict[str, int] = {}
        for task in done.values():
            families[task["name"]] = families.get(task["name"], 0) + 1
        assert families == _expected_families(len(setup.tenants))
        assert {t["params"]["tenant"] for t in done.values() if "tenant" in t["params"]} == set(setup.tenants)
        for status in STATUSES:
            assert server.api("task_list", {"status": status, "upstream_status": "", "search": ""})[1] == {}, status
        # the second run through luigid (with the mozart CLI this time) finds everything done
        again = run([str(BIN / "mozart"), "run", "--date", DATE, *scheduler], setup, log=log)
        assert again.returncode == 0, log.read_text()[-6000:]
        assert "0 missing, 0 failed" in again.stdout
        answers = _api_answers(server, done)
    seen = {"API answers": answers, "worker log": log.read_text()}
    seen["luigid state file"] = server.state_path.read_bytes().decode("latin-1")
    for path in server.log_dir.glob("*.log"):
        seen[f"luigid {path.name}"] = path.read_text()
    assert server.state_path.stat().st_size > 0
    for secret in secrets:
        for where, text in seen.items():
            assert secret not in text, f"a secret leaked into the {where}"


def test_all_tenants_through_luigid_local(tmp_path: Path) -> None:
    setup = local_setup(tmp_path, ["demo_west"], canary=CANARY)
    _run_through_luigid(setup, tmp_path, [CANARY])


def test_all_tenants_through_luigid_stack(stack_env: dict[str, str], tmp_path: Path) -> None:
    setup = stack_setup(tmp_path, stack_env, unique("t_luigid"), ["acme", "globex"], canary_var="T_LUIGID_CANARY")
    try:
        secrets = [
            stack_env["ACME_DB_PASSWORD"],
            stack_env["GLOBEX_DB_PASSWORD"],
            stack_env["MOZART_S3_SECRET_KEY"],
        ]
        _run_through_luigid(setup, tmp_path, secrets)
    finally:
        cleanup(setup)


def _wait_for(flag: Path, proc: subprocess.Popen[str], what: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not flag.exists():
        assert proc.poll() is None, f"{what} exited early: {proc.communicate()[1][-4000:]}"
        assert time.monotonic() < deadline, f"{what} never reached {flag.name}"
        time.sleep(0.1)


def test_two_workers_on_one_luigid_never_report_a_finished_load_as_unfulfilled(tmp_path: Path) -> None:
    """Forced interleaving of two workers on one luigid: A builds the night's graph (so it has seen the orders
    load missing) and is held at one of its extracts; B finishes the orders load meanwhile; then A goes on and
    runs DbtRun, whose run-time dependency check must see B's load as done: A exits 0, dbt built once."""
    setup = local_setup(tmp_path, ["demo_west"])
    pauses = {name: tmp_path / f"pause-{name}" for name in ("a", "b")}
    for folder in pauses.values():
        folder.mkdir()
    try:
        with luigid(tmp_path, setup.env) as server:
            scheduler = ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(server.port)]
            env_b = {**setup.env, "MOZART_TEST_PAUSE_AT": "before_manifest", "MOZART_TEST_PAUSE_DIR": str(pauses["b"])}
            b = subprocess.Popen(
                [
                    str(BIN / "luigi"),
                    "--module",
                    "mozart_luigi",
                    "LoadIceberg",
                    "--tenant",
                    "demo_west",
                    "--table",
                    "orders",
                    "--date",
                    DATE,
                    *scheduler,
                ],
                cwd=REPO,
                env=env_b,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _wait_for(pauses["b"] / "before_manifest.reached", b, "worker B")
            env_a = {**setup.env, "MOZART_TEST_PAUSE_AT": "before_manifest", "MOZART_TEST_PAUSE_DIR": str(pauses["a"])}
            a = subprocess.Popen(
                [str(BIN / "mozart"), "run", "--date", DATE, *scheduler],
                cwd=REPO,
                env=env_a,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _wait_for(pauses["a"] / "before_manifest.reached", a, "worker A")
            (pauses["b"] / "before_manifest.go").touch()
            _, b_err = b.communicate(timeout=600)
            assert b.returncode == 0, b_err[-4000:]
            (pauses["a"] / "before_manifest.go").touch()
            a_out, a_err = a.communicate(timeout=900)
            assert "Unfulfilled dependency" not in a_err
            assert a.returncode == 0, (a_out + a_err[a_err.find("Execution Summary") - 200 :])[-6000:]
            _, done = server.api("task_list", {"status": "DONE", "upstream_status": "", "search": ""})
            assert sum(1 for t in done.values() if t["name"] == "DbtRun") == 1
    finally:
        cleanup(setup)


def test_two_local_scheduler_runs_of_one_night_the_second_exits_10(tmp_path: Path) -> None:
    """Two `mozart run --local-scheduler` at once (forced: A is held at its first extract): B finds A's run
    lock and exits 10 at once, touching nothing; A finishes everything (exit 0)."""
    setup = local_setup(tmp_path, ["demo_west"])
    pause = tmp_path / "pause"
    pause.mkdir()
    try:
        env_a = {**setup.env, "MOZART_TEST_PAUSE_AT": "before_manifest", "MOZART_TEST_PAUSE_DIR": str(pause)}
        argv = [str(BIN / "mozart"), "run", "--date", DATE, "--local-scheduler"]
        a = subprocess.Popen(argv, cwd=REPO, env=env_a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(pause / "before_manifest.reached", a, "run A")
        b = run(argv, setup)
        assert b.returncode == 10, b.stderr[-3000:]
        assert "run.lock" in b.stderr and "Traceback" not in b.stderr
        (pause / "before_manifest.go").touch()
        a_out, a_err = a.communicate(timeout=900)
        assert a.returncode == 0, (a_out + a_err)[-4000:]
        assert "5 done, 0 missing, 0 failed" in a_out
    finally:
        cleanup(setup)
