"""``python -m app bench ...`` hands over to the separate bench package, or says how to get it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.bench_handoff import BENCH_COMMANDS
from tests.helpers.repo import REPO_ROOT

WITHOUT_THE_BENCH = """
import sys
sys.modules["torchgate_bench"] = None  # as if bench/ were not installed
sys.argv = ["python -m app", *sys.argv[1:]]
from app.__main__ import main
main()
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_service_cli_lists_every_bench_command() -> None:
    from torchgate_bench.__main__ import cli

    assert set(BENCH_COMMANDS) == {command.name for command in cli.registered_commands}


@pytest.mark.integration
@pytest.mark.parametrize("command", ["bench", "bench-graphs"])
def test_a_bench_command_runs_the_bench_with_the_same_arguments(command: str) -> None:
    completed = _run("-m", "app", command, "--help")
    assert completed.returncode == 0, completed.stderr
    assert f"python -m torchgate_bench {command} [OPTIONS]" in completed.stdout
    assert "--results-dir" in completed.stdout


@pytest.mark.integration
def test_without_the_bench_one_sentence_says_how_to_install_it() -> None:
    completed = _run("-c", WITHOUT_THE_BENCH, "bench", "--model", "cnn")
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "pip install -e ./bench" in completed.stderr
    assert completed.stderr.strip().count(". ") == 0  # one sentence
