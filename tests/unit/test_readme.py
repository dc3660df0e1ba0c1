"""Every command in the README is checked here: parsed (make targets, mozart and luigi arguments, luigid
options, script paths) and, when cheap, run. Commands that run the pipeline are run for real by
tests/integration/test_demo_e2e.py. A README command no checker knows fails the test."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from luigi.cmdline_parser import CmdlineParser

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


def _stack_env() -> dict[str, str]:
    """What ``eval "$(scripts/stack env)"`` exports (the README runs that before ``--profile stack``)."""
    out = subprocess.run(
        [REPO / "scripts" / "stack", "env"], capture_output=True, text=True, check=True
    ).stdout
    exports = [shlex.split(line)[1] for line in out.splitlines() if line.startswith("export ")]
    return dict(item.split("=", 1) for item in exports)


def _mozart(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    args = _parser().parse_args(argv[1:])  # SystemExit on a wrong option
    if args.command not in ("validate", "plan", "status"):
        return  # run and demo: tests/integration/test_demo_e2e.py
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


def _cron(argv: list[str], env: dict[str, str], tmp: Path) -> None:
    fake = tmp / "fake-mozart"
    fake.write_text(f'#!/usr/bin/env bash\necho "$@" > "{tmp}/called"\n')
    fake.chmod(0o755)
    run_env = {**env, "MOZART_BIN": str(fake), "MOZART_LOG_DIR": str(tmp / "logs")}
    done = subprocess.run(
        [REPO / argv[0], *argv[1:]], env=run_env, capture_output=True, text=True, check=False
    )
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
    out = subprocess.run(
        [REPO / "scripts" / "stack", "env"], capture_output=True, text=True, check=True
    ).stdout
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
