import io
import json
import math

from rich.console import Console

from tests.helpers.bench_results import MACHINE, bench_result, scenario_result
from torchgate_bench.config import BenchConfig
from torchgate_bench.promdiff import ServerStats
from torchgate_bench.raw import RawResult
from torchgate_bench.report import render, to_document
from torchgate_bench.runner import BenchResult


def test_document_has_every_figure_and_the_ratios() -> None:
    document = to_document(bench_result(), MACHINE)
    json.dumps(document, allow_nan=False)
    assert document["header"]["nproc"] == 2
    assert document["header"]["model"] == "alexnet"
    on, off = document["scenarios"]
    assert on["predict"]["requests_per_s"] == 80.0
    assert on["predict"]["images_per_s"] == 80.0
    assert on["served_over_raw"] == 0.8
    assert on["served_over_healthz"] == 0.02
    assert on["rss_mib"] == 512
    assert on["server_cores_busy"] == 1.5
    assert on["server_cpu_ms_per_request"] == 3000 / 160
    assert off["healthz"] is None and off["served_over_healthz"] is None
    assert document["batching_on_over_off"] == 2.0
    assert document["raw"]["raw_images_per_s"] == 100.0


def test_unknown_figures_become_null() -> None:
    result = bench_result()
    result.scenarios[0].server = ServerStats(0, 0, math.nan, math.nan, math.nan, {})
    document = to_document(result, MACHINE)
    assert document["scenarios"][0]["server"]["mean_batch_size"] is None


def test_tables_show_both_scenarios_and_the_batching_gain() -> None:
    out = io.StringIO()
    render(bench_result(), MACHINE, Console(file=out, width=140))
    text = out.getvalue()
    assert "batching on" in text and "batching off" in text
    assert "batching on / off (images/s): 2.00x" in text
    assert "served / healthz" in text
    assert "script, 1 thread" in text


def test_healthz_ratio_is_the_median_of_the_alternating_rounds() -> None:
    result = bench_result()
    result.scenarios[0].paired_rates = [(100.0, 400.0), (90.0, 150.0), (120.0, 240.0)]
    document = to_document(result, MACHINE)
    assert document["scenarios"][0]["served_over_healthz"] == 0.5  # of 0.25, 0.6, 0.5
    assert document["scenarios"][0]["paired_rates"] == [
        [100.0, 400.0],
        [90.0, 150.0],
        [120.0, 240.0],
    ]
    out = io.StringIO()
    render(result, MACHINE, Console(file=out, width=160))
    assert "0.25 0.60 0.50" in out.getvalue()


def test_batching_gain_is_the_median_of_the_alternating_rounds() -> None:
    result = bench_result()
    result.batching_rounds = [(300.0, 100.0), (200.0, 100.0), (500.0, 100.0)]
    document = to_document(result, MACHINE)
    assert document["batching_on_over_off"] == 3.0
    out = io.StringIO()
    render(result, MACHINE, Console(file=out, width=160))
    assert "median of alternating rounds 3.00 2.00 5.00" in out.getvalue()


def _alexnet_at(concurrency: int) -> BenchResult:
    """alexnet's raw trials on two cores: batch 16 beats batch 8, which beats 4."""
    trials = [
        {"variant": "eager", "threads": 2, "batch_size": size, "images_per_s": rate}
        for size, rate in ((4, 125.0), (8, 200.0), (16, 250.0))
    ]
    raw = RawResult(
        "alexnet", "2.x", 2, 2.0, "eager", 2, 16, 250.0, 1 / (1 / 250 + 0.002), trials=trials
    )
    return BenchResult(
        BenchConfig("alexnet", concurrency=concurrency), "wrk", 4470, "photo.jpg", raw,
        [scenario_result("batching on", 200)],
    )  # fmt: skip


def test_raw_at_the_batches_a_load_can_form_is_reported_beside_the_plain_ratio() -> None:
    """Eight clients never form raw's best batch of 16: the second ratio compares against
    the best batch of at most 8 (decoding added the same way)."""
    result = _alexnet_at(8)
    assert result.raw is not None
    assert result.raw.raw_up_to(8) == 1 / (1 / 200 + 0.002)
    assert result.raw.raw_up_to(2) is None  # no batch that small was measured
    (scenario,) = to_document(result, MACHINE)["scenarios"]
    assert scenario["served_over_raw"] == 100 / (1 / (1 / 250 + 0.002))
    assert scenario["served_over_reachable_raw"] == 100 / (1 / (1 / 200 + 0.002))
    output = io.StringIO()
    render(result, MACHINE, Console(file=output, width=200))
    assert "served / raw at batches <= 8" in output.getvalue()
    # with 16 in flight raw's best batch is reachable: one ratio, no second row
    wide = _alexnet_at(16)
    assert to_document(wide, MACHINE)["scenarios"][0]["served_over_reachable_raw"] is None
    output = io.StringIO()
    render(wide, MACHINE, Console(file=output, width=200))
    assert "served / raw at batches" not in output.getvalue()
