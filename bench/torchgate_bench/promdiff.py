"""Read the server's own view of a load run: two /metrics scrapes, subtracted.

Counters and histogram sums only grow, so ``after - before`` is what happened in between,
however long the server ran before the measurement started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

PREDICT_ROUTE = "/v1/models/{name}/predict"
Labels = frozenset[tuple[str, str]]
SampleKey = tuple[str, Labels]


@dataclass(frozen=True)
class Scrape:
    """Every sample of one exposition, keyed by sample name and label set."""

    samples: Mapping[SampleKey, float]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the ``name`` samples whose labels include ``labels`` (0 when there are none)."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, sample_labels), value in self.samples.items()
            if sample == name and wanted <= sample_labels
        )

    def label_values(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """``name`` summed per value of ``label``, among samples that match ``labels``."""
        wanted = set(labels.items())
        out: dict[str, float] = {}
        for (sample, sample_labels), value in self.samples.items():
            if sample != name or not wanted <= sample_labels:
                continue
            key = dict(sample_labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out


def parse_exposition(text: str) -> Scrape:
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return Scrape(samples)


def diff(before: Scrape, after: Scrape) -> Scrape:
    """``after - before`` for every sample in ``after`` (absent before counts as 0)."""
    return Scrape(
        {key: value - before.samples.get(key, 0.0) for key, value in after.samples.items()}
    )


@dataclass(frozen=True)
class ServerStats:
    """What the server saw of one model between two scrapes (``http_codes``: predict only).

    With several worker processes each keeps its own metrics and a scrape reaches one of them,
    so these figures are one worker's (and wrong if the two scrapes reach different ones).
    """

    batches: int
    items: int
    mean_batch_size: float
    mean_forward_ms: float
    mean_queue_wait_ms: float
    http_codes: dict[str, int]


def _ratio(numerator: float, denominator: float, scale: float = 1.0) -> float:
    return numerator / denominator * scale if denominator > 0 else math.nan


def server_stats(delta: Scrape, model: str) -> ServerStats:
    """Batch and forward figures for ``model`` from a scrape difference."""
    batches = delta.total("torchgate_batch_size_count", model=model)
    items = delta.total("torchgate_batch_size_sum", model=model)
    forwards = delta.total("torchgate_inference_seconds_count", model=model)
    forward_s = delta.total("torchgate_inference_seconds_sum", model=model)
    waits = delta.total("torchgate_queue_wait_seconds_count", model=model)
    wait_s = delta.total("torchgate_queue_wait_seconds_sum", model=model)
    codes = delta.label_values(
        "torchgate_http_requests_total", "code", model=model, route=PREDICT_ROUTE, method="POST"
    )
    return ServerStats(
        batches=round(batches),
        items=round(items),
        mean_batch_size=_ratio(items, batches),
        mean_forward_ms=_ratio(forward_s, forwards, 1000.0),
        mean_queue_wait_ms=_ratio(wait_s, waits, 1000.0),
        http_codes={code: round(count) for code, count in sorted(codes.items()) if count},
    )


def scrape(base_url: str, timeout_s: float = 30.0) -> Scrape:
    """GET /metrics once; an error here is a broken server, so it propagates."""
    import httpx

    response = httpx.get(f"{base_url}/metrics", timeout=timeout_s)
    response.raise_for_status()
    return parse_exposition(response.text)
