"""Configuration: ``config/tenants.yaml`` + ``config/tables.yaml`` + the environment -> frozen, validated models.

Parsed once at the entry point (:func:`get_config` caches per process), never at import time. Validation
reports every problem at once, each naming the file, the tenant and the key: a key written twice (at any depth,
with its lines), an unknown key, an enumerated value out of its set (``kind``, ``mode``, ``enabled``, ``profiles``),
a column name outside :data:`COLUMN_NAME_RE`. A message quotes an interpolated value by its ``${VAR}`` text
(:func:`~mozart_luigi.interpolate.shown`), never the value. Secrets become :class:`~mozart_luigi.secrets.Secret`
and never render.
"""

from __future__ import annotations

__all__ = [
    "COLUMN_NAME_RE",
    "KEYS_SUFFIX",
    "MAX_LOOKBACK_DAYS",
    "MAX_PARALLEL",
    "PARALLEL_MIN_ROWS",
    "RESERVED_TENANT_IDS",
    "Config",
    "Settings",
    "SourceConfig",
    "TableConfig",
    "TenantConfig",
    "get_config",
    "load_config",
    "normalise_name",
    "reset_config_cache",
]

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mozart_luigi.errors import ConfigError, ConfigProblem
from mozart_luigi.interpolate import interpolate, shown
from mozart_luigi.names import COLUMN_NAME_RE, RESERVED_TENANT_IDS, normalise_name, tenant_id_problem
from mozart_luigi.overrides import TypeOverride, parse_override
from mozart_luigi.secrets import Secret
from mozart_luigi.settings import PROFILES, Settings

SOURCE_KINDS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "oracle": "oracle",
    "sqlite": "sqlite",
}
MODES = ("full", "incremental")
# Tenant ids, table and column names (COLUMN_NAME_RE): the rules live in mozart_luigi/names.py.

_TENANT_KEYS = {"source", "tables", "max_connections", "profiles", "enabled", "description"}
_SOURCE_KEYS = {
    "kind",
    "url",
    "host",
    "port",
    "database",
    "user",
    "password",
    "schema",
    "path",
    "service_name",
    "query",
    "connect_timeout",
    "native",
}
_TABLE_KEYS = {
    "source_name",
    "source_schema",
    "mode",
    "cursor",
    "primary_key",
    "include",
    "exclude",
    "columns",
    "description",
    "lookback_days",
    "deletes",
    "checksum",
    "parallel",
    "split_by",
    "parallel_min_rows",
}
# Late rows and deletes of incremental tables (docs/late-rows.md): each run also re-extracts the
# ``lookback_days`` days before its date; ``deletes: keys`` adds the table's keys stream, ``{table}__keys``.
MAX_LOOKBACK_DAYS = 31
DELETES = ("none", "keys")
KEYS_SUFFIX = "__keys"
# Parallel streams of a big full table (docs/parallel.md): ``parallel: N`` key-range streams of one snapshot,
# only when the table holds at least ``parallel_min_rows`` rows.
MAX_PARALLEL = 16
PARALLEL_MIN_ROWS = 1_000_000


@dataclass(frozen=True)
class SourceConfig:
    """How to reach one tenant's database. ``password`` and ``url`` are secrets."""

    kind: str
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: Secret | None = field(default=None, repr=False)
    url: Secret | None = field(default=None, repr=False)
    schema: str | None = None
    path: str | None = None
    service_name: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    connect_timeout: int = 10
    native: bool = True  # PostgreSQL/MySQL: the native Arrow reader (connectors/native.py); false: SQLAlchemy

    def describe(self) -> str:
        """Where the source is, without secrets: ``postgresql://acme_reader@db:5432/acme``."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path or self.database}"
        if self.url is not None:
            from sqlalchemy.engine import make_url

            return make_url(self.url.reveal()).render_as_string(hide_password=True)
        db = self.database or self.service_name or ""
        return f"{self.kind}://{self.user or ''}@{self.host or ''}:{self.port or ''}/{db}"

    def secrets(self) -> tuple[Secret, ...]:
        return tuple(s for s in (self.password, self.url) if s is not None)


@dataclass(frozen=True)
class TableConfig:
    """One configured table. ``name`` is the normalised (lake / Iceberg) name."""

    name: str
    source_name: str
    source_schema: str | None = None
    mode: str = "full"
    cursor: str | None = None
    primary_key: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: per-column type overrides (``columns: {<col>: {type: ...}}``), in tables.yaml order; see overrides.py
    columns: tuple[tuple[str, TypeOverride], ...] = ()
    lookback_days: int = 0  # incremental: each run also re-extracts (replaces) the N days before its date
    deletes: str | None = None  # incremental with a primary key: "keys" -> the keys stream {name}__keys
    keys_of: str | None = None  # set on a keys stream: the table whose primary keys it holds (mode full)
    #: integer / exact decimal columns whose sums are compared, source vs loaded day (mozart_luigi/checksums.py)
    checksum: tuple[str, ...] = ()
    #: full tables: key-range streams reading one snapshot (1: one stream, as always); see docs/parallel.md
    parallel: int = 1
    #: the integer column the streams split on (None: the single-column primary key)
    split_by: str | None = None
    #: fewer rows than this in the snapshot: one stream
    parallel_min_rows: int = PARALLEL_MIN_ROWS

    @property
    def split_column(self) -> str | None:
        """The column parallel streams split on: ``split_by``, else a single-column primary key."""
        if self.split_by:
            return self.split_by
        return self.primary_key[0] if len(self.primary_key) == 1 else None

    def keys_stream(self) -> TableConfig:
        """The keys stream of a ``deletes: keys`` table: its primary key columns, the whole table each night
        (mode ``full``), loaded as ``{tenant}.{name}__keys``; dbt staging drops rows whose key is gone."""
        return TableConfig(
            name=f"{self.name}{KEYS_SUFFIX}",
            source_name=self.source_name,
            source_schema=self.source_schema,
            mode="full",
            primary_key=self.primary_key,
            include=self.primary_key,
            keys_of=self.name,
        )

    def override(self, column: str) -> TypeOverride | None:
        """The type override tables.yaml sets for ``column`` (its source name), or None."""
        return dict(self.columns).get(column)


@dataclass(frozen=True)
class TenantConfig:
    id: str
    source: SourceConfig
    tables: tuple[str, ...]
    max_connections: int = 2
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The validated configuration: tenants active in the current profile, tables, runtime settings."""

    tenants: Mapping[str, TenantConfig]
    tables: Mapping[str, TableConfig]
    settings: Settings
    config_dir: Path

    def tenant(self, tenant_id: str) -> TenantConfig:
        try:
            return self.tenants[tenant_id]
        except KeyError:
            known = ", ".join(sorted(self.tenants)) or "(none)"
            raise ConfigError(
                [
                    ConfigProblem(
                        "tenants.yaml",
                        f"tenants.{tenant_id}",
                        f"unknown tenant in profile {self.settings.profile!r}; known: {known}",
                    )
                ]
            ) from None

    def table(self, tenant_id: str, table: str) -> TableConfig:
        tenant = self.tenant(tenant_id)
        if table not in tenant.tables:
            raise ConfigError(
                [
                    ConfigProblem(
                        "tenants.yaml",
                        f"tenants.{tenant_id}.tables",
                        f"table {table!r} is not configured for this tenant",
                    )
                ]
            )
        return self.tables[table]

    def tables_for(self, tenant_id: str) -> tuple[TableConfig, ...]:
        return tuple(self.tables[name] for name in self.tenant(tenant_id).tables)


# ---------------------------------------------------------------------------------------------- loading


def load_config(config_dir: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate the configuration. Raises :class:`ConfigError` with every problem."""
    if env is None:
        _read_dotenv()
        env = os.environ
    directory = Path(config_dir or env.get("MOZART_CONFIG_DIR") or "config").resolve()
    problems: list[ConfigProblem] = []
    settings = Settings.from_env(env, problems)
    tables_raw = _read_yaml(directory / "tables.yaml", problems)
    tenants_raw = _read_yaml(directory / "tenants.yaml", problems)
    tables = _parse_tables(interpolate(tables_raw, env, file="tables.yaml", path="", problems=problems), problems)
    tenants = _parse_tenants(tenants_raw, env, tables, settings, problems)
    if problems:
        raise ConfigError(problems)
    return Config(tenants=tenants, tables=tables, settings=settings, config_dir=directory)


@functools.cache
def _cached(config_dir: str | None) -> Config:
    return load_config(config_dir)


def get_config(config_dir: str | None = None) -> Config:
    """The process-wide configuration, loaded on first use (never at import time)."""
    return _cached(config_dir or os.environ.get("MOZART_CONFIG_DIR"))


def reset_config_cache() -> None:
    _cached.cache_clear()


def _read_dotenv() -> None:
    from dotenv import find_dotenv, load_dotenv

    path = find_dotenv(usecwd=True)
    if path:
        load_dotenv(path, override=False)


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that records every duplicate mapping key, at any depth, with its dotted path and
    lines. (Plain ``safe_load`` silently keeps the last value.) A ``<<`` merge key's values are not duplicates.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, Any, int, int]] = []  # (path, key, line, first line), 1-based

    def construct_document(self, node: yaml.Node) -> Any:
        self._find_duplicates(node, "", set())
        return super().construct_document(node)

    def _find_duplicates(self, node: yaml.Node, path: str, seen: set[int]) -> None:
        if id(node) in seen:  # an alias repeats (or recurses into) a node already walked
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._find_duplicates(item, f"{path}[{i}]", seen)
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = self._scalar_key(key_node)
                sub = f"{path}.{key}" if path else str(key)
                line = key_node.start_mark.line + 1
                if key is not _NOT_A_KEY and key in first:
                    self.duplicates.append((sub, key, line, first[key]))
                elif key is not _NOT_A_KEY:
                    first[key] = line
                self._find_duplicates(value_node, sub, seen)

    def _scalar_key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:merge":
            return _NOT_A_KEY
        return self.construct_object(node)


_NOT_A_KEY = object()


def _load_yaml(text: str, file: str, problems: list[ConfigProblem]) -> Any:
    """Parse ``text``; every duplicate key becomes a problem naming the file, the key path and the lines."""
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    for path, key, line, first in loader.duplicates:
        problems.append(
            ConfigProblem(
                file,
                path,
                f"duplicate key {key!r} on line {line} (first on line {first});"
                " YAML would silently keep only the last one",
            )
        )
    return data


def _read_yaml(path: Path, problems: list[ConfigProblem]) -> dict[str, Any]:
    try:
        data = _load_yaml(path.read_text(encoding="utf-8"), path.name, problems)
    except FileNotFoundError:
        problems.append(ConfigProblem(path.name, "-", f"file not found: {path} (set MOZART_CONFIG_DIR?)"))
        return {}
    except yaml.YAMLError as exc:
        problems.append(ConfigProblem(path.name, "-", f"invalid YAML: {exc}"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(ConfigProblem(path.name, "-", "top level must be a mapping"))
        return {}
    return data


def _unknown_keys(
    raw: Mapping[str, Any], allowed: set[str], file: str, path: str, problems: list[ConfigProblem]
) -> None:
    for key in sorted(set(raw) - allowed):
        hint = ", ".join(sorted(allowed))
        problems.append(ConfigProblem(file, f"{path}.{key}", f"unknown key (allowed: {hint})"))


def _str_list(value: Any, file: str, path: str, problems: list[ConfigProblem]) -> tuple[str, ...]:
    """The strings as parsed (an interpolated one keeps its ``${VAR}`` text for messages; ``str()`` it to store)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.append(ConfigProblem(file, path, "must be a string or a list of strings"))
    return ()


def _text(value: Any) -> str | None:
    """A plain ``str`` (never :class:`~mozart_luigi.interpolate.Interpolated`) for a config object, or None."""
    return str(value) if value not in (None, "") else None


def _int(value: Any, file: str, path: str, problems: list[ConfigProblem], *, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        out = int(value)
    except (TypeError, ValueError):
        problems.append(ConfigProblem(file, path, f"must be an integer, got {shown(value)}"))
        return default
    if out <= 0:
        problems.append(ConfigProblem(file, path, f"must be positive, got {out}"))
    return out


def _parse_tables(raw: dict[str, Any], problems: list[ConfigProblem]) -> dict[str, TableConfig]:
    _unknown_keys(raw, {"tables"}, "tables.yaml", "", problems)
    entries = raw.get("tables") or {}
    if not isinstance(entries, dict):
        problems.append(ConfigProblem("tables.yaml", "tables", "must be a mapping of table name -> settings"))
        return {}
    tables: dict[str, TableConfig] = {}
    seen: dict[str, str] = {}
    for key, body in entries.items():
        table = _parse_table(str(key), body or {}, problems)
        if table is None:
            continue
        if table.name in seen:
            problems.append(
                ConfigProblem(
                    "tables.yaml", f"tables.{key}", f"normalises to {table.name!r}, like tables.{seen[table.name]}"
                )
            )
            continue
        seen[table.name] = str(key)
        tables[table.name] = table
    for table in list(tables.values()):
        if table.deletes == "keys":
            stream = table.keys_stream()
            if stream.name in tables:
                problems.append(
                    ConfigProblem(
                        "tables.yaml",
                        f"tables.{seen[table.name]}.deletes",
                        f"the keys stream {stream.name!r} would clash with the table tables.{seen[stream.name]}",
                    )
                )
                continue
            tables[stream.name] = stream
    return {name: tables[name] for name in _with_keys_streams(list(tables), tables)}


def _with_keys_streams(names: list[str], tables: Mapping[str, TableConfig]) -> list[str]:
    """``names`` with each keys stream right after its table (and only there)."""
    out: list[str] = []
    for name in names:
        if tables[name].keys_of is not None:
            continue
        out.append(name)
        stream = f"{name}{KEYS_SUFFIX}"
        if tables[name].deletes == "keys" and stream in tables and tables[stream].keys_of == name:
            out.append(stream)
    return out


def _parse_table(key: str, body: Any, problems: list[ConfigProblem]) -> TableConfig | None:
    path = f"tables.{key}"
    if not isinstance(body, dict):
        problems.append(ConfigProblem("tables.yaml", path, "must be a mapping"))
        return None
    _unknown_keys(body, _TABLE_KEYS, "tables.yaml", path, problems)
    mode = body.get("mode", "full")
    if mode not in MODES:
        problems.append(ConfigProblem("tables.yaml", f"{path}.mode", f"must be one of {MODES}, got {shown(mode)}"))
    cursor = _cursor(body.get("cursor"), f"{path}.cursor", problems)
    if mode == "incremental" and body.get("cursor") in (None, ""):
        problems.append(ConfigProblem("tables.yaml", f"{path}.cursor", "incremental mode needs a cursor column"))
    include = _columns(body.get("include"), f"{path}.include", problems)
    exclude = _columns(body.get("exclude"), f"{path}.exclude", problems)
    if include and exclude:
        problems.append(ConfigProblem("tables.yaml", path, "set include or exclude, not both"))
    primary_key = _columns(body.get("primary_key"), f"{path}.primary_key", problems)
    lookback = _lookback_days(body.get("lookback_days"), str(mode), f"{path}.lookback_days", problems)
    deletes = _deletes(body.get("deletes"), str(mode), primary_key, f"{path}.deletes", problems)
    columns = _overrides(body.get("columns"), path, problems, cursor=cursor, include=include, exclude=exclude)
    parallel, split_by, min_rows = _parallel(body, str(mode), primary_key, path, problems)
    return TableConfig(
        name=normalise_name(key),
        source_name=str(body.get("source_name") or key),
        source_schema=_text(body.get("source_schema")),
        mode=str(mode),
        cursor=cursor,
        primary_key=primary_key,
        include=include,
        exclude=exclude,
        columns=columns,
        lookback_days=lookback,
        deletes=deletes,
        checksum=_checksum(
            body.get("checksum"), f"{path}.checksum", problems, include=include, exclude=exclude, overrides=columns
        ),
        parallel=parallel,
        split_by=split_by,
        parallel_min_rows=min_rows,
    )


def _overrides(
    value: Any,
    path: str,
    problems: list[ConfigProblem],
    *,
    cursor: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
) -> tuple[tuple[str, TypeOverride], ...]:
    """``columns: {<column>: {type: <override>}}`` (mozart_luigi/overrides.py): each override known, on a column
    that is extracted and is not the cursor (its date/timestamp type selects the window)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        problems.append(
            ConfigProblem(
                "tables.yaml",
                f"{path}.columns",
                "must be a mapping of column -> {type: ...}, e.g. {amount: {type: string}}",
            )
        )
        return ()
    found: list[tuple[str, TypeOverride]] = []
    for column, body in value.items():
        where = f"{path}.columns.{column}"
        if not isinstance(column, str) or not _check_column(column, where, problems):
            continue
        if isinstance(body, dict):
            _unknown_keys(body, {"type"}, "tables.yaml", where, problems)
        if not isinstance(body, dict) or "type" not in body:
            problems.append(ConfigProblem("tables.yaml", where, "must be a mapping with a type, e.g. {type: string}"))
            continue
        reason = (
            "is the cursor column (its date/timestamp type selects the window)"
            if column == cursor
            else "is excluded (exclude:)"
            if column in exclude
            else "is not extracted (not in include:)"
            if include and column not in include
            else None
        )
        try:
            override = parse_override(body["type"])
        except ValueError as exc:
            problems.append(ConfigProblem("tables.yaml", f"{where}.type", str(exc)))
            continue
        if reason:
            problems.append(ConfigProblem("tables.yaml", f"{where}.type", f"column {column!r} {reason}"))
            continue
        found.append((str(column), override))
    return tuple(found)


def _lookback_days(value: Any, mode: str, path: str, problems: list[ConfigProblem]) -> int:
    """``lookback_days``: a whole number 0..MAX_LOOKBACK_DAYS (default 0), for incremental tables only."""
    if value is None or value == "":
        return 0
    try:
        days = int(value)
        if isinstance(value, bool) or str(days) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        problems.append(ConfigProblem("tables.yaml", path, f"must be a whole number of days, got {shown(value)}"))
        return 0
    if not 0 <= days <= MAX_LOOKBACK_DAYS:
        problems.append(
            ConfigProblem(
                "tables.yaml",
                path,
                f"must be 0 to {MAX_LOOKBACK_DAYS} days, got {days} "
                "(a longer window re-extracts it every night: use mozart audit and "
                "mozart rerun for older days)",
            )
        )
        return 0
    if days and mode != "incremental":
        problems.append(
            ConfigProblem(
                "tables.yaml",
                path,
                "only incremental tables re-extract earlier days (a full table is a whole snapshot every day)",
            )
        )
        return 0
    return days


def _deletes(
    value: Any, mode: str, primary_key: tuple[str, ...], path: str, problems: list[ConfigProblem]
) -> str | None:
    """``deletes``: ``none`` (default) or ``keys`` (incremental tables with a primary key)."""
    if value is None or value in {"", "none"}:
        return None
    if value not in DELETES:
        problems.append(ConfigProblem("tables.yaml", path, f"must be one of {DELETES}, got {shown(value)}"))
        return None
    if mode != "incremental":
        problems.append(
            ConfigProblem(
                "tables.yaml",
                path,
                "only incremental tables need deletes: keys (a full table is a whole snapshot every day)",
            )
        )
        return None
    if not primary_key:
        problems.append(ConfigProblem("tables.yaml", path, "deletes: keys needs the table's primary_key"))
        return None
    return "keys"


def _checksum(
    value: Any,
    path: str,
    problems: list[ConfigProblem],
    *,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    overrides: tuple[tuple[str, TypeOverride], ...],
) -> tuple[str, ...]:
    """``checksum``: extracted columns whose sums are compared, source vs loaded day (docs/late-rows.md). Their
    type (integer or exact decimal) is checked against the source catalog at extract time."""
    if value is None or value == []:
        return ()
    if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
        problems.append(
            ConfigProblem("tables.yaml", path, f"must be a column name or a list of them, got {shown(value)}")
        )
        return ()
    names = _columns(value, path, problems)
    kinds = dict(overrides)
    found: list[str] = []
    for name in names:
        reason = (
            "is listed twice"
            if name in found
            else "is excluded (exclude:)"
            if name in exclude
            else "is not extracted (not in include:)"
            if include and name not in include
            else f"has the type override {kinds[name]} (only integer and decimal columns are summed exactly)"
            if name in kinds and kinds[name].kind != "decimal"
            else None
        )
        if reason:
            problems.append(ConfigProblem("tables.yaml", path, f"column {name!r} {reason}"))
        else:
            found.append(name)
    return tuple(found)


def _whole(value: Any, path: str, problems: list[ConfigProblem], *, low: int, high: int, what: str) -> int | None:
    """A whole number in ``low..high`` (not a bool, not ``2.5``), or None after reporting the problem."""
    try:
        number = int(value)
        if isinstance(value, bool) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        problems.append(ConfigProblem("tables.yaml", path, f"must be a whole number of {what}, got {shown(value)}"))
        return None
    if not low <= number <= high:
        problems.append(ConfigProblem("tables.yaml", path, f"must be {low} to {high:,} {what}, got {number}"))
        return None
    return number


def _parallel(
    body: Mapping[str, Any], mode: str, primary_key: tuple[str, ...], path: str, problems: list[ConfigProblem]
) -> tuple[int, str | None, int]:
    """``parallel`` (1..MAX_PARALLEL, full tables), ``split_by`` and ``parallel_min_rows``: the streams need an
    integer column to split on, ``split_by`` or a single-column ``primary_key`` (its type is checked against the
    source catalog at extract time)."""
    raw, split_raw, min_raw = body.get("parallel"), body.get("split_by"), body.get("parallel_min_rows")
    parallel = (
        1 if raw in (None, "") else _whole(raw, f"{path}.parallel", problems, low=1, high=MAX_PARALLEL, what="streams")
    )
    min_rows = PARALLEL_MIN_ROWS
    if min_raw not in (None, ""):
        min_rows = _whole(min_raw, f"{path}.parallel_min_rows", problems, low=0, high=10**15, what="rows") or 0
    split_by = _cursor(split_raw, f"{path}.split_by", problems) if split_raw not in (None, "") else None
    if parallel is None:
        return 1, None, PARALLEL_MIN_ROWS
    if parallel == 1:
        for key, value in (("split_by", split_raw), ("parallel_min_rows", min_raw)):
            if value not in (None, ""):
                problems.append(ConfigProblem("tables.yaml", f"{path}.{key}", "only applies with parallel: 2 or more"))
        return 1, None, PARALLEL_MIN_ROWS
    if mode != "full":
        problems.append(
            ConfigProblem(
                "tables.yaml",
                f"{path}.parallel",
                "only full tables are read in parallel streams (an incremental day is one window)",
            )
        )
        return 1, None, PARALLEL_MIN_ROWS
    if split_raw in (None, "") and len(primary_key) != 1:
        problems.append(
            ConfigProblem(
                "tables.yaml",
                f"{path}.parallel",
                "the streams split on an integer column: set split_by, or a single-column primary_key",
            )
        )
        return 1, None, PARALLEL_MIN_ROWS
    return parallel, split_by, min_rows


def _columns(value: Any, path: str, problems: list[ConfigProblem]) -> tuple[str, ...]:
    """``primary_key`` / ``include`` / ``exclude``: a column name or a list of them (see :data:`COLUMN_NAME_RE`)."""
    names = _str_list(value, "tables.yaml", path, problems)
    for name in names:
        _check_column(name, path, problems)
    return tuple(map(str, names))


def _cursor(value: Any, path: str, problems: list[ConfigProblem]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(ConfigProblem("tables.yaml", path, "must be a column name (a string)"))
        return None
    return str(value) if _check_column(value, path, problems) else None


def _check_column(name: str, path: str, problems: list[ConfigProblem]) -> bool:
    if COLUMN_NAME_RE.fullmatch(name):
        return True
    problems.append(
        ConfigProblem(
            "tables.yaml",
            path,
            f"invalid column name {shown(name)}: use letters, digits, spaces (not first or last), _ - $ # only",
        )
    )
    return False


def _parse_tenants(
    raw: dict[str, Any],
    env: Mapping[str, str],
    tables: dict[str, TableConfig],
    settings: Settings,
    problems: list[ConfigProblem],
) -> dict[str, TenantConfig]:
    """Tenants active in the profile; a tenant of another profile (or disabled) is not interpolated."""
    _unknown_keys(raw, {"tenants", "defaults"}, "tenants.yaml", "", problems)
    defaults = raw.get("defaults") or {}
    entries = raw.get("tenants") or {}
    if not isinstance(entries, dict) or not isinstance(defaults, dict):
        problems.append(ConfigProblem("tenants.yaml", "tenants", "must be a mapping of tenant id -> settings"))
        return {}
    tenants: dict[str, TenantConfig] = {}
    for tenant_id, body in entries.items():
        merged = {**defaults, **(body or {})} if isinstance(body, dict) else body
        path = f"tenants.{tenant_id}"
        profiles = _runs_in(merged, env, settings.profile, path, problems) if isinstance(merged, dict) else ()
        if profiles is None:
            continue
        if isinstance(merged, dict):
            merged = {k: v for k, v in merged.items() if k not in ("enabled", "profiles")}
        merged = interpolate(merged, env, file="tenants.yaml", path=path, problems=problems)
        tenant = _parse_tenant(str(tenant_id), merged, profiles, tables, problems)
        if tenant is not None:
            tenants[tenant.id] = tenant
    return tenants


def _runs_in(
    body: dict[str, Any], env: Mapping[str, str], profile: str, path: str, problems: list[ConfigProblem]
) -> tuple[str, ...] | None:
    """The tenant's ``profiles`` when it is enabled and runs in ``profile``; else None. A disabled tenant's other
    keys are not even interpolated; an invalid ``enabled`` or ``profiles`` is a problem (and skips the tenant)."""
    if not _enabled(body.get("enabled", True), env, f"{path}.enabled", problems):
        return None
    profiles = _profiles(body.get("profiles"), env, f"{path}.profiles", problems)
    if profiles is None or (profiles and profile not in profiles):
        return None
    return profiles


def _enabled(value: Any, env: Mapping[str, str], path: str, problems: list[ConfigProblem]) -> bool:
    """A YAML boolean or, after interpolation, ``true`` / ``false`` in any case; anything else is a problem."""
    before = len(problems)
    value = interpolate(value, env, file="tenants.yaml", path=path, problems=problems)
    if len(problems) > before:  # an unset variable: already reported
        return False
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "false"):
        return text == "true"
    problems.append(ConfigProblem("tenants.yaml", path, f"must be true or false, got {shown(value)}"))
    return False


def _profiles(value: Any, env: Mapping[str, str], path: str, problems: list[ConfigProblem]) -> tuple[str, ...] | None:
    """Names from :data:`~mozart_luigi.settings.PROFILES` (empty: every profile); None when any is invalid."""
    before = len(problems)
    value = interpolate(value, env, file="tenants.yaml", path=path, problems=problems)
    listed = _str_list(value, "tenants.yaml", path, problems)
    for name in listed:
        if name not in PROFILES:
            problems.append(
                ConfigProblem("tenants.yaml", path, f"unknown profile {shown(name)} (known: {', '.join(PROFILES)})")
            )
    return None if len(problems) > before else tuple(map(str, listed))


def _parse_tenant(
    tenant_id: str, body: Any, profiles: tuple[str, ...], tables: dict[str, TableConfig], problems: list[ConfigProblem]
) -> TenantConfig | None:
    path = f"tenants.{tenant_id}"
    id_problem = tenant_id_problem(tenant_id)
    if id_problem:
        problems.append(ConfigProblem("tenants.yaml", path, id_problem))
    if not isinstance(body, dict):
        problems.append(ConfigProblem("tenants.yaml", path, "must be a mapping"))
        return None
    _unknown_keys(body, _TENANT_KEYS, "tenants.yaml", path, problems)
    source = _parse_source(body.get("source"), f"{path}.source", problems)
    names = _str_list(body.get("tables"), "tenants.yaml", f"{path}.tables", problems) or tuple(tables)
    resolved = []
    for name in names:
        norm = normalise_name(name)
        if norm not in tables:
            problems.append(
                ConfigProblem("tenants.yaml", f"{path}.tables", f"table {shown(name)} is not defined in tables.yaml")
            )
        elif tables[norm].keys_of is not None and body.get("tables"):
            problems.append(
                ConfigProblem(
                    "tenants.yaml",
                    f"{path}.tables",
                    f"{shown(name)} is the keys stream of {tables[norm].keys_of!r}: list "
                    f"{tables[norm].keys_of!r} (its keys come with it)",
                )
            )
        else:
            resolved.append(norm)
    resolved = _with_keys_streams(list(dict.fromkeys(resolved)), tables)
    max_conn = _int(body.get("max_connections"), "tenants.yaml", f"{path}.max_connections", problems, default=2)
    if id_problem or source is None:
        return None
    return TenantConfig(
        id=tenant_id, source=source, tables=tuple(resolved), max_connections=max_conn or 2, profiles=profiles
    )


def _parse_source(body: Any, path: str, problems: list[ConfigProblem]) -> SourceConfig | None:
    if not isinstance(body, dict):
        problems.append(ConfigProblem("tenants.yaml", path, "missing: a mapping with kind and url or host/..."))
        return None
    _unknown_keys(body, _SOURCE_KEYS, "tenants.yaml", path, problems)
    kind = SOURCE_KINDS.get(str(body.get("kind", "")).lower())
    if kind is None:
        problems.append(
            ConfigProblem(
                "tenants.yaml", f"{path}.kind", f"must be one of {sorted(SOURCE_KINDS)}, got {shown(body.get('kind'))}"
            )
        )
        return None
    has_url = bool(body.get("url"))
    if kind == "sqlite" and not (has_url or body.get("path")):
        problems.append(ConfigProblem("tenants.yaml", path, "sqlite needs path (or url)"))
    elif kind != "sqlite" and not has_url:
        for key in ("host", "user"):
            if not body.get(key):
                problems.append(ConfigProblem("tenants.yaml", f"{path}.{key}", "required unless url is given"))
        if not (body.get("database") or body.get("service_name")):
            problems.append(ConfigProblem("tenants.yaml", f"{path}.database", "required unless url is given"))
    password = body.get("password")
    return SourceConfig(
        kind=kind,
        host=_text(body.get("host")),
        port=_int(body.get("port"), "tenants.yaml", f"{path}.port", problems, default=None),
        database=_text(body.get("database")),
        user=_text(body.get("user")),
        password=Secret(str(password)) if password not in (None, "") else None,
        url=Secret(str(body["url"])) if has_url else None,
        schema=_text(body.get("schema")),
        path=_text(body.get("path")),
        service_name=_text(body.get("service_name")),
        query=_query(body.get("query"), f"{path}.query", problems),
        connect_timeout=_int(
            body.get("connect_timeout"), "tenants.yaml", f"{path}.connect_timeout", problems, default=10
        )
        or 10,
        native=_flag(body.get("native"), "tenants.yaml", f"{path}.native", problems, default=True),
    )


def _query(value: Any, path: str, problems: list[ConfigProblem]) -> tuple[tuple[str, str], ...]:
    """``source.query``: a mapping of string -> string (numbers quoted), sorted; () when absent or invalid."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        problems.append(
            ConfigProblem("tenants.yaml", path, "must be a mapping of string -> string, e.g. {sslmode: require}")
        )
        return ()
    before = len(problems)
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(ConfigProblem("tenants.yaml", f"{path}.{key}", "the parameter name must be a string"))
        elif not isinstance(item, str):
            problems.append(
                ConfigProblem(
                    "tenants.yaml", f"{path}.{key}", "must be a string (quote numbers and booleans: '5', 'true')"
                )
            )
    return () if len(problems) > before else tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _flag(value: Any, file: str, path: str, problems: list[ConfigProblem], *, default: bool) -> bool:
    if value is None or value == "":
        return default
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    problems.append(ConfigProblem(file, path, f"must be true or false, got {shown(value)}"))
    return default
