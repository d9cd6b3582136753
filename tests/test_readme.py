"""The README's two newcomer commands stay true: CI runs exactly the documented test command."""

from tests.helpers.repo import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _readme_commands() -> list[str]:
    lines = README.splitlines()
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


def test_readme_is_a_short_front_door() -> None:
    assert len(README.splitlines()) <= 250, "move the detail to a page under docs/"
    title, sentence = [line for line in README.splitlines() if line.strip()][:2]
    assert title == "# torchgate" and not sentence.startswith(("#", " "))
    # The system packages come after the commands, not before them.
    assert README.index("python -m pytest") < README.index("apt-get")
