"""The package's import graph, built from its sources, has no cycle.

Every ``import`` / ``from ... import`` statement counts wherever it stands: at module level, inside a
function (a function-level import that only defers a cycle is still a cycle) and under ``if
TYPE_CHECKING:`` (a type-only cycle is still two modules that cannot be understood one without the other).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module of the package, else to ``pkg``.
Importing ``a.b.c`` also runs the ``__init__`` of ``a.b`` (and ``a``) unless the importer lives inside that
package already (then it is loaded first): those edges are added too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import mozart_luigi

pytestmark = pytest.mark.unit

ROOT = Path(mozart_luigi.__file__).resolve().parent
PACKAGE = "mozart_luigi"
Graph = dict[str, dict[str, int]]  # module -> {imported module: line of the first such import}


def _modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """The package modules one import statement names (submodules of ``from x import y`` included)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if not isinstance(node, ast.ImportFrom):
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    yield source
    for alias in node.names:
        if f"{source}.{alias.name}" in known:
            yield f"{source}.{alias.name}"


def _with_parents(target: str, importer: str) -> Iterator[str]:
    """``target`` and the packages whose ``__init__`` importing it runs (not the importer's own ones)."""
    parts = target.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if not (importer == name or importer.startswith(name + ".")):
            yield name


def build_graph(modules: dict[str, Path] | None = None) -> Graph:
    modules = modules if modules is not None else _modules()
    known = set(modules)
    graph: Graph = {name: {} for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # every statement: module level, functions, TYPE_CHECKING blocks
            for target in _imported(node, name, _is_package(path), known):
                for edge in _with_parents(target, name):
                    if edge in known and edge != name:  # the first line that imports it (walk is breadth-first)
                        graph[name][edge] = min(graph[name].get(edge, node.lineno), node.lineno)
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module, as a path."""
    return [_cycle_in(graph, set(c)) for c in knots(graph)]


def knots(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): each holds a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _cycle_in(graph: Graph, component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), closed: ``[a, b, ..., a]``."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*paths[node], start]
            if nxt in component and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError("a strongly connected component always has a cycle")  # pragma: no cover


def describe(graph: Graph, cycle: list[str], component: list[str]) -> str:
    """A shortest cycle, step by step with file:line, then every import between the knot's modules."""
    modules = _modules()

    def edge(a: str, b: str) -> str:
        return f"    {a} -> {b}  ({modules[a].relative_to(ROOT.parent)}:{graph[a][b]})"

    lines = ["  shortest cycle:", *(edge(a, b) for a, b in zip(cycle, cycle[1:], strict=False))]
    inside = [edge(a, b) for a in component for b in sorted(graph[a]) if b in component]
    lines += [f"  all {len(inside)} imports among its {len(component)} modules (break enough of them):", *inside]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ tests
def test_the_package_has_no_import_cycle() -> None:
    graph = build_graph()
    found = knots(graph)
    report = "\n\n".join(
        f"knot {i + 1}: {', '.join(c)}\n{describe(graph, _cycle_in(graph, set(c)), c)}" for i, c in enumerate(found)
    )
    assert not found, f"{len(found)} import cycle knot(s) in {PACKAGE}:\n{report}"


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The builder itself: relative, function-level, TYPE_CHECKING and ``from pkg import submodule``."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import c\n")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.c import X\n")
    (pkg / "sub" / "c.py").write_text("import pkg.a\n")
    modules = _modules(pkg, "pkg")
    graph = build_graph(modules)
    assert graph["pkg.a"] == {"pkg.b": 2}
    assert graph["pkg.b"] == {"pkg.sub": 3, "pkg.sub.c": 3}  # the package __init__ runs first
    assert graph["pkg.sub"] == {"pkg.sub.c": 1}  # its own submodule: no edge back to itself
    assert graph["pkg.sub.c"] == {"pkg.a": 1}
    assert knots(graph) == [["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"]]
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]  # the shortest way round


def test_an_acyclic_graph_has_no_cycle() -> None:
    assert find_cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {}}) == []
