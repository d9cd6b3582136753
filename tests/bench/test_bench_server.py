import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchgate_bench.server import ServerProcess, cpu_seconds, process_tree, rss_bytes

pytestmark = pytest.mark.integration


def test_process_tree_includes_children_and_rss_is_read_from_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in process_tree(os.getpid())
        assert rss_bytes(child.pid) > 0
        assert cpu_seconds(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()
    assert rss_bytes(child.pid) == 0


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    env = {**os.environ, "TORCHGATE_MODELS": "no-such-model"}
    server = ServerProcess(env, ready_timeout_s=60, log_dir=tmp_path)
    with pytest.raises(RuntimeError, match="no-such-model"), server:
        pass
    (log,) = tmp_path.iterdir()
    assert "no-such-model" in log.read_text()
