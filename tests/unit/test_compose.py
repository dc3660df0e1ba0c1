"""docker-compose.yml and the native stack (scripts/stack) describe the same stack.

- every host path that compose bind-mounts exists in the repo;
- every ${ENV:NAME} used by the Trino catalog files is provided both by compose's
  trino service and by `scripts/stack env` (which must work with no service running);
- published ports are loopback-only and default to the same ports as the native stack;
- `scripts/stack env` output survives `eval` with awkward passwords.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CATALOG_DIR = REPO / "docker" / "trino" / "catalog"
STACK = REPO / "scripts" / "stack"

ENV_REF = re.compile(r"\$\{ENV:([A-Za-z_][A-Za-z0-9_]*)\}")
PORT_SPEC = re.compile(r"^(?P<host>[^:]+):\$\{(?P<var>[A-Z0-9_]+):-(?P<default>\d+)\}:(?P<container>\d+)$")
STACK_VARS = ("ACME_DB_PASSWORD", "GLOBEX_DB_PASSWORD")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without any stack override, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOZART_") and k not in STACK_VARS}
    env.update(extra)
    return env


def stack_env(**extra: str) -> dict[str, str]:
    """Variables exported by `scripts/stack env`, as bash sees them after eval."""
    script = 'eval "$("$0" env)" && env -0'
    out = subprocess.run(
        ["bash", "-c", script, str(STACK)],
        capture_output=True,
        check=True,
        env=clean_env(**extra),
        timeout=60,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def exported_names() -> set[str]:
    out = subprocess.run(
        [str(STACK), "env"], capture_output=True, text=True, check=True, env=clean_env(), timeout=60
    ).stdout
    names = set()
    for line in out.splitlines():
        assert line.startswith("export "), line
        names.add(line[len("export ") :].split("=", 1)[0])
    return names


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def env_mapping(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return env


def catalog_env_names() -> set[str]:
    names: set[str] = set()
    for path in CATALOG_DIR.glob("*.properties"):
        names.update(ENV_REF.findall(path.read_text()))
    return names


def test_catalog_files_use_env_names():
    expected = {"MOZART_ICEBERG_REST_URI", "MOZART_S3_ENDPOINT_URL", "MOZART_S3_ACCESS_KEY"}
    assert expected <= catalog_env_names()


def test_every_bind_mount_exists(compose):
    missing = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source = volume.get("source", "") if volume.get("type") == "bind" else ""
            else:
                source = volume.split(":", 1)[0]
            if source.startswith((".", "/")) and not (REPO / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"bind-mounted host paths missing: {missing}"


def test_compose_trino_provides_catalog_env(compose):
    provided = set(env_mapping(compose["services"]["trino"]))
    assert catalog_env_names() <= provided, catalog_env_names() - provided


def test_stack_env_provides_catalog_env():
    provided = exported_names()
    assert catalog_env_names() <= provided, catalog_env_names() - provided


def test_stack_env_exports_the_documented_names():
    expected = {
        "MOZART_PROFILE",
        "MOZART_LAKE_URL",
        "MOZART_S3_ENDPOINT_URL",
        "MOZART_S3_ACCESS_KEY",
        "MOZART_S3_SECRET_KEY",
        "MOZART_S3_REGION",
        "MOZART_ICEBERG_REST_URI",
        "MOZART_TRINO_HOST",
        "MOZART_TRINO_PORT",
        "MOZART_TRINO_USER",
        "MOZART_PG_HOST",
        "MOZART_PG_PORT",
        "MOZART_PG_USER",
        "MOZART_PG_PASSWORD",
        "MOZART_MYSQL_HOST",
        "MOZART_MYSQL_PORT",
        "MOZART_MYSQL_USER",
        "MOZART_MYSQL_PASSWORD",
        "ACME_DB_PASSWORD",
        "GLOBEX_DB_PASSWORD",
        "MOZART_TEST_PG_URL",
        "MOZART_TEST_MYSQL_URL",
    }
    assert expected <= exported_names()


def test_published_ports_are_loopback_and_match_native_defaults(compose):
    defaults = stack_env()
    native_port = {
        "MOZART_S3_PORT": defaults["MOZART_S3_ENDPOINT_URL"].rsplit(":", 1)[1],
        "MOZART_ICEBERG_REST_PORT": defaults["MOZART_ICEBERG_REST_URI"].rsplit(":", 1)[1],
        "MOZART_TRINO_PORT": defaults["MOZART_TRINO_PORT"],
        "MOZART_PG_PORT": defaults["MOZART_PG_PORT"],
        "MOZART_MYSQL_PORT": defaults["MOZART_MYSQL_PORT"],
    }
    seen = set()
    for name, service in compose["services"].items():
        for spec in service.get("ports", []):
            match = PORT_SPEC.match(str(spec))
            assert match, f"{name}: port {spec!r} must look like 127.0.0.1:${{VAR:-default}}:port"
            assert match["host"] == "127.0.0.1", f"{name}: {spec} is not loopback-only"
            if match["var"] in native_port:
                assert match["default"] == native_port[match["var"]], f"{name}: {spec}"
                seen.add(match["var"])
    assert seen == set(native_port)


def test_stack_env_defaults_and_url_encoding():
    password = "p@ss w:rd/%'\"$x"
    env = stack_env(MOZART_PG_PASSWORD=password, MOZART_MYSQL_PORT="3307")
    assert env["MOZART_PG_PASSWORD"] == password
    assert env["MOZART_TEST_PG_URL"] == (
        "postgresql+psycopg2://mozart:p%40ss%20w%3Ard%2F%25%27%22%24x@127.0.0.1:55432/mozart_test"
    )
    assert env["MOZART_TEST_MYSQL_URL"] == "mysql+pymysql://mozart:mozart-dev@127.0.0.1:3307/mozart_test"
    assert env["MOZART_PROFILE"] == "stack"
    assert env["MOZART_LAKE_URL"] == "s3://raw"
    assert env["MOZART_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"


# ------------------------------------------------------------------ Trino as a cluster (profile `cluster`)
CLUSTER_DIR = REPO / "docker" / "trino" / "cluster"


def properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def mounts(service: dict) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])}


def test_cluster_services_are_opt_in_and_the_default_trino_is_untouched(compose):
    services = compose["services"]
    assert services["trino-coordinator"]["profiles"] == ["cluster"]
    assert services["trino-worker"]["profiles"] == ["cluster"]
    assert not any(
        "profiles" in services[name] for name in services if name not in ("trino-coordinator", "trino-worker")
    )
    assert mounts(services["trino"])["/etc/trino/config.properties"] == "./docker/trino/etc/config.properties"
    assert "ports" not in services["trino-worker"]  # scalable: `--scale trino-worker=N`
    [port] = services["trino-coordinator"]["ports"]
    native = re.search(r"MOZART_TRINO_CLUSTER_PORT:=(\d+)", (REPO / "scripts/stack_lib/common.sh").read_text())
    assert native and port == f"127.0.0.1:${{MOZART_TRINO_CLUSTER_PORT:-{native[1]}}}:8080"


def test_cluster_coordinator_schedules_nothing_and_workers_find_it(compose):
    services = compose["services"]
    coordinator, worker = mounts(services["trino-coordinator"]), mounts(services["trino-worker"])
    assert coordinator["/etc/trino/config.properties"] == "./docker/trino/cluster/coordinator.properties"
    assert worker["/etc/trino/config.properties"] == "./docker/trino/cluster/worker.properties"
    for mount in (coordinator, worker):
        assert mount["/etc/trino/catalog"] == "./docker/trino/catalog"  # the same catalogs as `trino`
        assert mount["/etc/trino/node.properties"] == "./docker/trino/cluster/node.properties"
        assert mount["/etc/trino/jvm.config"] == "./docker/trino/cluster/jvm.config"
    for name in ("trino-coordinator", "trino-worker"):
        provided = set(env_mapping(services[name]))
        assert catalog_env_names() <= provided, (name, catalog_env_names() - provided)
        assert services[name]["image"] == services["trino"]["image"]
    coord = properties(CLUSTER_DIR / "coordinator.properties")
    assert coord["coordinator"] == "true" and coord["node-scheduler.include-coordinator"] == "false"
    work = properties(CLUSTER_DIR / "worker.properties")
    assert work["coordinator"] == "false"
    assert work["discovery.uri"] == f"http://trino-coordinator:{coord['http-server.http.port']}"
    assert "node.id" not in properties(CLUSTER_DIR / "node.properties")  # scaled workers need distinct ids
    assert "-Xmx1G" in (CLUSTER_DIR / "jvm.config").read_text().splitlines()
    health = " ".join(services["trino-coordinator"]["healthcheck"]["test"])
    assert "coordinator = false AND state = 'active'" in health


def test_native_cluster_etc_comes_from_the_same_files(tmp_path):
    """scripts/stack's trino-cluster writes each node's etc/ from docker/trino/cluster/ with its own ports."""
    script = 'source "$0/common.sh"; source "$0/deps.sh"; source "$0/trino.sh"; trino_cluster_write_etc'
    env = clean_env(
        MOZART_STACK_DIR=str(tmp_path),
        MOZART_TRINO_WORKERS="2",
        MOZART_TRINO_CLUSTER_PORT="18085",
        MOZART_TRINO_CLUSTER_WORKER_PORT="18086",
        CI="1",
    )
    subprocess.run(["bash", "-c", script, str(REPO / "scripts" / "stack_lib")], env=env, check=True, timeout=60)
    root = tmp_path / "trino-cluster"
    coord = properties(root / "etc" / "config.properties")
    assert coord["coordinator"] == "true" and coord["node-scheduler.include-coordinator"] == "false"
    assert (coord["http-server.http.port"], coord["discovery.uri"]) == ("18085", "http://127.0.0.1:18085")
    ids = {properties(root / "etc" / "node.properties")["node.id"]}
    for i, port in ((1, "18086"), (2, "18087")):
        node = root / f"worker-{i}"
        config = properties(node / "etc" / "config.properties")
        assert config["coordinator"] == "false" and config["http-server.http.port"] == port
        assert config["discovery.uri"] == "http://127.0.0.1:18085"
        ids.add(properties(node / "etc" / "node.properties")["node.id"])
        assert properties(node / "etc" / "node.properties")["node.data-dir"] == str(node / "data")
        assert sorted(p.name for p in (node / "etc" / "catalog").iterdir()) == sorted(
            p.name for p in CATALOG_DIR.glob("*.properties")
        )
    assert len(ids) == 3
