"""The test suite's own layout: test modules share helpers through tests/helpers and fixtures
through conftest.py files (by name), and never import each other; conftest files hold
fixtures and hooks only; every marker a test carries is registered."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.repo import REPO_ROOT

TESTS = REPO_ROOT / "tests"
HELPERS = TESTS / "helpers"
PYTHON_FILES = sorted(TESTS.rglob("*.py"))
CONFTESTS = [path for path in PYTHON_FILES if path.name == "conftest.py"]
TEST_MODULES = {path.stem for path in PYTHON_FILES if path.name.startswith("test_")}


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def _imported_modules(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) for every import anywhere in the file, functions included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            if node.module == "tests":  # from tests import conftest / helpers
                yield from ((node.lineno, f"tests.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):  # relative: there are no test packages
            yield node.lineno, "." * node.level + (node.module or "")


def _forbidden(module: str) -> bool:
    """A test module or conftest, by dotted path (``tests.api.test_admin``, ``tests.conftest``)
    or by the bare name pytest's rootdir insertion would let resolve (``conftest``,
    ``test_admin``); anything relative."""
    parts = module.split(".")
    if module.startswith("."):
        return True
    if parts[0] == "tests":
        return module not in ("tests", "tests.helpers") and parts[:2] != ["tests", "helpers"]
    return parts[0] == "conftest" or parts[0] in TEST_MODULES


@pytest.mark.parametrize("path", PYTHON_FILES, ids=_relative)
def test_no_test_module_imports_another(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imports = _imported_modules(tree)
    bad = [f"line {line}: {module}" for line, module in imports if _forbidden(module)]
    assert not bad, f"{_relative(path)} imports test modules (move it to tests/helpers): {bad}"


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "fixture"
        and isinstance(target.value, ast.Name)
        and target.value.id == "pytest"
    )


def _top_level_problems(tree: ast.Module) -> Iterator[str]:
    """Anything at a conftest's top level but its docstring, imports, fixtures and hooks."""
    for index, node in enumerate(tree.body):
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("pytest_") or any(map(_is_fixture, node.decorator_list)):
                continue
            yield f"line {node.lineno}: def {node.name} is neither a fixture nor a hook"
            continue
        name = getattr(node, "name", type(node).__name__)
        yield f"line {node.lineno}: {name} (helpers and constants go to tests/helpers)"


@pytest.mark.parametrize("path", CONFTESTS, ids=_relative)
def test_conftest_files_hold_fixtures_and_hooks_only(path: Path) -> None:
    problems = list(_top_level_problems(ast.parse(path.read_text(), str(path))))
    assert not problems, f"{_relative(path)}: {problems}"


@pytest.mark.parametrize("path", sorted(HELPERS.glob("*.py")), ids=_relative)
def test_helpers_define_no_fixtures(path: Path) -> None:
    """Fixtures live in conftest files, found by name; a fixture in a helper module would have
    to be imported into each test module that uses it."""
    tree = ast.parse(path.read_text(), str(path))
    fixtures = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(map(_is_fixture, node.decorator_list))
    ]
    assert not fixtures, f"{_relative(path)} defines fixtures {fixtures}: move them to a conftest"


def test_the_markers_are_registered_and_none_is_deselected_by_default() -> None:
    """`python -m pytest` (the README's command, what CI runs) runs everything."""
    options = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    registered = {line.split(":")[0] for line in options["ini_options"]["markers"]}
    assert {"integration", "browser", "soak"} <= registered
    assert "--strict-markers" in options["ini_options"]["addopts"]
    assert " -m " not in f" {options['ini_options']['addopts']} "


def test_test_modules_have_unique_names() -> None:
    """pytest imports a test file by its basename (the folders are no packages): two of a name
    collide, and one of them is never run."""
    names = [path.name for path in TESTS.rglob("test_*.py")]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"rename: {duplicates}"
