"""The README's two newcomer commands stay true: CI runs exactly the documented test command."""

from tests.conftest import REPO_ROOT


def _readme_commands() -> list[str]:
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines[:12] if line.startswith("    ")]


def test_readme_opens_with_exactly_two_commands() -> None:
    serve, test = _readme_commands()
    assert serve.endswith("pip install -e . && python -m app serve")
    assert "bench" not in serve  # the service alone; the bench is a package of its own
    assert test == (
        "python3 -m venv .venv && . .venv/bin/activate && "
        "pip install -e '.[test]' -e ./bench && python -m pytest"
    )


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, test = _readme_commands()
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert test in [line.strip() for line in ci]
    assert "set -euo pipefail" in ci
