import math

import numpy as np
import pytest

from torchgate_bench.latency import LatencySummary, percentile


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    samples = [0.3, 12.0, 5.5, 7.25, 1.0, 9.0, 2.0]
    assert percentile(samples, q) == pytest.approx(np.percentile(samples, q))


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([10.0, 20.0], 50) == 15.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert percentile([42.0], 99) == 42.0


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_reports_milliseconds() -> None:
    summary = LatencySummary.from_seconds([0.010, 0.020, 0.030])
    assert summary.p50_ms == pytest.approx(20.0)
    assert summary.mean_ms == pytest.approx(20.0)
    assert summary.max_ms == pytest.approx(30.0)
    assert math.isnan(LatencySummary.from_seconds([]).p99_ms)
