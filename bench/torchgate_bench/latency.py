"""Latency percentiles from raw samples, computed the same way for every load generator."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks.

    This is numpy's default ("linear") method, so figures match what an analyst would get from
    ``np.percentile`` on the same samples; NaN when there are none.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100; got {q}")
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True)
class LatencySummary:
    """Latency figures in milliseconds, as printed and as put in the JSON report."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencySummary:
        """Summarise per-request latencies measured in seconds."""
        millis = [s * 1000.0 for s in samples]
        mean = sum(millis) / len(millis) if millis else math.nan
        return cls(
            p50_ms=percentile(millis, 50.0),
            p90_ms=percentile(millis, 90.0),
            p99_ms=percentile(millis, 99.0),
            mean_ms=mean,
            max_ms=max(millis) if millis else math.nan,
        )
