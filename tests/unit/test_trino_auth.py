"""Authenticated, encrypted Trino: the settings (https, password or JWT, CA bundle) and their validation; the
connection each gives (BasicAuthentication / JWTAuthentication, https, the CA bundle honoured even where
REQUESTS_CA_BUNDLE is set); dbt's environment and profile; and the secrets never rendering anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import trino
import yaml

from mozart_luigi.dbt_runner import build_command, dbt_env, project_dir, work_dir
from mozart_luigi.errors import ConfigError, ConfigProblem
from mozart_luigi.settings import Settings
from mozart_luigi.warehouse.trino import TrinoWarehouse

pytestmark = pytest.mark.unit
PASSWORD = "c4n4ry-Trino-Pw-7e1f"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtb3phcnQifQ.c4n4ry-signature-jwt"


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


def _settings(tmp_path: Path, **env: str) -> tuple[Settings, list[ConfigProblem]]:
    problems: list[ConfigProblem] = []
    base = {"MOZART_DATA_DIR": str(tmp_path / "data"), **env}
    return Settings.from_env(base, problems), problems


def _keys(problems: list[ConfigProblem]) -> list[str]:
    return [p.key for p in problems]


# ------------------------------------------------------------------------------------------- settings


def test_defaults_are_the_plain_http_dev_stack(tmp_path: Path) -> None:
    settings, problems = _settings(tmp_path)
    assert problems == []
    assert (settings.trino_http_scheme, settings.trino_password, settings.trino_jwt) == ("http", None, None)
    assert settings.trino_verify is True
    assert settings.secrets() == ()


def test_https_with_password_and_ca_bundle(tmp_path: Path, ca_file: Path) -> None:
    settings, problems = _settings(
        tmp_path, MOZART_TRINO_HTTP_SCHEME="HTTPS", MOZART_TRINO_PASSWORD=PASSWORD, MOZART_TRINO_VERIFY=str(ca_file)
    )
    assert problems == []
    assert settings.trino_http_scheme == "https"
    assert settings.trino_password is not None and settings.trino_password.reveal() == PASSWORD
    assert settings.trino_verify == str(ca_file.resolve())
    assert settings.trino_password in settings.secrets()


@pytest.mark.parametrize(
    ("raw", "verify"), [("", True), ("true", True), ("TRUE", True), ("false", False), ("False", False), ("0", False)]
)
def test_verify_words(tmp_path: Path, raw: str, verify: bool) -> None:
    settings, problems = _settings(tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_VERIFY=raw)
    assert problems == [] and settings.trino_verify is verify


def test_jwt_is_a_secret_too(tmp_path: Path) -> None:
    settings, problems = _settings(tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_JWT=JWT)
    assert problems == []
    assert settings.trino_jwt is not None and settings.trino_jwt in settings.secrets()


@pytest.mark.parametrize("variable", ["MOZART_TRINO_PASSWORD", "MOZART_TRINO_JWT"])
def test_a_credential_over_http_is_refused(tmp_path: Path, variable: str) -> None:
    _, problems = _settings(tmp_path, **{variable: PASSWORD})  # scheme left at its default, http
    assert _keys(problems) == [variable]
    assert "MOZART_TRINO_HTTP_SCHEME=https" in problems[0].message
    assert PASSWORD not in str(ConfigError(problems))


def test_every_trino_problem_is_reported_at_once(tmp_path: Path) -> None:
    _, problems = _settings(
        tmp_path,
        MOZART_TRINO_HTTP_SCHEME="http",
        MOZART_TRINO_PASSWORD=PASSWORD,
        MOZART_TRINO_JWT=JWT,
        MOZART_TRINO_VERIFY=str(tmp_path / "missing.pem"),
    )
    assert _keys(problems) == [
        "MOZART_TRINO_PASSWORD/MOZART_TRINO_JWT",
        "MOZART_TRINO_PASSWORD",
        "MOZART_TRINO_JWT",
        "MOZART_TRINO_VERIFY",
    ]
    text = str(ConfigError(problems))
    assert PASSWORD not in text and JWT not in text
    assert "missing.pem is not a file" in text


def test_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    _, problems = _settings(tmp_path, MOZART_TRINO_HTTP_SCHEME="ftp")
    assert _keys(problems) == ["MOZART_TRINO_HTTP_SCHEME"]


def test_secrets_never_render(tmp_path: Path) -> None:
    password, _ = _settings(tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_PASSWORD=PASSWORD)
    jwt, _ = _settings(tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_JWT=JWT)
    for settings, secret in ((password, PASSWORD), (jwt, JWT)):
        warehouse = TrinoWarehouse.from_settings(settings, tenant="acme")
        for text in (
            repr(settings),
            str(settings),
            f"{settings}",
            repr(warehouse),
            str(vars(warehouse)),
            repr(settings.secrets()),
            warehouse._clean(f"driver said {secret}"),
        ):
            assert secret not in text


# ----------------------------------------------------------------------------------------- connection


def test_password_connection_is_https_with_basic_auth_and_the_ca(tmp_path: Path, ca_file: Path) -> None:
    settings, _ = _settings(
        tmp_path,
        MOZART_TRINO_HTTP_SCHEME="https",
        MOZART_TRINO_PORT="8443",
        MOZART_TRINO_USER="etl",
        MOZART_TRINO_PASSWORD=PASSWORD,
        MOZART_TRINO_VERIFY=str(ca_file),
    )
    connection = TrinoWarehouse.from_settings(settings, tenant="acme")._connection(None)
    assert connection.http_scheme == "https" and connection.port == 8443 and connection.user == "etl"
    assert connection.auth == trino.auth.BasicAuthentication("etl", PASSWORD)
    assert connection._http_session.verify == str(ca_file.resolve())


def test_jwt_connection_sends_a_bearer_token(tmp_path: Path) -> None:
    settings, _ = _settings(tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_JWT=JWT)
    connection = TrinoWarehouse.from_settings(settings)._connection("acme")
    assert connection.http_scheme == "https"
    assert connection.auth == trino.auth.JWTAuthentication(JWT)
    connection.auth.set_http_session(connection._http_session)
    request = connection._http_session.prepare_request(requests.Request("GET", "https://127.0.0.1:8443/v1/info"))
    assert request.headers["Authorization"] == f"Bearer {JWT}"


def test_plain_connection_is_unchanged(tmp_path: Path) -> None:
    settings, _ = _settings(tmp_path)
    connection = TrinoWarehouse.from_settings(settings)._connection("acme")
    assert connection.http_scheme == "http" and connection.auth is None


@pytest.mark.parametrize("verify", ["ca", False])
def test_the_configured_verify_wins_over_requests_ca_bundle(
    tmp_path: Path, ca_file: Path, monkeypatch: pytest.MonkeyPatch, verify: str | bool
) -> None:
    """Plain requests would replace a session's verify with REQUESTS_CA_BUNDLE (psf/requests#3829)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    wanted = str(ca_file.resolve()) if verify == "ca" else False
    settings, _ = _settings(
        tmp_path,
        MOZART_TRINO_HTTP_SCHEME="https",
        MOZART_TRINO_PASSWORD=PASSWORD,
        MOZART_TRINO_VERIFY=str(ca_file) if verify == "ca" else "false",
    )
    session = TrinoWarehouse.from_settings(settings)._connection(None)._http_session
    merged = session.merge_environment_settings("https://127.0.0.1:8443/v1/statement", {}, None, None, None)
    assert merged["verify"] == wanted
    assert (
        requests.Session().merge_environment_settings("https://x/", {}, None, None, None)["verify"]
        == "/etc/ssl/certs/ca-certificates.crt"
    )


def test_default_verify_keeps_the_environment_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/corporate.pem")
    settings, _ = _settings(tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_PASSWORD=PASSWORD)
    session = TrinoWarehouse.from_settings(settings)._connection(None)._http_session
    merged = session.merge_environment_settings("https://127.0.0.1:8443/", {}, None, None, None)
    assert merged["verify"] == "/etc/ssl/certs/corporate.pem"


# ------------------------------------------------------------------------------------------------ dbt


def _render_profile(env: dict[str, str]) -> object:
    """dbt/profiles.yml's trino output rendered by dbt itself with ``env``: dbt-trino's credentials."""
    from dbt.adapters.trino.connections import TrinoCredentialsFactory
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    raw = yaml.safe_load((project_dir() / "profiles.yml").read_text())["mozart"]["outputs"]["trino"]
    set_invocation_context(env)
    data = ProfileRenderer(cli_vars={"tenant": "acme"}).render_data(raw)
    data.pop("type")
    return TrinoCredentialsFactory.from_dict(data)


def test_dbt_gets_the_password_only_as_a_dbt_secret(tmp_path: Path, ca_file: Path) -> None:
    settings, _ = _settings(
        tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_PASSWORD=PASSWORD, MOZART_TRINO_VERIFY=str(ca_file)
    )
    base = {
        "PATH": "/usr/bin",
        "MOZART_TRINO_PASSWORD": PASSWORD,
        "MOZART_TRINO_JWT": "stale",
        "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }
    env = dbt_env(settings, "trino", base)
    assert env["DBT_ENV_SECRET_MOZART_TRINO_PASSWORD"] == PASSWORD
    assert [k for k, v in env.items() if PASSWORD in v] == ["DBT_ENV_SECRET_MOZART_TRINO_PASSWORD"]
    assert "MOZART_TRINO_JWT" not in env and "REQUESTS_CA_BUNDLE" not in env
    assert env["MOZART_DBT_TRINO_METHOD"] == "ldap" and env["MOZART_TRINO_HTTP_SCHEME"] == "https"
    argv = build_command(
        "acme", target="trino", project=project_dir(), work=work_dir(settings, "acme"), executable="dbt"
    )
    assert not any(PASSWORD in arg for arg in argv)
    credentials = _render_profile(env)
    assert type(credentials).__name__ == "TrinoLdapCredentials"
    assert credentials.trino_auth() == trino.auth.BasicAuthentication("mozart", PASSWORD)
    assert credentials.http_scheme.value == "https" and credentials.cert == str(ca_file.resolve())


def test_dbt_gets_the_jwt_as_a_dbt_secret(tmp_path: Path) -> None:
    settings, _ = _settings(
        tmp_path, MOZART_TRINO_HTTP_SCHEME="https", MOZART_TRINO_JWT=JWT, MOZART_TRINO_VERIFY="false"
    )
    env = dbt_env(settings, "trino", {"PATH": "/usr/bin", "MOZART_TRINO_JWT": JWT})
    assert [k for k, v in env.items() if JWT in v] == ["DBT_ENV_SECRET_MOZART_TRINO_JWT"]
    credentials = _render_profile(env)
    assert type(credentials).__name__ == "TrinoJwtCredentials"
    assert credentials.trino_auth() == trino.auth.JWTAuthentication(JWT)
    assert credentials.cert is False


def test_dbt_profile_defaults_stay_plain_http(tmp_path: Path) -> None:
    settings, _ = _settings(tmp_path)
    base = {"PATH": "/usr/bin", "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    env = dbt_env(settings, "trino", base)
    assert env["MOZART_DBT_TRINO_METHOD"] == "none" and env["MOZART_TRINO_HTTP_SCHEME"] == "http"
    assert env["REQUESTS_CA_BUNDLE"] == "/etc/ssl/certs/ca-certificates.crt"  # verify=True: left alone
    assert not any(k.startswith("DBT_ENV_SECRET_") for k in env)
    for credentials in (_render_profile(env), _render_profile({})):  # through mozart, and dbt run by hand
        assert type(credentials).__name__ == "TrinoNoneCredentials"
        assert credentials.http_scheme.value == "http" and credentials.trino_auth() is None
        assert credentials.port == 8080 and credentials.cert is True


def test_the_dbt_profile_names_no_literal_secret() -> None:
    text = (project_dir() / "profiles.yml").read_text()
    outputs = yaml.safe_load(text)["mozart"]["outputs"]["trino"]
    assert outputs["password"] == "{{ env_var('DBT_ENV_SECRET_MOZART_TRINO_PASSWORD', '') }}"
    assert outputs["jwt_token"] == "{{ env_var('DBT_ENV_SECRET_MOZART_TRINO_JWT', '') }}"
    assert json.dumps(outputs).count("DBT_ENV_SECRET_") == 2
