"""The cold start and memory figures, against torch alone, for a person and as data."""

from pathlib import Path

from tests.helpers.results import check_document
from torchgate_bench.results import ResultsRun
from torchgate_bench.startup import StartupResult
from torchgate_bench.startup_report import format_startup, startup_record


def test_startup_ratios_are_relative_to_torch_alone() -> None:
    result = StartupResult(
        cold_start_s=6.0,
        torch_load_s=0.5,
        fresh_process_load_s=3.0,
        rss_bytes=2_500,
        baseline_rss_bytes=1_000,
        parameter_bytes=1_000,
        requests=10_000,
        errors=0,
    )
    figures = result.to_dict()
    assert figures["cold_start_ratio"] == 12.0
    assert figures["fresh_process_ratio"] == 2.0
    assert figures["memory_ratio"] == 1.25


def test_the_breakdown_says_where_the_cold_start_goes() -> None:
    result = StartupResult(
        cold_start_s=5.0,
        torch_load_s=0.5,
        fresh_process_load_s=3.5,
        rss_bytes=2_000,
        baseline_rss_bytes=1_000,
        parameter_bytes=1_000,
        requests=100,
        errors=0,
        models={"cnn": {"load_seconds": 0.25, "graph": "eager", "graph_at_end": "aot"}},
        torch_import_s=3.0,
        app_import_s=3.5,
    )
    lines = result.breakdown().splitlines()
    assert "3.00 s" in lines[0] and "0.50 s" in lines[1]
    assert "load cnn" in lines[2] and "0.25 s" in lines[2] and "after the load aot" in lines[2]


def test_the_record_holds_each_figure_against_its_target(tmp_path: Path) -> None:
    result = StartupResult(
        cold_start_s=6.0,
        torch_load_s=5.0,
        fresh_process_load_s=4.0,
        rss_bytes=3 * 1024**3,
        baseline_rss_bytes=1024**3,
        parameter_bytes=1024**3,
        requests=100,
        errors=0,
        models={"gan": {"status": "unavailable", "reason": "no checkpoint", "first_request": 409}},
    )
    record = check_document(ResultsRun(tmp_path).document(startup_record(result)), "startup")
    assert [row[3:] for row in record["rows"]] == [[1.2, 1.3], [1.5, 1.5], [1.5, 1.25]]
    assert record["rows"][2][1:3] == [3072.0, 2048.0]  # MiB
    assert record["ratios"]["memory / (parameters + baseline)"] == 1.5
    assert "gan: unavailable: no checkpoint" in record["notes"]
    text = format_startup(result, {"nproc": 2})
    assert "cold start ratio          1.20x   (target <= 1.3x)" in text
    assert text.endswith("gan: unavailable: no checkpoint")
