"""The checks a maintainer relies on, run with the tests (so CI runs them): ruff's lint and
format, import-linter's layer contracts (pyproject.toml, [tool.importlinter]), and the size
of a module (issue 25: none over 300 lines except generated code)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 300
# protoc's output (python -m app.api.grpc.proto.generate), kept as generated
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", ".pyi")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_ruff_finds_nothing() -> None:
    result = _run(_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing() -> None:
    result = _run(_tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_contracts_are_kept() -> None:
    """The core imports no web framework, gRPC or adapter; the layers only point down."""
    result = _run(_tool("lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def test_no_module_is_over_300_lines() -> None:
    """Small modules with one job each: a module that grows past the limit is split by
    responsibility (generated protobuf modules excepted)."""
    modules = sorted(
        path
        for folder in ("app", "bench")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if not path.name.endswith(GENERATED_SUFFIXES)
    )
    sizes = {path.relative_to(REPO_ROOT): len(path.read_text().splitlines()) for path in modules}
    over = [f"{path} ({lines} lines)" for path, lines in sizes.items() if lines > MAX_MODULE_LINES]
    assert modules, "no modules found under app/ and bench/"
    assert not over, f"over {MAX_MODULE_LINES} lines, split them: {', '.join(over)}"
