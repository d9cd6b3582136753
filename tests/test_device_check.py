"""tools/device: the step runner leaves nothing behind, the summary reads what steps wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.repo import REPO_ROOT

pytestmark = pytest.mark.integration

DEVICE = REPO_ROOT / "tools" / "device"
ESCAPE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         start_new_session=True)  # as the bench starts its servers
open(sys.argv[1], "w").write(str(child.pid))
if sys.argv[2] == "hang":
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _step(tmp_path: Path, limit: str, mode: str) -> tuple[int, int]:
    pid_file, record = tmp_path / f"{mode}.pid", tmp_path / "steps.jsonl"
    completed = subprocess.run(
        [
            sys.executable,
            str(DEVICE / "step.py"),
            mode,
            limit,
            "--record",
            str(record),
            "--",
            sys.executable,
            "-c",
            ESCAPE,
            str(pid_file),
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return completed.returncode, int(pid_file.read_text())


def test_a_step_past_its_limit_is_ended_with_what_it_started(tmp_path: Path) -> None:
    started = time.monotonic()
    status, server = _step(tmp_path, "2", "hang")
    assert status == 124
    assert time.monotonic() - started < 30
    assert not _alive(server)  # in a session of its own, and still ended


def test_processes_left_behind_by_a_finished_step_are_ended(tmp_path: Path) -> None:
    status, server = _step(tmp_path, "30", "exit")
    assert status == 0
    assert not _alive(server)
    (line,) = (tmp_path / "steps.jsonl").read_text().splitlines()
    assert json.loads(line)["step"] == "exit" and json.loads(line)["status"] == 0


def test_the_summary_says_what_is_missing_instead_of_failing(tmp_path: Path) -> None:
    (tmp_path / "steps.jsonl").write_text('{"step": "load", "status": 124, "seconds": 180.0}\n')
    completed = subprocess.run(
        [
            sys.executable,
            str(DEVICE / "summarize.py"),
            str(tmp_path),
            "--steps",
            str(tmp_path / "steps.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert "| load | TIMEOUT (124) | 180.0 |" in summary
    assert "models.json missing" in summary and "startup.json missing" in summary
