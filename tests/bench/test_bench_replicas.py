"""``python -m torchgate_bench bench-replicas`` with tiny budgets: real Redis, real replicas,
real load.

The figures themselves are printed, not judged (a shared CI box is too noisy); what must hold
is that every admin change reached all three replicas and nothing is left running or on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.programs import require_binary
from tests.helpers.repo import REPO_ROOT
from tests.helpers.results import read_result
from torchgate_bench.replicas import FanOutRow, ReplicasConfig, ReplicasResult, ThroughputRound
from torchgate_bench.replicas_cli import format_report


@pytest.mark.integration
def test_bench_replicas_json_smoke(tmp_path: Path) -> None:
    require_binary("redis-server", "redis-server")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [
        sys.executable, "-m", "torchgate_bench", "bench-replicas",
        "--admin-calls=6", "--concurrency=4", "--duration=1", "--rounds=1", "--warmup=0",
        "--json", f"--results-dir={tmp_path / 'results'}",
    ]  # fmt: skip
    completed = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},  # where its temp dir and logs go
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout)

    rows = {row["store"]: row for row in document["fan_out"]}
    assert set(rows) == {"redis", "sqlite file"}
    for row in rows.values():
        assert row["calls"] == 6 and row["converged"] == 6, row
        assert row["all_converged"] is True and row["failures"] == []
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    throughput = document["throughput"]
    (turn,) = throughput["rounds"]
    assert turn["with_store_rps"] > 0 and turn["without_store_rps"] > 0
    assert turn["errors"] == 0
    assert throughput["median_ratio"] == turn["ratio"] > 0
    assert document["nproc"] >= 1 and len(document["load_average_end"]) == 3

    # redis + 3 + 3 replicas + 2 single servers, all gone, and its temp dir and logs with them
    assert len(document["child_pids"]) >= 9
    assert [pid for pid in document["child_pids"] if Path(f"/proc/{pid}").exists()] == []
    assert [path.name for path in scratch.glob("torchgate-*")] == []

    record = read_result(tmp_path / "results", "replicas")
    assert [row[0] for row in record["rows"]] == ["redis", "sqlite file"]
    assert record["ratios"] == {"redis store / sqlite:// (median of rounds)": turn["ratio"]}


def test_report_says_whether_the_ratio_target_is_met() -> None:
    result = ReplicasResult(ReplicasConfig(admin_calls=2), nproc=2, load_average_start=(1, 1, 1))
    result.load_average_end = (2.0, 1.0, 1.0)
    result.fan_out = [FanOutRow("redis", 2, 2, 5.0, 9.0, 9.5)]
    result.rounds = [ThroughputRound(90.0, 100.0, 0), ThroughputRound(99.0, 100.0, 0)]
    report = format_report(result)
    assert "median ratio 0.945 (target >= 0.95: not met)" in report
    assert "redis" in report and "2/2" in report

    result.rounds.append(ThroughputRound(100.0, 100.0, 0))
    assert "median ratio 0.990 (target >= 0.95: met)" in format_report(result)
