from app.bench.startup import StartupResult


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
