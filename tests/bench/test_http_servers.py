"""``python -m app bench-http``: uvicorn against granian in alternating rounds."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from app.__main__ import cli
from app.bench.http_servers import HttpBenchConfig, HttpBenchResult, Slice
from app.bench.http_servers_cli import format_report
from tests.conftest import REPO_ROOT, require_binary


def _result(rates: dict[tuple[str, str], list[float]]) -> HttpBenchResult:
    """One worker count; ``rates`` gives each (server, target)'s requests/s, round by round."""
    result = HttpBenchResult(
        HttpBenchConfig(workers=(1,), rounds=3),
        {"nproc": 2, "load_average": [0.5, 0.4, 0.3]},
        {"uvicorn": "u", "httptools": "h", "granian": "g", "uvloop": "l", "load_tool": "wrk"},
        [0.6, 0.5, 0.4],
        input_bytes=166,
    )
    for (server, target), per_round in rates.items():
        for index, rate in enumerate(per_round, start=1):
            result.slices.append(Slice(1, index, server, target, rate, 1.0, 5.0, 0))
    return result


def test_the_report_gives_medians_and_ratios_of_the_rounds() -> None:
    result = _result(
        {
            ("uvicorn", "healthz"): [4000, 5000, 6000],
            ("granian", "healthz"): [9000, 5000, 7000],
            ("uvicorn", "cnn"): [2000, 100, 3000],  # a stall in one round: the median ignores it
            ("granian", "cnn"): [3000, 3200, 2000],
        }
    )
    assert result.median(1, "uvicorn", "cnn", "requests_per_s") == 2000
    report = format_report(result)
    assert "nproc 2 · load average [0.5, 0.4, 0.3] at start, [0.6, 0.5, 0.4] at end" in report
    assert "workers 1: healthz 1.40x · cnn 1.50x" in report
    lines = report.splitlines()
    uvicorn_median = next(line for line in lines if line.split()[:2] == ["1", "uvicorn"])
    assert uvicorn_median.split()[-1] == "0.40x"  # cnn/healthz: 2000 / 5000
    slice_rows = [line.split() for line in lines if line.split()[:1] == ["1"]]
    assert len([row for row in slice_rows if row[3:4] == ["cnn"]]) == 6  # every slice
    document = result.to_dict()
    assert document["medians"]["workers=1"]["granian"]["healthz"]["requests_per_s"] == 7000


def test_unknown_servers_and_worker_counts_are_refused() -> None:
    runner = CliRunner()
    wrong_server = runner.invoke(cli, ["bench-http", "--servers", "uvicorn,nginx"])
    assert wrong_server.exit_code == 2
    assert "choose from uvicorn, granian" in wrong_server.output
    wrong_workers = runner.invoke(cli, ["bench-http", "--workers", "1,0"])
    assert wrong_workers.exit_code == 2
    assert "positive whole numbers" in wrong_workers.output


def test_a_short_run_measures_both_servers_in_alternating_rounds() -> None:
    require_binary("wrk", "wrk")
    command = [
        sys.executable, "-m", "app", "bench-http", "--workers=1", "--rounds=2",
        "--duration=1", "--warmup=0", "--concurrency=8", "--json",
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout)
    assert document["machine"]["nproc"] >= 1
    assert document["versions"]["granian"] and document["versions"]["uvicorn"]
    slices = document["slices"]
    assert len(slices) == 2 * 2 * 2  # rounds x servers x targets
    assert all(s["requests_per_s"] > 0 and s["errors"] == 0 for s in slices)
    # round 1 runs uvicorn first, round 2 granian first: the machine's drift is shared
    first = [s["server"] for s in slices if s["target"] == "cnn"]
    assert first == ["uvicorn", "granian", "granian", "uvicorn"]
    medians = document["medians"]["workers=1"]
    assert all(medians[server]["cnn"]["requests_per_s"] > 0 for server in ("uvicorn", "granian"))
