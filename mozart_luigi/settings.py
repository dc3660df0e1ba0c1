"""Runtime settings of a profile, from the environment (``.env`` is read first by ``load_config``).

| variable | default | meaning |
|---|---|---|
| MOZART_PROFILE | local | ``local`` (SQLite sources, local lake, DuckDB) or ``stack`` (S3, Trino + Iceberg) |
| MOZART_DATA_DIR | ./.mozart | local profile: lake, DuckDB file, demo sources, reports |
| MOZART_LAKE_URL | file://{data}/lake/raw or s3://raw | where raw Parquet lands |
| MOZART_S3_ENDPOINT_URL / _ACCESS_KEY / _SECRET_KEY / _REGION | - / - / - / us-east-1 | S3-compatible store |
| MOZART_TRINO_HOST / _PORT / _USER / _CATALOG | 127.0.0.1 / 8080 / mozart / iceberg | Trino (dbt, status) |
| MOZART_TRINO_HTTP_SCHEME | http | ``http`` or ``https`` (required by a password or a JWT) |
| MOZART_TRINO_PASSWORD / MOZART_TRINO_JWT | - / - | Trino password (as MOZART_TRINO_USER) or JWT; at most one |
| MOZART_TRINO_VERIFY | true | https: ``true`` (system CAs), ``false`` (no check), or a CA bundle (PEM) path |
| MOZART_ICEBERG_REST_URI | http://127.0.0.1:8181 | the Iceberg REST catalog of Trino's ``iceberg`` catalog |
| MOZART_ICEBERG_REST_TOKEN / _WAREHOUSE | - / - | bearer token and warehouse for that catalog, if needed |
| MOZART_MARKERS_URL | {lake}/_mozart/markers | completion markers (profile ``stack``: one small object per task) |
| MOZART_DUCKDB_PATH | {data}/warehouse.duckdb | local warehouse |
| MOZART_BATCH_ROWS | 50000 | rows per fetched batch (memory is bounded by this) |
| MOZART_PART_ROWS | 1000000 | rows per Parquet part before rotation |
| MOZART_COMPRESSION | zstd | Parquet codec |
| MOZART_REPORT_DIR | {data}/reports | run reports (JSON) |
| MOZART_SNAPSHOT_RETENTION_DAYS | 7 | days of Iceberg snapshots kept per tenant table (expired weekly) |
| MOZART_TIMEZONE | UTC | the zone of the default run date ("yesterday"; read by ``tasks.base.yesterday``) |
"""

from __future__ import annotations

__all__ = ["PROFILES", "Settings"]

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mozart_luigi.errors import ConfigProblem
from mozart_luigi.secrets import Secret

PROFILES = ("local", "stack")
TRINO_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Settings:
    profile: str = "local"
    data_dir: Path = Path(".mozart")
    lake_url: str = ""
    s3_endpoint_url: str | None = None
    s3_access_key: Secret | None = field(default=None, repr=False)
    s3_secret_key: Secret | None = field(default=None, repr=False)
    s3_region: str = "us-east-1"
    trino_host: str = "127.0.0.1"
    trino_port: int = 8080
    trino_user: str = "mozart"
    trino_catalog: str = "iceberg"
    trino_http_scheme: str = "http"
    trino_password: Secret | None = field(default=None, repr=False)
    trino_jwt: Secret | None = field(default=None, repr=False)
    trino_verify: bool | str = True
    iceberg_rest_uri: str = "http://127.0.0.1:8181"
    iceberg_rest_token: Secret | None = field(default=None, repr=False)
    iceberg_warehouse: str | None = None
    markers_url: str = ""
    duckdb_path: Path = Path(".mozart/warehouse.duckdb")
    batch_rows: int = 50_000
    part_rows: int = 1_000_000
    compression: str = "zstd"
    report_dir: Path = Path(".mozart/reports")
    snapshot_retention_days: int = 7
    #: stack: the extract copies each finished part into the Iceberg table's data location while it reads on
    #: (server-side), so the load registers those copies without copying (``MOZART_PRESTAGE``, default on)
    prestage: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str], problems: list[ConfigProblem]) -> Settings:
        profile = env.get("MOZART_PROFILE", "local") or "local"
        if profile not in PROFILES:
            problems.append(ConfigProblem("environment", "MOZART_PROFILE", f"must be one of {PROFILES}"))
            profile = "local"
        data_dir = Path(env.get("MOZART_DATA_DIR") or ".mozart").resolve()
        default_lake = "s3://raw" if profile == "stack" else (data_dir / "lake" / "raw").as_uri()
        secret = env.get("MOZART_S3_SECRET_KEY")
        access = env.get("MOZART_S3_ACCESS_KEY")
        settings = cls(
            profile=profile,
            data_dir=data_dir,
            lake_url=(env.get("MOZART_LAKE_URL") or default_lake).rstrip("/"),
            s3_endpoint_url=env.get("MOZART_S3_ENDPOINT_URL") or None,
            s3_access_key=Secret(access) if access else None,
            s3_secret_key=Secret(secret) if secret else None,
            s3_region=env.get("MOZART_S3_REGION") or "us-east-1",
            trino_host=env.get("MOZART_TRINO_HOST") or "127.0.0.1",
            trino_port=_int(env, "MOZART_TRINO_PORT", 8080, problems),
            trino_user=env.get("MOZART_TRINO_USER") or "mozart",
            trino_catalog=env.get("MOZART_TRINO_CATALOG") or "iceberg",
            trino_http_scheme=(env.get("MOZART_TRINO_HTTP_SCHEME") or "http").lower(),
            trino_password=Secret(pw) if (pw := env.get("MOZART_TRINO_PASSWORD")) else None,
            trino_jwt=Secret(jwt) if (jwt := env.get("MOZART_TRINO_JWT")) else None,
            trino_verify=_verify(env.get("MOZART_TRINO_VERIFY")),
            iceberg_rest_uri=env.get("MOZART_ICEBERG_REST_URI") or "http://127.0.0.1:8181",
            iceberg_rest_token=Secret(token) if (token := env.get("MOZART_ICEBERG_REST_TOKEN")) else None,
            iceberg_warehouse=env.get("MOZART_ICEBERG_WAREHOUSE") or None,
            markers_url=(env.get("MOZART_MARKERS_URL") or "").rstrip("/"),
            duckdb_path=Path(env.get("MOZART_DUCKDB_PATH") or data_dir / "warehouse.duckdb").resolve(),
            batch_rows=_int(env, "MOZART_BATCH_ROWS", 50_000, problems),
            part_rows=_int(env, "MOZART_PART_ROWS", 1_000_000, problems),
            compression=env.get("MOZART_COMPRESSION") or "zstd",
            report_dir=Path(env.get("MOZART_REPORT_DIR") or data_dir / "reports").resolve(),
            snapshot_retention_days=_int(env, "MOZART_SNAPSHOT_RETENTION_DAYS", 7, problems, minimum=0),
            prestage=_flag(env, "MOZART_PRESTAGE", True, problems),
        )
        settings._check(problems)
        return settings

    def _check(self, problems: list[ConfigProblem]) -> None:
        if self.lake_url.startswith("s3://") and not (self.s3_access_key and self.s3_secret_key):
            problems.append(
                ConfigProblem(
                    "environment", "MOZART_S3_ACCESS_KEY/MOZART_S3_SECRET_KEY", f"required for the lake {self.lake_url}"
                )
            )
        if not self.lake_url.startswith(("s3://", "file://")):
            problems.append(ConfigProblem("environment", "MOZART_LAKE_URL", "must start with s3:// or file://"))
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            problems.append(ConfigProblem("environment", "MOZART_COMPRESSION", "zstd, snappy, gzip or none"))
        self._check_trino(problems)

    def _check_trino(self, problems: list[ConfigProblem]) -> None:
        """Scheme, credentials and CA bundle; messages name variables, never their values."""
        if self.trino_http_scheme not in TRINO_SCHEMES:
            problems.append(ConfigProblem("environment", "MOZART_TRINO_HTTP_SCHEME", "must be http or https"))
        if self.trino_password and self.trino_jwt:
            problems.append(
                ConfigProblem("environment", "MOZART_TRINO_PASSWORD/MOZART_TRINO_JWT", "set one of them, not both")
            )
        if self.trino_http_scheme == "http":
            for name, value in (("MOZART_TRINO_PASSWORD", self.trino_password), ("MOZART_TRINO_JWT", self.trino_jwt)):
                if value:
                    problems.append(
                        ConfigProblem(
                            "environment",
                            name,
                            "Trino accepts credentials only over TLS: set MOZART_TRINO_HTTP_SCHEME=https",
                        )
                    )
        if isinstance(self.trino_verify, str) and not Path(self.trino_verify).is_file():
            problems.append(
                ConfigProblem(
                    "environment",
                    "MOZART_TRINO_VERIFY",
                    f"CA bundle {self.trino_verify} is not a file (give a PEM file, true or false)",
                )
            )

    def secrets(self) -> tuple[Secret, ...]:
        """What redaction removes from messages. Not the S3 access key *id*: an identifier (AWS documents it as
        such), and the dev stack's is a plain word (``mozart``) that would blank out module and table names;
        it is never printed by us either way (it is held as a Secret)."""
        found = (self.s3_secret_key, self.iceberg_rest_token, self.trino_password, self.trino_jwt)
        return tuple(s for s in found if s is not None)

    @property
    def markers_root(self) -> str:
        """Where the ``stack`` profile keeps completion markers (``MOZART_MARKERS_URL``)."""
        return self.markers_url or f"{self.lake_url.rstrip('/')}/_mozart/markers"


def _verify(raw: str | None) -> bool | str:
    """``MOZART_TRINO_VERIFY``: unset or ``true`` -> True, ``false`` -> False, anything else a CA bundle path."""
    value = (raw or "").strip()
    if value.lower() in ("", "true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    return str(Path(value).expanduser().resolve())


def _flag(env: Mapping[str, str], key: str, default: bool, problems: list[ConfigProblem]) -> bool:
    raw = (env.get(key) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    problems.append(ConfigProblem("environment", key, "must be 1/true/yes/on or 0/false/no/off"))
    return default


def _int(env: Mapping[str, str], key: str, default: int, problems: list[ConfigProblem], *, minimum: int = 1) -> int:
    raw = env.get(key)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(ConfigProblem("environment", key, f"must be an integer, got {raw!r}"))
        return default
    if value < minimum:
        wanted = "must be positive" if minimum == 1 else f"must be >= {minimum}"
        problems.append(ConfigProblem("environment", key, wanted))
        return default
    return value
