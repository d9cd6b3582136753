"""One real server for the abuse cases, with tight limits so each case is over in seconds, and
the figures every case measured, printed at the end of the run (and written to
``$TORCHGATE_TEST_ABUSE_REPORT`` when set)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.helpers.abuse import ADMIN_TOKEN, FIGURES, LIMITS, AbuseServer, Figures
from tests.helpers.servers import free_port, serve_process


@pytest.fixture(scope="package")
def abuse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AbuseServer]:
    """``serve --workers 2`` with the cnn, as an attacker with a laptop would meet it."""
    grpc_port = free_port()
    env = {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_GRPC_PORT": str(grpc_port),
        "TORCHGATE_ACCESS_LOG": "false",
        **LIMITS,
    }
    log = tmp_path_factory.mktemp("abuse") / "server.log"
    with serve_process(env, log, args=("--workers", "2")) as (port, process):
        yield AbuseServer(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", process.pid, env)


@pytest.fixture
def record_figures(request: pytest.FixtureRequest) -> list[Figures]:
    """Append a case's figures here: they are printed with the run's summary (in the process
    that ran the case: run the suite with ``-n 0`` to see them all)."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = terminalreporter.config.stash.get(FIGURES, [])
    if not figures:
        return
    terminalreporter.section("abuse cases: the service for everyone else")
    for case in figures:
        terminalreporter.write_line(case.line())
    report = os.environ.get("TORCHGATE_TEST_ABUSE_REPORT")
    if report:
        Path(report).write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
