"""Every command in the README is checked here: parsed (make targets, mozart and luigi arguments, luigid
options, script paths) and, when cheap, run. Commands that run the pipeline are run for real: those of "Using
it" and "Backfills" by tests/integration/test_demo_e2e.py, the luigid block (luigid, ``mozart run`` through it,
``mozart enable``) with its claims about retries, disabling, restarting luigid and exit 45 by
:func:`test_readme_luigid_block_runs_as_written`. A README command no checker knows, or a pipeline command no
test runs, fails the test."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from luigi.cmdline_parser import CmdlineParser
from status_week import small_dbt_project

from mozart_luigi import config as config_module
from mozart_luigi import settings as settings_module
from mozart_luigi.cli import _parser, main

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def readme_commands(text: str = README) -> list[str]:
    """Every line of every ```bash block."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _section(title: str) -> str:
    """From ``title`` to the next ``## `` heading."""
    return README.split(f"\n{title}", 1)[1].split("\n## ", 1)[0]


def _first_block(title: str) -> list[str]:
    """The commands of the first ```bash block after ``title``."""
    found = re.search(r"```bash\n(.*?)```", _section(title), re.S)
    assert found, title
    return [line.strip() for line in found.group(1).splitlines() if line.strip()]


def _normal(command: str | list[str]) -> str:
    return " ".join(shlex.split(command) if isinstance(command, str) else command)


# the pipeline commands run for real, and by which test
RUN_BY_DEMO_E2E = {
    _normal(c) for c in readme_commands(_section("## Using it")) + readme_commands(_section("**Backfills.**"))
}
LUIGID_BLOCK = _first_block("**luigid.**")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    for name in ("MOZART_DUCKDB_PATH", "MOZART_LAKE_URL", "MOZART_REPORT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


# ------------------------------------------------------------------------------------------ checkers


def _make(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    for target in argv[1:]:
        done = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"make target {target!r}: {done.stderr}"
        if target == "luigid":  # the same luigid as the README's next line (MOZART_DATA_DIR unset: .mozart)
            # run by `make test`, this is a make inside make: its MAKELEVEL/MAKEFLAGS would add "Entering
            # directory" lines and the outer make's flags; the README's reader runs it from a shell
            outer = {"MOZART_DATA_DIR", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"}
            made = subprocess.run(
                ["make", "--no-print-directory", "-n", "luigid"],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
                env={k: v for k, v in os.environ.items() if k not in outer},
            ).stdout
            luigid = next(c for c in LUIGID_BLOCK if c.startswith(".venv/bin/luigid "))
            assert _normal(made.replace("\\\n", " ").splitlines()[-1]) == _normal(luigid), made


def _stack_env() -> dict[str, str]:
    """What ``eval "$(scripts/stack env)"`` exports (the README runs that before ``--profile stack``)."""
    out = subprocess.run([REPO / "scripts" / "stack", "env"], capture_output=True, text=True, check=True).stdout
    exports = [shlex.split(line)[1] for line in out.splitlines() if line.startswith("export ")]
    return dict(item.split("=", 1) for item in exports)


def _mozart(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    args = _parser().parse_args(argv[1:])  # SystemExit on a wrong option
    if args.command not in ("validate", "plan", "status"):  # they run the pipeline or need luigid:
        assert _normal(argv) in RUN_BY_DEMO_E2E | {_normal(c) for c in LUIGID_BLOCK}, f"no test runs {argv}"
        return
    if args.profile == "stack":
        with pytest.MonkeyPatch.context() as patch:
            for key, value in _stack_env().items():
                patch.setenv(key, value)
            patch.setenv("MOZART_DATA_DIR", str(tmp / "data"))
            assert main(argv[1:]) == 0
        return
    assert main(argv[1:]) in (0, 1), argv  # status exits 1 when nothing is done yet


def _luigi(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    assert argv[1:3] == ["--module", "mozart_luigi"], argv
    assert _normal(argv) in RUN_BY_DEMO_E2E, f"no test runs {argv}"
    with warnings.catch_warnings():  # luigi's RangeDaily warns about its own param_name=None default
        warnings.filterwarnings("ignore", 'Parameter "param_name" with value "None"', UserWarning)
        with CmdlineParser.global_instance(argv[1:]) as parser:
            task = parser.get_task_obj()
    assert task.get_task_family() in ("AllTenants", "RangeDaily")


def _luigid(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    helptext = subprocess.run([REPO / argv[0], "--help"], capture_output=True, text=True, check=True).stdout
    for option in (a for a in argv[1:] if a.startswith("--")):
        assert option in helptext, option
    assert argv[argv.index("--address") + 1] == "127.0.0.1"  # loopback only
    assert _normal(argv) in {_normal(c) for c in LUIGID_BLOCK}  # started by test_readme_luigid_block_runs_as_written


def _cron(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    fake = tmp / "fake-mozart"
    fake.write_text(f'#!/usr/bin/env bash\necho "$@" > "{tmp}/called"\n')
    fake.chmod(0o755)
    run_env = {**env, "MOZART_BIN": str(fake), "MOZART_LOG_DIR": str(tmp / "logs")}
    done = subprocess.run([REPO / argv[0], *argv[1:]], env=run_env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    if "--help" in argv:
        assert "Exit codes" in done.stdout
    else:
        called = (tmp / "called").read_text()
        assert called.startswith("run --date " + argv[argv.index("--date") + 1])


def _cp(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    assert argv == ["cp", ".env.example", ".env"]
    example = (REPO / ".env.example").read_text()
    known = set(re.findall(r"MOZART_[A-Z0-9_]+|[A-Z]+_DB_PASSWORD", README))
    for name in re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M):
        assert name in known, f".env.example names {name}, which the README does not document"


def _docker(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    assert argv[:3] == ["docker", "compose", "up"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert {"trino", "minio"} <= set(compose["services"])


def _eval(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    assert argv == ["eval", "$(scripts/stack env)"]
    out = subprocess.run([REPO / "scripts" / "stack", "env"], capture_output=True, text=True, check=True).stdout
    assert "export MOZART_PROFILE=stack" in out


CHECKERS: dict[str, Callable[[list[str], dict[str, str], Path], None]] = {
    "make": _make,
    ".venv/bin/mozart": _mozart,
    ".venv/bin/luigi": _luigi,
    ".venv/bin/luigid": _luigid,
    "scripts/cron/mozart-daily": _cron,
    "cp": _cp,
    "docker": _docker,
    "eval": _eval,
}


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command(command: str, env: dict[str, str], tmp_path: Path) -> None:
    argv = shlex.split(command)
    assert argv[0] in CHECKERS, f"no test covers this README command: {command}"
    CHECKERS[argv[0]](argv, env, tmp_path)


def test_quick_start_is_exactly_two_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert readme_commands(section) == ["make demo", "make test"]


def test_every_config_key_and_setting_is_documented() -> None:
    keys = config_module._TENANT_KEYS | config_module._SOURCE_KEYS | config_module._TABLE_KEYS | {"defaults"}
    for key in sorted(keys):
        assert re.search(rf"`(?:[a-z_.<>]*\.)?{key}`|^\s+{key}:", README, re.M), f"config key {key!r}"
    for name in re.findall(r"\| (MOZART_[A-Z_]+)", settings_module.__doc__ or ""):
        assert name in README, f"setting {name}"


def test_links_and_paths_in_the_readme_exist() -> None:
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)\)", README):
        assert (REPO / target).exists(), target
    for path in ("luigi.cfg", "config/tenants.yaml", "config/tables.yaml", "scripts/cron/crontab.example"):
        assert (REPO / path).exists(), path


def test_luigi_cfg_sections_are_the_documented_ones() -> None:
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "luigi.cfg")
    assert {"core", "retcode", "worker", "scheduler", "resources"} <= set(cfg.sections())
    assert cfg["core"]["scheduler_host"] == "127.0.0.1"
    codes = {k: int(v) for k, v in cfg["retcode"].items()}
    assert codes == {
        "already_running": 10,
        "missing_data": 20,
        "not_run": 25,
        "task_failed": 30,
        "scheduling_error": 35,
        "unhandled_exception": 40,
    }
    for key, code in codes.items():
        assert str(code) in README.split("**Exit codes**", 1)[1].split("\n\n", 1)[0], key
    assert cfg.getboolean("worker", "check_complete_on_run")
    for key in ("retry_delay", "retry_count", "disable_window", "disable_hard_timeout", "disable_persist"):
        assert int(cfg["scheduler"][key]) > 0
    assert (REPO / cfg["core"]["logging_conf_file"]).is_file()
    assert not re.search(r"(?i)password\s*=|secret\s*=", (REPO / "luigi.cfg").read_text())


def test_luigi_reads_our_config_without_warnings() -> None:
    """The keys of [core], [scheduler] and [worker] are the ones this Luigi version understands (no
    deprecated or unconsumed keys: pytest turns those warnings into errors)."""
    import luigi.interface
    import luigi.scheduler
    import luigi.worker

    core = luigi.interface.core()
    assert (core.scheduler_host, core.scheduler_port, core.log_level) == ("127.0.0.1", 8082, "INFO")

    assert luigi.scheduler.scheduler().retry_count == 3
    assert luigi.scheduler.scheduler().disable_persist == 86400
    assert luigi.worker.worker().check_complete_on_run is True
    assert luigi.worker.worker().keep_alive is False


# ------------------------------------------------------------------------------- the luigid block, for real


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_here(command: str, port: int, data: Path) -> list[str]:
    """A README command of the luigid block on a free port, with ``.mozart`` the test's data folder."""
    return [a.replace("8082", str(port)).replace(".mozart/", f"{data}/") for a in shlex.split(command)]


@contextlib.contextmanager
def _luigid_running(argv: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("a") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()  # SIGTERM: luigid writes its state file, as when an operator restarts it
        proc.wait(timeout=30)


def test_readme_luigid_block_runs_as_written(local: Path) -> None:
    """README's luigid block and its claims, for real: luigid started as the README starts it (on a free port),
    the README's ``mozart run`` through it for the demo tenants while demo_west's source is gone:

    - a failed task runs again at once in the next ``mozart run`` (``retry_delay`` does not hold it back);
    - after 3 failures luigid disables it: the next run leaves it alone and its closing block names it, with
      the ``mozart enable`` command;
    - restarting luigid does not re-enable it (the state file keeps it disabled);
    - once the source is back, the README's ``mozart enable`` re-enables it and the next run completes;
    - with luigid stopped, the README's ``mozart run`` exits 45 within seconds."""
    from mozart_luigi.config import get_config, reset_config_cache
    from mozart_luigi.demo import generate_source
    from mozart_luigi.luigid_api import LuigidClient

    make, start, run_line, enable_line = LUIGID_BLOCK
    assert make == "make luigid" and start.startswith(".venv/bin/luigid ")
    assert " run " in run_line and " enable " in enable_line
    port = _free_port()
    luigid, run, enable = (_as_here(c, port, local) for c in (start, run_line, enable_line))
    day, tenant = run[run.index("--date") + 1], enable[enable.index("--tenant") + 1]
    reset_config_cache()
    for name in ("demo_north", "demo_south", "demo_west"):
        generate_source(Path(get_config().tenant(name).source.path), name)
    source = Path(get_config().tenant(tenant).source.path)
    aside = source.with_suffix(".aside")
    shutil.move(source, aside)
    (local / "luigid").mkdir()
    log = local / "luigid" / "out.log"
    # the dbt build of each tenant is real but of a one-model project (the shop's is run by test_demo_e2e)
    env = {**os.environ, "COLUMNS": "200", "MOZART_DBT_PROJECT_DIR": str(small_dbt_project(local / "dbt", REPO))}
    client = LuigidClient("127.0.0.1", port)

    def mozart(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)

    extracts = sorted(f"{tenant}.{t} extract" for t in ("customers", "products", "orders", "order_items"))
    with _luigid_running(luigid, port, log):
        for attempt in (1, 2, 3):  # one after the other, seconds apart
            done = mozart(run)
            assert done.returncode == 30, (attempt, done.stdout + done.stderr)
            failed = [line for line in done.stdout.splitlines() if f" {day} extract FAILED: " in line]
            assert len(failed) == 4 and all(line.startswith(f"{tenant}.") for line in failed), done.stdout
        assert sorted(t.label for t in client.disabled()) == extracts  # disabled after the third failure
        done = mozart(run)
        assert done.returncode == 25, done.stdout  # "not run": nothing failed, the disabled tasks did not run
        assert " extract FAILED: " not in done.stdout
        assert f"DISABLED by luigid after repeated failures (not run until re-enabled): {tenant}." in done.stdout
        assert f"after fixing the cause: mozart enable --tenant {tenant} --date {day}" in done.stdout
    with _luigid_running(luigid, port, log):  # restarted: still disabled
        assert sorted(t.label for t in client.disabled()) == extracts
        shutil.move(aside, source)  # the cause fixed
        done = mozart(enable)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            sorted(
                line.removeprefix("re-enabled: ").removesuffix(f" {day}")
                for line in done.stdout.splitlines()
                if line.startswith("re-enabled: ")
            )
            == extracts
        )
        assert client.disabled() == []
        done = mozart(run)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{tenant} (dbt build) {day} " in done.stdout
    started = time.monotonic()
    done = mozart(run)  # luigid is gone
    assert done.returncode == 45 and time.monotonic() - started < 20, done.stdout + done.stderr
    assert f"luigid at http://127.0.0.1:{port} did not answer" in done.stderr
