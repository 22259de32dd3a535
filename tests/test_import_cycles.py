"""No import cycle between files or between packages, checked statically with ``ast``.

Every ``.py`` file under ``robopolicy/``, ``sim/`` and ``hardware/`` is parsed and all of its
imports are collected, function-local and ``TYPE_CHECKING`` ones included (a cycle hidden in a
function body is still a cycle in the design). Relative imports are resolved against the
importing module. A module that names a package depends on that package's ``__init__.py``;
``from pkg import name`` depends on ``pkg.name`` when that is a module, on ``pkg`` otherwise.
Importing a module also runs its parents' ``__init__.py`` at runtime, but that is not counted:
with it, every package whose ``__init__`` re-exports a submodule would be a cycle.

Two graphs must be acyclic: modules (file level), and packages (``robopolicy.data``,
``robopolicy.policies``, ... with nested subpackages folded into their top subpackage, and the
top-level ``sim`` and ``hardware``). ``robopolicy.utils`` must also be a leaf package.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("robopolicy", "sim", "hardware")


@functools.cache
def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``ROOTS``."""
    modules = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(module: str, path: Path) -> Iterable[str]:
    """Every dotted name ``module`` imports, with ``from a import b`` as both ``a`` and ``a.b``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def _dependencies(module: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The modules of ``known`` that ``module`` imports (the longest known prefix of each name)."""
    found = set()
    for name in _imported_names(module, path):
        parts = name.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts and ".".join(parts) != module:
            found.add(".".join(parts))
    return found


def _package_of(module: str) -> str:
    """The package a module is counted in: ``robopolicy.<sub>`` for subpackages (namespace
    packages included), else its root."""
    parts = module.split(".")
    if parts[0] == "robopolicy" and len(parts) > 1 and (REPO / "robopolicy" / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def _strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycle_in(component: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest cycle through the first node of a strongly connected component (BFS)."""
    start, members = component[0], set(component)
    parent = {start: start}
    frontier = [start]
    while frontier:
        reached = []
        for node in frontier:
            for nxt in sorted(graph.get(node, set()) & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in parent:
                    parent[nxt] = node
                    reached.append(nxt)
        frontier = reached
    raise AssertionError(f"{component} is not strongly connected")


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component; empty when acyclic."""
    return [_cycle_in(component, graph) for component in _strongly_connected(graph)]


@functools.cache
def _module_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, over every module under ``ROOTS``."""
    known = _module_files()
    return {module: _dependencies(module, path, known) for module, path in known.items()}


def _package_graph(modules: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Package -> the other packages its modules import (``_package_of``)."""
    graph: dict[str, set[str]] = {}
    for module, deps in modules.items():
        source = _package_of(module)
        targets = {_package_of(dep) for dep in deps} - {source}
        graph.setdefault(source, set()).update(targets)
    return graph


def _edge_witnesses(cycle: list[str], modules: Mapping[str, set[str]]) -> str:
    """For a package cycle, the imports behind each edge, so a failure says where to look."""
    lines = []
    for source, target in pairwise(cycle):
        culprits = sorted(
            f"{module} -> {dep}"
            for module, deps in modules.items()
            if _package_of(module) == source
            for dep in deps
            if _package_of(dep) == target
        )
        lines.append(f"  {source} -> {target}: {', '.join(culprits)}")
    return "\n".join(lines)


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_detector_finds_cycles():
    """The detector itself: each cycle is reported once, a DAG gives none."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert _cycles(graph) == [["d", "e", "d"], ["a", "b", "c", "a"]]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_function_local_and_relative_imports_are_seen(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("from . import sibling\ndef f():\n    from robopolicy.data.reader import X\n")
    names = set(_imported_names("robopolicy.data.mod", source))
    assert {"robopolicy.data.sibling", "robopolicy.data.reader"} <= names


def test_no_file_level_import_cycle():
    cycles = _cycles(_module_graph())
    assert not cycles, "file-level import cycles:\n" + _describe(cycles)


def test_no_package_level_import_cycle():
    modules = _module_graph()
    cycles = _cycles(_package_graph(modules))
    assert not cycles, "package-level import cycles:\n" + "\n".join(
        " -> ".join(cycle) + "\n" + _edge_witnesses(cycle, modules) for cycle in cycles
    )


def test_utils_is_a_leaf():
    """``robopolicy.utils`` sits below every other package: it imports none of them."""
    imported = _package_graph(_module_graph()).get("robopolicy.utils", set())
    assert not imported, f"robopolicy.utils imports {sorted(imported)}"
