"""Load results: slices of one measurement merged into one."""

from tests.helpers.bench_results import load_result
from torchgate_bench.latency import LatencySummary
from torchgate_bench.load import LoadResult, merge_results


def test_merged_slices_add_counts_and_keep_the_median_slices_latency() -> None:
    slow, mid, fast = load_result(100), load_result(200), load_result(300)
    mid = LoadResult("wrk", 200, 1, 2.0, LatencySummary(1, 2, 3, 1.5, 4), 1)
    merged = merge_results([fast, slow, mid])
    assert (merged.requests, merged.errors, merged.duration_s) == (600, 1, 6.0)
    assert merged.latency == mid.latency
