"""The whole command on alexnet with random weights, for a second per measurement: these check
the plumbing (documents, records, rounds), not the figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from app.config import ALL_MODELS
from tests.helpers.repo import REPO_ROOT
from tests.helpers.results import read_result
from torchgate_bench.cli import _parse_env, _served_models
from torchgate_bench.config import BenchConfig


def test_env_pairs_are_parsed_and_checked() -> None:
    assert _parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(typer.BadParameter):
        _parse_env(["missing-equals"])


@pytest.mark.integration
def test_bench_json_smoke(weights_dir: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torchgate_bench", "bench", f"--results-dir={tmp_path}",
        "--model=alexnet", "--concurrency=4", "--duration=1", "--warmup=0",
        f"--weights-dir={weights_dir}", "--env=TORCHGATE_VERIFY_WEIGHTS=false",
        "--raw-budget=1", "--raw-threads=1", "--baseline-healthz", "--json",
        "--served=alexnet,cnn",
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout)
    assert set(document) == {
        "header", "raw", "scenarios", "batching_on_over_off", "batching_rounds", "protocols"
    }  # fmt: skip
    assert document["protocols"] is None  # --protocol all only
    header = document["header"]
    assert {"nproc", "torch_version", "torch_threads", "model", "load_tool"} <= set(header)
    assert header["served_models"] == ["alexnet", "cnn"]
    raw = document["raw"]
    assert raw["raw_images_per_s"] > 0 and raw["forward_images_per_s"] > raw["raw_images_per_s"]
    (scenario,) = document["scenarios"]
    assert scenario["name"] == "batching on"
    predict = scenario["predict"]
    assert predict["requests"] > 0
    assert predict["errors"] == 0
    assert {"p50_ms", "p90_ms", "p99_ms"} <= set(predict["latency"])
    assert predict["images_per_s"] > 0
    assert scenario["server"]["mean_batch_size"] >= 1
    assert scenario["cold_start_s"] > 0 and scenario["rss_mib"] > 0
    assert scenario["served_over_raw"] > 0
    assert scenario["healthz"]["requests"] > 0 and scenario["served_over_healthz"] > 0

    record = read_result(tmp_path, "models")  # the same run, as data for the docs
    assert record["title"] == "alexnet at c=4: served against raw in-process"
    assert record["command"].startswith("python -m torchgate_bench bench --results-dir=")
    (served, raw) = record["rows"]
    assert served[0] == "batching on" and served[1] == predict["requests_per_s"]
    assert raw[0] == "raw in-process" and raw[2] == document["raw"]["raw_images_per_s"]
    assert record["ratios"]["served / raw (batching on)"] == scenario["served_over_raw"]


@pytest.mark.integration
def test_batching_both_alternates_the_two_servers(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "torchgate_bench", "bench", f"--results-dir={tmp_path}",
        "--model=cnn", "--concurrency=4", "--duration=1", "--warmup=0", "--upload=raw",
        "--batching=both", "--no-raw", "--json", "--served=one",
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout)
    assert [s["name"] for s in document["scenarios"]] == ["batching on", "batching off"]
    rounds = document["batching_rounds"]
    assert len(rounds) == 3 and all(on > 0 and off > 0 for on, off in rounds)
    ratios = sorted(on / off for on, off in rounds)
    assert document["batching_on_over_off"] == pytest.approx(ratios[1])
    ratio = read_result(tmp_path, "models")["ratios"]["batching on / off (median of rounds)"]
    assert ratio == pytest.approx(ratios[1])


def test_the_bench_serves_what_users_run_unless_told() -> None:
    assert BenchConfig("resnet101").server_models == ALL_MODELS
    assert BenchConfig("cnn", served_models=("cnn",)).server_models == ("cnn",)
    assert BenchConfig("cnn", served_models=("gan",)).server_models == ("gan", "cnn")
    assert _served_models("all", "cnn") is None
    assert _served_models("one", "cnn") == ("cnn",)
    assert _served_models("gan, lstm", "cnn") == ("gan", "lstm")
    with pytest.raises(typer.BadParameter):
        _served_models("cnn,nope", "cnn")
