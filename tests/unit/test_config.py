"""Config validation: every problem at once, each naming file, tenant and key; secrets never rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from mozart_luigi.config import get_config, load_config, normalise_name
from mozart_luigi.errors import ConfigError

pytestmark = pytest.mark.unit

TABLES = """
tables:
  orders: {mode: incremental, cursor: updated_at, primary_key: [order_id]}
  customers: {mode: full}
"""


def write(tmp_path: Path, tenants: str, tables: str = TABLES) -> Path:
    (tmp_path / "tenants.yaml").write_text(tenants, encoding="utf-8")
    (tmp_path / "tables.yaml").write_text(tables, encoding="utf-8")
    return tmp_path


def problems(tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env=env or {})
    return [str(p) for p in info.value.problems]


def test_valid_config_loads_through_mozart_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path,
        """
tenants:
  acme:
    source: {kind: postgres, host: db, port: "5432", database: acme, user: r, password: "${ACME_PW}"}
    max_connections: 3
""",
    )
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("ACME_PW", "s3cret-value")
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MOZART_PROFILE", raising=False)
    monkeypatch.delenv("MOZART_LAKE_URL", raising=False)
    config = get_config()
    acme = config.tenant("acme")
    assert acme.source.kind == "postgresql" and acme.source.port == 5432 and acme.max_connections == 3
    assert acme.tables == ("orders", "customers")
    assert config.table("acme", "orders").cursor == "updated_at"
    assert config.settings.lake_url.startswith("file://")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
tenants:
  acme:
    source: {kind: postgresql, host: db, database: acme, user: r, pasword: x}
    max_conections: 2
  Bad-Id:
    source: {kind: sqlite, path: /tmp/x.sqlite}
  system:
    source: {kind: sqlite, path: /tmp/y.sqlite}
  globex:
    source: {kind: mysql, host: db, database: g, user: u, password: "${GLOBEX_DB_PASSWORD}"}
    tables: [orders, nope]
""",
        """
tables:
  orders: {mode: incremental}
  Order Items: {mode: full}
  order_items: {mode: full}
  weird: {mode: sometimes, colums: [a]}
""",
    )
    found = problems(tmp_path)
    expected = [
        "tenants.yaml: tenants.acme.source.pasword: unknown key",
        "tenants.yaml: tenants.acme.max_conections: unknown key",
        "tenants.yaml: tenants.Bad-Id: invalid tenant id 'Bad-Id'",
        "tenants.yaml: tenants.system: tenant id 'system' is reserved",
        "tenants.yaml: tenants.globex.source.password: env var GLOBEX_DB_PASSWORD is not set",
        "tenants.yaml: tenants.globex.tables: table 'nope' is not defined in tables.yaml",
        "tables.yaml: tables.orders.cursor: incremental mode needs a cursor column",
        "tables.yaml: tables.order_items: normalises to 'order_items', like tables.Order Items",
        "tables.yaml: tables.weird.mode: must be one of",
        "tables.yaml: tables.weird.colums: unknown key",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), (text, found)


def test_missing_env_var_names_file_tenant_and_key(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
tenants:
  acme:
    source: {kind: postgresql, host: db, database: acme, user: r, password: "${ACME_DB_PASSWORD}"}
""",
    )
    (message,) = problems(tmp_path)
    assert message.startswith("tenants.yaml: tenants.acme.source.password: env var ACME_DB_PASSWORD is not set")


def test_env_var_with_default_and_in_lists(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
tenants:
  acme:
    source: {kind: postgresql, host: "${DB_HOST:localhost}", database: acme, user: r}
    tables: ["${FIRST_TABLE}", customers]
""",
    )
    config = load_config(tmp_path, env={"FIRST_TABLE": "orders"})
    assert config.tenant("acme").source.host == "localhost"
    assert config.tenant("acme").tables == ("orders", "customers")


@pytest.mark.parametrize("tenant_id", ["1acme", "acme-corp", "Acme", "a" * 41, "information_schema", "mozart_meta"])
def test_invalid_or_reserved_tenant_ids(tmp_path: Path, tenant_id: str) -> None:
    write(tmp_path, f"tenants:\n  {tenant_id}:\n    source: {{kind: sqlite, path: /tmp/x.sqlite}}\n")
    (message,) = problems(tmp_path)
    assert f"tenants.{tenant_id}" in message and ("invalid tenant id" in message or "reserved" in message)


def test_table_names_normalise_for_lake_paths() -> None:
    assert normalise_name("Order Items") == "order_items"
    assert normalise_name("select") == "select"
    assert normalise_name("2024 Sales") == "t_2024_sales"


def test_secrets_never_in_repr_or_str_of_configs(tmp_path: Path) -> None:
    password, url_secret = "pw-Zq81x", "url-pw-77Yq"
    write(
        tmp_path,
        """
tenants:
  acme:
    source: {kind: postgresql, host: db, database: acme, user: r, password: "${PW}"}
  globex:
    source: {kind: mysql, url: "mysql+pymysql://u:${URL_PW}@db:3306/globex"}
""",
    )
    env = {
        "PW": password,
        "URL_PW": url_secret,
        "MOZART_S3_SECRET_KEY": "s3-secret-991",
        "MOZART_S3_ACCESS_KEY": "ak",
        "MOZART_LAKE_URL": "s3://raw",
    }
    config = load_config(tmp_path, env=env)
    rendered = " ".join(
        [
            repr(config),
            str(config),
            repr(config.tenants),
            str(config.settings),
            config.tenant("acme").source.describe(),
            config.tenant("globex").source.describe(),
        ]
    )
    for secret in (password, url_secret, "s3-secret-991"):
        assert secret not in rendered
    assert config.tenant("acme").source.password.reveal() == password


def test_other_profile_tenants_are_not_interpolated(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
tenants:
  acme:
    profiles: [stack]
    source: {kind: postgresql, host: db, database: acme, user: r, password: "${UNSET_PW}"}
  demo:
    profiles: [local]
    source: {kind: sqlite, path: /tmp/demo.sqlite}
""",
    )
    config = load_config(tmp_path, env={"MOZART_PROFILE": "local"})
    assert list(config.tenants) == ["demo"]
    with pytest.raises(ConfigError, match="unknown tenant in profile 'local'"):
        config.tenant("acme")


def test_unknown_table_for_tenant_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "tenants:\n  demo:\n    source: {kind: sqlite, path: /tmp/x.sqlite}\n    tables: [orders]\n")
    config = load_config(tmp_path, env={})
    with pytest.raises(ConfigError, match="table 'customers' is not configured"):
        config.table("demo", "customers")


def test_shipped_config_validates(repo_root: Path) -> None:
    env = {
        "ACME_DB_PASSWORD": "x",
        "GLOBEX_DB_PASSWORD": "y",
        "MOZART_PROFILE": "stack",
        "MOZART_S3_ACCESS_KEY": "a",
        "MOZART_S3_SECRET_KEY": "b",
    }
    stack = load_config(repo_root / "config", env=env)
    assert {"acme", "globex"} <= set(stack.tenants)
    local = load_config(repo_root / "config", env={})
    assert all(t.source.kind == "sqlite" for t in local.tenants.values())


@pytest.mark.parametrize(
    ("value", "days", "problem"),
    [
        (None, 7, None),
        ("0", 0, None),
        ("30", 30, None),
        ("-1", 7, "must be >= 0"),
        ("a week", 7, "must be an integer, got 'a week'"),
    ],
)
def test_snapshot_retention_setting(value, days, problem):
    from mozart_luigi.settings import Settings

    problems: list = []
    env = {} if value is None else {"MOZART_SNAPSHOT_RETENTION_DAYS": value}
    assert Settings.from_env(env, problems).snapshot_retention_days == days
    assert [p.message for p in problems if p.key == "MOZART_SNAPSHOT_RETENTION_DAYS"] == ([problem] if problem else [])


@pytest.mark.parametrize(
    ("value", "on", "problem"),
    [
        (None, True, None),
        ("", True, None),
        ("0", False, None),
        ("off", False, None),
        ("YES", True, None),
        ("maybe", True, "must be 1/true/yes/on or 0/false/no/off"),
    ],
)
def test_prestage_setting(value, on, problem):
    from mozart_luigi.settings import Settings

    problems: list = []
    env = {} if value is None else {"MOZART_PRESTAGE": value}
    assert Settings.from_env(env, problems).prestage is on
    assert [p.message for p in problems if p.key == "MOZART_PRESTAGE"] == ([problem] if problem else [])
