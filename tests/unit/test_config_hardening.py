"""Config hardening: duplicate keys, strict enumerated keys, column names, no interpolated value in a
message, shell-style ``${VAR:-x}`` / ``${VAR-x}`` and a data folder whose name needs URL quoting."""

from __future__ import annotations

from pathlib import Path

import pytest

from mozart_luigi.config import load_config
from mozart_luigi.errors import ConfigError

pytestmark = pytest.mark.unit

TABLES = """
tables:
  orders: {mode: incremental, cursor: updated_at, primary_key: [order_id]}
  customers: {mode: full}
"""
SQLITE = "{kind: sqlite, path: /tmp/x.sqlite}"


def write(tmp_path: Path, tenants: str, tables: str = TABLES) -> Path:
    (tmp_path / "tenants.yaml").write_text(tenants, encoding="utf-8")
    (tmp_path / "tables.yaml").write_text(tables, encoding="utf-8")
    return tmp_path


def problems(tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env=env or {})
    return [str(p) for p in info.value.problems]


# ------------------------------------------------------------------------------------ duplicate keys


def test_duplicate_keys_at_every_level_are_reported_with_file_line_and_key(tmp_path: Path) -> None:
    write(
        tmp_path,
        """tenants:
  acme:
    source:
      kind: postgresql
      host: db
      port: 5432
      database: acme
      user: r
      port: 6543
    max_connections: 2
  acme:
    source: {kind: sqlite, path: /tmp/a.sqlite}
defaults: {max_connections: 1}
defaults: {max_connections: 4}
""",
        """tables:
  orders: {mode: full, mode: incremental, cursor: updated_at}
  customers: {mode: full, colums: [a]}
""",
    )
    found = problems(tmp_path)
    assert "tenants.yaml: tenants.acme.source.port: duplicate key 'port' on line 9 (first on line 6)" in (
        " | ".join(found)
    ), found
    expected = [
        "tenants.yaml: tenants.acme: duplicate key 'acme' on line 11 (first on line 2)",
        "tenants.yaml: defaults: duplicate key 'defaults' on line 14 (first on line 13)",
        "tables.yaml: tables.orders.mode: duplicate key 'mode' on line 2 (first on line 2)",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), (text, found)
    # reported together with the other problems of the files, not instead of them
    assert any(p.startswith("tables.yaml: tables.customers.colums: unknown key") for p in found), found


def test_a_yaml_merge_key_override_is_not_a_duplicate(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
tenants:
  north:
    source: &base {kind: sqlite, path: /tmp/north.sqlite}
  south:
    source: {<<: *base, path: /tmp/south.sqlite}
""",
    )
    config = load_config(tmp_path, env={})
    assert config.tenant("south").source.path == "/tmp/south.sqlite"
    assert config.tenant("north").source.path == "/tmp/north.sqlite"


# --------------------------------------------------------------------------------- ${VAR:-default}


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${V:-dflt}", {}, "dflt"),
        ("${V:-dflt}", {"V": ""}, "dflt"),
        ("${V:-dflt}", {"V": "set"}, "set"),
        ("${V-dflt}", {}, "dflt"),
        ("${V-dflt}", {"V": ""}, ""),
        ("${V-dflt}", {"V": "set"}, "set"),
        ("${V:dflt}", {}, "dflt"),
        ("${V:dflt}", {"V": ""}, ""),
        ("${V:dflt}", {"V": "set"}, "set"),
        ("${V:-}", {}, ""),
        ("${V-}", {}, ""),
        ("${V:}", {}, ""),
        ("${V:-a-b:c}", {}, "a-b:c"),
        ("x${V}y", {"V": ""}, "xy"),
        ("$${V:-d}", {}, "${V:-d}"),
    ],
)
def test_shell_style_defaults(text: str, env: dict[str, str], expected: str) -> None:
    from mozart_luigi.interpolate import interpolate

    found: list = []
    assert interpolate(text, env, file="tenants.yaml", path="k", problems=found) == expected
    assert found == []


def test_shell_style_default_in_tenants_yaml(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
tenants:
  acme:
    source: {kind: postgresql, host: "${DB_HOST:-localhost}", port: "${DB_PORT-5432}", database: acme, user: r}
""",
    )
    source = load_config(tmp_path, env={"DB_HOST": ""}).tenant("acme").source
    assert (source.host, source.port) == ("localhost", 5432)


# ------------------------------------------------------------------ no interpolated value in a message

CANARY = "canary-Qx7-s3cr3t"
CANARY_TENANTS = """
tenants:
  acme:
    max_connections: "${CANARY}"
    tables: ["${CANARY}"]
    source:
      kind: postgresql
      host: db
      port: "${CANARY}"
      database: acme
      user: r
      password: "${CANARY}"
      connect_timeout: "x${CANARY}"
      native: "${CANARY}"
  globex:
    source: {kind: "${CANARY:-mysql}", host: db, database: g, user: u}
"""
CANARY_TABLES = """
tables:
  orders: {mode: "${CANARY}"}
"""


def test_no_problem_message_shows_an_interpolated_value(tmp_path: Path) -> None:
    write(tmp_path, CANARY_TENANTS, CANARY_TABLES)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"CANARY": CANARY})
    found = [str(p) for p in info.value.problems]
    expected = [
        "tenants.yaml: tenants.acme.max_connections: must be an integer, got '${CANARY}'",
        "tenants.yaml: tenants.acme.tables: table '${CANARY}' (value hidden) is not defined in tables.yaml",
        "tenants.yaml: tenants.acme.source.port: must be an integer, got '${CANARY}'",
        "tenants.yaml: tenants.acme.source.connect_timeout: must be an integer, got 'x${CANARY}'",
        "tenants.yaml: tenants.acme.source.native: must be true or false, got '${CANARY}'",
        "tenants.yaml: tenants.globex.source.kind: must be one of",
        "tables.yaml: tables.orders.mode: must be one of ('full', 'incremental'), got '${CANARY}'",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), (text, found)
    assert any("got '${CANARY:-mysql}'" in p for p in found), found
    assert not [p for p in found if CANARY in p]
    assert CANARY not in str(info.value) and CANARY not in repr(info.value)


def test_a_literal_value_is_still_shown(tmp_path: Path) -> None:
    write(tmp_path, "tenants:\n  acme:\n    source: {kind: postgresql, url: 'x://', port: eighty}\n")
    assert problems(tmp_path) == ["tenants.yaml: tenants.acme.source.port: must be an integer, got 'eighty'"]


def test_config_objects_hold_plain_strings(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
tenants:
  acme:
    profiles: ["${P}"]
    source: {kind: postgresql, host: "${V}", database: "${V}", user: "${V}", schema: "${V}", query: {a: "${V}"}}
""",
        'tables:\n  orders: {mode: "${M}", cursor: "${V}", primary_key: ["${V}"], source_schema: "${V}"}\n',
    )
    config = load_config(tmp_path, env={"V": "v", "M": "incremental", "P": "local"})
    source, table = config.tenant("acme").source, config.table("acme", "orders")
    values = [
        source.host,
        source.database,
        source.user,
        source.schema,
        *source.query[0],
        table.mode,
        table.cursor,
        *table.primary_key,
        table.source_schema,
        *config.tenant("acme").profiles,
    ]
    assert [type(v) for v in values] == [str] * len(values) and set(values) - {"a"} <= {"v", "incremental", "local"}


# ------------------------------------------------------------------------- enabled, profiles, query


def tenant_with(line: str) -> str:
    return f"tenants:\n  acme:\n    {line}\n    source: {SQLITE}\n"


@pytest.mark.parametrize(
    ("value", "env", "active"),
    [
        ("true", {}, True),
        ("false", {}, False),
        ("yes", {}, True),
        ('"TRUE"', {}, True),
        ('"False"', {}, False),
        ('"${E}"', {"E": "true"}, True),
        ('"${E}"', {"E": "FALSE"}, False),
        ('"${E:-false}"', {"E": ""}, False),
    ],
)
def test_enabled_accepts_booleans_and_true_false_strings(
    tmp_path: Path, value: str, env: dict[str, str], active: bool
) -> None:
    write(tmp_path, tenant_with(f"enabled: {value}"))
    assert list(load_config(tmp_path, env=env).tenants) == (["acme"] if active else [])


@pytest.mark.parametrize(
    ("value", "env", "shown"),
    [
        ("maybe", {}, "'maybe'"),
        ('"yes"', {}, "'yes'"),
        ("1", {}, "1"),
        ('"0"', {}, "'0'"),
        ('""', {}, "''"),
        ("", {}, "None"),
        ('"${E}"', {"E": "1"}, "'${E}' (value hidden)"),
        ('"${E}"', {"E": ""}, "'${E}' (value hidden)"),
    ],
)
def test_enabled_refuses_anything_else(tmp_path: Path, value: str, env: dict[str, str], shown: str) -> None:
    write(tmp_path, tenant_with(f"enabled: {value}"))
    assert problems(tmp_path, env) == [f"tenants.yaml: tenants.acme.enabled: must be true or false, got {shown}"]


def test_enabled_from_an_unset_variable_is_one_problem(tmp_path: Path) -> None:
    write(tmp_path, tenant_with('enabled: "${E}"'))
    (message,) = problems(tmp_path)
    assert message.startswith("tenants.yaml: tenants.acme.enabled: env var E is not set")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[locl]", "tenants.yaml: tenants.acme.profiles: unknown profile 'locl' (known: local, stack)"),
        ("[local, Stack]", "tenants.yaml: tenants.acme.profiles: unknown profile 'Stack' (known: local, stack)"),
        ("locl", "tenants.yaml: tenants.acme.profiles: unknown profile 'locl' (known: local, stack)"),
        (
            '["${P}"]',
            "tenants.yaml: tenants.acme.profiles: unknown profile '${P}' (value hidden) (known: local, stack)",
        ),
        ("5", "tenants.yaml: tenants.acme.profiles: must be a string or a list of strings"),
    ],
)
def test_profiles_must_be_known_profiles(tmp_path: Path, value: str, problem: str) -> None:
    write(tmp_path, tenant_with(f"profiles: {value}"))
    assert problems(tmp_path, {"P": "prod"}) == [problem]


def test_known_profiles_still_select_tenants(tmp_path: Path) -> None:
    write(tmp_path, tenant_with('profiles: ["${P}"]'))
    assert list(load_config(tmp_path, env={"P": "local"}).tenants) == ["acme"]
    assert list(load_config(tmp_path, env={"P": "stack"}).tenants) == []
    assert load_config(tmp_path, env={"P": "local"}).tenant("acme").profiles == ("local",)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[1, 2]", "tenants.yaml: tenants.acme.source.query: must be a mapping of string -> string"),
        ("sslmode=require", "tenants.yaml: tenants.acme.source.query: must be a mapping of string -> string"),
        ("{connect_timeout: 5}", "tenants.yaml: tenants.acme.source.query.connect_timeout: must be a string"),
        ("{opts: [a]}", "tenants.yaml: tenants.acme.source.query.opts: must be a string"),
        ("{1: a}", "tenants.yaml: tenants.acme.source.query.1: the parameter name must be a string"),
    ],
)
def test_source_query_must_map_strings_to_strings(tmp_path: Path, value: str, problem: str) -> None:
    write(tmp_path, f"tenants:\n  acme:\n    source: {{kind: postgresql, url: 'x://', query: {value}}}\n")
    (message,) = problems(tmp_path)
    assert message.startswith(problem), message


def test_source_query_of_strings_is_kept(tmp_path: Path) -> None:
    source = "{kind: postgresql, url: 'x://', query: {sslmode: require, connect_timeout: '5'}}"
    write(tmp_path, f"tenants:\n  acme:\n    source: {source}\n")
    query = load_config(tmp_path, env={}).tenant("acme").source.query
    assert query == (("connect_timeout", "5"), ("sslmode", "require"))


# ------------------------------------------------------------------------------------- column names

GOOD_COLUMNS = [
    "order_id",
    "a`b",
    "Updated At",
    "Unit Price",
    "select",
    "from",
    "where",
    "x-y",
    "$amount",
    "row#",
    "Größe",
    "名前",
    "a  b",
    "2nd",
]
BAD_COLUMNS = [
    "order_id; drop table x",
    "",
    " id",
    "id ",
    "a.b",
    'a"b',
    "a'b",
    "a\x00b",
    "a\nb",
    "a\tb",
    "a\x7fb",
    "a(b)",
    "a/b",
    "a*b",
    "a,b",
    "a=b",
    "a[b]",
    "a%b",
]


@pytest.mark.parametrize("key", ["primary_key", "include", "cursor"])
def test_hostile_but_legal_column_names_are_accepted(tmp_path: Path, key: str) -> None:
    if key == "cursor":
        bodies = [{"mode": "incremental", "cursor": name} for name in GOOD_COLUMNS]
    else:
        bodies = [{"mode": "full", key: [name]} for name in GOOD_COLUMNS]
    tables = {"tables": {f"t{i}": body for i, body in enumerate(bodies)}}
    write(tmp_path, tenant_with("description: x"), yaml_dump(tables))
    config = load_config(tmp_path, env={})
    found = [getattr(config.tables[f"t{i}"], key) for i in range(len(GOOD_COLUMNS))]
    assert found == [name if key == "cursor" else (name,) for name in GOOD_COLUMNS]


@pytest.mark.parametrize("key", ["primary_key", "include", "exclude", "cursor"])
@pytest.mark.parametrize("name", BAD_COLUMNS)
def test_invalid_column_names_are_refused(tmp_path: Path, key: str, name: str) -> None:
    value = name if key == "cursor" else ["ok", name]
    write(tmp_path, tenant_with("description: x"), yaml_dump({"tables": {"orders": {"mode": "full", key: value}}}))
    (message,) = problems(tmp_path)
    assert message == (
        f"tables.yaml: tables.orders.{key}: invalid column name {name!r}: use letters, digits, spaces "
        "(not first or last), _ - $ # only"
    )


def test_the_injection_example_names_file_table_and_key(tmp_path: Path) -> None:
    write(
        tmp_path,
        tenant_with("description: x"),
        "tables:\n  orders: {mode: full, primary_key: ['order_id; drop table x']}\n",
    )
    (message,) = problems(tmp_path)
    assert message.startswith("tables.yaml: tables.orders.primary_key: invalid column name 'order_id; drop table x'")


def test_a_cursor_must_be_a_string(tmp_path: Path) -> None:
    write(tmp_path, tenant_with("description: x"), "tables:\n  orders: {mode: incremental, cursor: [a, b]}\n")
    assert problems(tmp_path) == ["tables.yaml: tables.orders.cursor: must be a column name (a string)"]


def yaml_dump(data: object) -> str:
    import yaml

    return yaml.safe_dump(data, allow_unicode=True)


def test_enabled_profiles_and_column_problems_never_show_an_interpolated_value(tmp_path: Path) -> None:
    secret = "pw;Zq81-x9"  # neither a boolean, nor a profile, nor a column name
    write(
        tmp_path,
        f"""
tenants:
  a: {{enabled: "${{S}}", source: {SQLITE}}}
  b: {{profiles: ["${{S}}"], source: {SQLITE}}}
""",
        'tables:\n  orders: {mode: incremental, cursor: "${S}", primary_key: ["${S}"], exclude: ["x${S}"]}\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={"S": secret})
    found = [str(p) for p in info.value.problems]
    assert found == [
        "tables.yaml: tables.orders.cursor: invalid column name '${S}' (value hidden): use letters, digits, "
        "spaces (not first or last), _ - $ # only",
        "tables.yaml: tables.orders.exclude: invalid column name 'x${S}' (value hidden): use letters, digits, "
        "spaces (not first or last), _ - $ # only",
        "tables.yaml: tables.orders.primary_key: invalid column name '${S}' (value hidden): use letters, digits, "
        "spaces (not first or last), _ - $ # only",
        "tenants.yaml: tenants.a.enabled: must be true or false, got '${S}' (value hidden)",
        "tenants.yaml: tenants.b.profiles: unknown profile '${S}' (value hidden) (known: local, stack)",
    ]
    assert secret not in str(info.value) and secret not in repr(info.value)


# ------------------------------------------------------------------ a data folder that needs quoting


@pytest.mark.parametrize("folder", ["my data", "data[1]", "data#2", "100%data", "why?", "a b[c]#d%e?f%20g"])
def test_the_local_lake_lies_exactly_under_a_data_dir_with_special_characters(tmp_path: Path, folder: str) -> None:
    import datetime as dt

    from mozart_luigi.lake import Lake
    from mozart_luigi.settings import Settings

    data_dir = tmp_path / folder
    found: list = []
    settings = Settings.from_env({"MOZART_DATA_DIR": str(data_dir)}, found)
    assert found == [] and settings.data_dir == data_dir
    lake = Lake.from_settings(settings)
    date_url = lake.date_url("acme", "orders", dt.date(2026, 11, 25))
    assert lake.fs_path(date_url) == str(data_dir / "lake" / "raw" / "acme" / "orders" / "2026-11-25")
    lake.write_text_atomic(f"{date_url}/probe.txt", "x")
    assert (data_dir / "lake" / "raw" / "acme" / "orders" / "2026-11-25" / "probe.txt").read_text() == "x"
    assert lake.read_text(f"{date_url}/probe.txt") == "x" and lake.list_files(date_url) == ["probe.txt"]
    assert [p.name for p in tmp_path.iterdir()] == [folder]  # nothing landed beside the data folder


ISSUE_TENANTS = """
tenants:
  acme:
    source:
      kind: postgresql
      host: ${MOZART_PG_HOST:-127.0.0.1}
      port: ${MOZART_PG_PORT:-55432}
      database: acme
      user: acme_reader
      password: ${ACME_DB_PASSWORD:-changeme}
"""


@pytest.mark.parametrize(
    "env", [{}, {"MOZART_PG_HOST": "", "MOZART_PG_PORT": "", "ACME_DB_PASSWORD": ""}], ids=["unset", "empty"]
)
def test_issue_case_validate_shows_the_shell_default_never_a_leading_dash(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case (the syntax of docker-compose.yml): ``mozart validate`` printed a URL with the host
    ``-127.0.0.1`` and exit 0, and the password would have been ``-changeme``. Now the shell meaning: the
    default itself, for an unset and for an empty variable."""
    from mozart_luigi.cli import main

    write(tmp_path, ISSUE_TENANTS)
    source = load_config(tmp_path, env=env).tenant("acme").source
    assert (source.host, source.port) == ("127.0.0.1", 55432)
    assert source.password is not None and source.password.reveal() == "changeme"
    for name in ("MOZART_PG_HOST", "MOZART_PG_PORT", "ACME_DB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MOZART_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("MOZART_PROFILE", "local")
    monkeypatch.setenv("MOZART_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no .env of the repository
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "postgresql://acme_reader@127.0.0.1:55432/acme" in out
    assert "-127.0.0.1" not in out and "changeme" not in out
