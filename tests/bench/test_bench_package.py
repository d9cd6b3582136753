"""The bench's shape: a package of its own, without import cycles, that the service never
imports, in modules small enough to read (STYLE rules 9 and 15)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import torchgate_bench

PACKAGE = Path(torchgate_bench.__file__).resolve().parent
SERVICE = Path(__file__).resolve().parents[2] / "app"
MAX_LINES = 300


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, prefix: str) -> Iterator[str]:
    """Every module named by an import anywhere in the file (top level, inside functions,
    under TYPE_CHECKING) that starts with ``prefix``; ``from pkg import module`` counts as
    the module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith(prefix))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(prefix):
            yield node.module or ""
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = {target for target in _imported(tree, "torchgate_bench") if target in modules}
        graph[name].discard(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_bench_has_no_import_cycles() -> None:
    graph = _import_graph()
    assert "torchgate_bench.loadgen" in graph["torchgate_bench.drivers"]  # the graph is read
    assert _cycles(graph) == []


def test_the_service_never_imports_the_bench() -> None:
    offenders = [
        str(path.relative_to(SERVICE.parent))
        for path in SERVICE.rglob("*.py")
        if any(_imported(ast.parse(path.read_text()), "torchgate_bench"))
    ]
    assert offenders == []
    assert not (SERVICE / "bench").exists()


def test_no_bench_module_is_over_300_lines() -> None:
    long = {
        _module_name(path): count
        for path in PACKAGE.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
