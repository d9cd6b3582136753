"""How the bench's tables show a figure: thousands separated, a dash for what is unknown."""

from __future__ import annotations

import math

from torchgate_bench.load import LoadResult


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def load_cells(load: LoadResult) -> list[str]:
    """requests/s, images/s, p50, p90 and p99 ms, errors / requests: a load's table cells."""
    return [
        fmt(load.requests_per_s),
        fmt(load.images_per_s),
        fmt(load.latency.p50_ms),
        fmt(load.latency.p90_ms),
        fmt(load.latency.p99_ms),
        f"{load.errors} / {load.requests}",
    ]
