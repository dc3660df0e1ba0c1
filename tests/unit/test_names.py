"""The naming rules (mozart_luigi/names.py) and where they are checked: at the edges, once.

A task's ``tenant`` is a :class:`TenantParameter`: a bad id fails when the task is constructed (from Python
or from the ``luigi`` command line), so nothing behind the task (source, lake, warehouse, dbt) ever sees it.
The warehouses trust their callers (this replaces the warehouse contract's ``test_invalid_tenant_ids_are_refused``).
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import luigi
import pytest

import mozart_luigi
from mozart_luigi import names
from mozart_luigi.errors import ConfigError
from mozart_luigi.tasks.dbt import DbtRun
from mozart_luigi.tasks.extract import ExtractTable
from mozart_luigi.tasks.load import LoadIceberg
from mozart_luigi.tasks.pipeline import TenantPipeline

pytestmark = pytest.mark.unit
DAY = dt.date(2026, 11, 28)
HOSTILE = [
    "x; drop",
    'x"; DROP SCHEMA y; --',
    "../etc",
    "Acme",
    "1acme",
    "a" * 41,
    "",
    "acme\n",
    "mozart_meta",
    "system",
]


def _constructors() -> list[tuple[str, object]]:
    return [
        ("ExtractTable", lambda t: ExtractTable(tenant=t, table="orders", date=DAY)),
        ("LoadIceberg", lambda t: LoadIceberg(tenant=t, table="orders", date=DAY)),
        ("DbtRun", lambda t: DbtRun(tenant=t, date=DAY)),
        ("TenantPipeline", lambda t: TenantPipeline(tenant=t, date=DAY)),
    ]


@pytest.mark.parametrize("tenant", HOSTILE)
@pytest.mark.parametrize(("family", "make"), _constructors())
def test_every_task_refuses_a_bad_tenant_when_constructed(family: str, make, tenant: str) -> None:
    """Construction fails (no config read, no connection, no S3 call): the error names the value and the rule."""
    luigi.task_register.Register.clear_instance_cache()
    with pytest.raises(ConfigError) as info:
        make(tenant)
    message = str(info.value)
    assert "task parameter: tenant: " in message and repr(tenant) in message, message
    assert names.TENANT_ID_RE.pattern in message or "is reserved" in message, message


def test_a_good_tenant_is_unchanged() -> None:
    luigi.task_register.Register.clear_instance_cache()
    task = LoadIceberg(tenant="acme_eu", table="orders", date=DAY)
    assert task.tenant == "acme_eu"
    assert task.task_id == LoadIceberg(tenant="acme_eu", table="orders", date=DAY).task_id


def test_the_command_line_is_an_edge_too() -> None:
    """``luigi --module mozart_luigi DbtRun --tenant ...`` parses through the same parameter."""
    args = [
        "--module",
        "mozart_luigi",
        "DbtRun",
        "--tenant",
        "Bad-Id",
        "--date",
        "2026-11-28",
        "--local-scheduler",
        "--no-lock",
    ]
    with pytest.raises(ConfigError, match=r"task parameter: tenant: invalid tenant id 'Bad-Id'"):
        luigi.run(args)


def test_validate_tenant_id_names_origin_key_value_and_rule() -> None:
    with pytest.raises(ConfigError) as info:
        names.validate_tenant_id("x; drop", origin="dbt", key="tenant")
    assert str(info.value.problems[0]) == (
        f"dbt: tenant: invalid tenant id 'x; drop': must match {names.TENANT_ID_RE.pattern} ({names.TENANT_ID_RULE})"
    )
    assert names.validate_tenant_id("acme") == "acme"
    assert names.tenant_id_problem("main") == "tenant id 'main' is reserved"


def test_quoting() -> None:
    assert names.quote_ident('we"ird name') == '"we""ird name"'
    assert names.qualified("acme", "Order Items") == '"acme"."Order Items"'
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError, match="invalid SQL identifier"):
            names.quote_ident(bad)


def test_validate_tenant_id_is_called_at_the_edges_only() -> None:
    """Where the rule is applied: the task parameter and the dbt command line (dbt renders the tenant into
    schema names unquoted); config loading reports it with every other problem (``tenant_id_problem``)."""
    root = Path(mozart_luigi.__file__).resolve().parent
    calls = sorted(
        f"{path.relative_to(root)}"
        for path in root.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "validate_tenant_id"
    )
    assert calls == ["dbt_runner.py", "tasks/base.py"]
