"""The naming rules, in one place: tenant ids, normalised table names, column names, identifier quoting.

Validation happens at the edges, once: config loading (:func:`tenant_id_problem`, every problem reported
together), the tasks' ``tenant`` parameter (:class:`~mozart_luigi.tasks.base.TenantParameter`, whose
``normalize()`` calls :func:`validate_tenant_id`, so a bad id fails when the task is constructed, before any
SQL or S3 access) and the command line (tenants are looked up in the validated config). Code behind those
edges (warehouses, marker store, lake, dbt work folder) trusts its callers. One more edge: the dbt command
line checks it again, since dbt renders the tenant into schema names unquoted.

Warehouse SQL quotes every identifier with :func:`quote_ident` (ANSI double quotes, DuckDB and Trino);
source databases are quoted by their SQLAlchemy dialect (``connectors/base.py``), since each has its own
rules (MariaDB backticks).
"""

from __future__ import annotations

__all__ = [
    "COLUMN_NAME_RE",
    "RESERVED_TENANT_IDS",
    "TENANT_ID_RE",
    "TENANT_ID_RULE",
    "normalise_name",
    "qualified",
    "quote_ident",
    "tenant_id_problem",
    "validate_tenant_id",
]

import re

from mozart_luigi.errors import ConfigError, ConfigProblem

# ------------------------------------------------------------------------------------------ tenant ids
# A tenant id becomes a schema name (warehouse), a path segment (lake, markers, dbt folder) and a Luigi
# resource name: lower-case letters, digits and `_`, a letter first, at most 40 characters.
TENANT_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
TENANT_ID_RULE = "lower case a-z, 0-9 and _, a letter first, at most 40 characters"
RESERVED_TENANT_IDS = frozenset(
    {
        "mozart_meta",
        "information_schema",
        "system",
        "sys",
        "public",
        "default",
        "pg_catalog",
        "pg_toast",
        "mysql",
        "performance_schema",
        "raw",
        "iceberg",
        "tpch",
        "memory",
        "main",
        "temp",
        "admin",
        "root",
    }
)


def tenant_id_problem(tenant: object) -> str | None:
    """What is wrong with ``tenant`` as a tenant id (naming the value and the rule), or ``None``."""
    if not isinstance(tenant, str) or not TENANT_ID_RE.fullmatch(tenant):  # fullmatch: "$" lets "acme\n" by
        return f"invalid tenant id {tenant!r}: must match {TENANT_ID_RE.pattern} ({TENANT_ID_RULE})"
    if tenant in RESERVED_TENANT_IDS:
        return f"tenant id {tenant!r} is reserved"
    return None


def validate_tenant_id(tenant: str, *, origin: str = "tenants.yaml", key: str | None = None) -> str:
    """Return ``tenant`` if it is a valid, unreserved tenant id, else raise :class:`ConfigError` naming
    ``origin`` (the file or interface the value came from), ``key`` (default ``tenants.<tenant>``) and the
    rule. For the edges only (see the module docstring)."""
    problem = tenant_id_problem(tenant)
    if problem:
        raise ConfigError([ConfigProblem(origin, key or f"tenants.{tenant}", problem)])
    return tenant


# ------------------------------------------------------------------------------- table and column names
# A column name (tables.yaml: cursor, primary_key, include, exclude) is letters and digits of any script (as
# str.isalnum), `_`, space, `-`, `$`, `#` and the backtick (MariaDB allows it in names; the dialect quotes it);
# never empty, no space first or last. Everything else is refused: `.` (it would read as a qualified name),
# quotes, `;`, `,`, brackets, `%`, `/`, operators, NUL and every other control character. Names are still
# quoted by the dialect; this rule keeps them unsurprising.
COLUMN_NAME_RE = re.compile(r"[\w$#`-](?:[\w $#`-]*[\w$#`-])?")


def normalise_name(name: str) -> str:
    """Lake-path and Iceberg name for a source table name: lower-case, ``[a-z0-9_]``, no leading digit."""
    out = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    if not out:
        return "_"
    return f"t_{out}" if out[0].isdigit() else out


# ------------------------------------------------------------------------------------------- quoting
def quote_ident(name: str) -> str:
    """The one warehouse identifier-quoting helper: ``"name"`` with embedded quotes doubled."""
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """``"a"."b"."c"``: each part quoted by :func:`quote_ident`."""
    return ".".join(quote_ident(p) for p in parts)
