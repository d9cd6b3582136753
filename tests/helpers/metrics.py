"""Reading Prometheus text as the tests need it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric_total(metrics_text: str, family: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include ``labels`` (Prometheus text)."""
    found = next(f for f in text_string_to_metric_families(metrics_text) if f.name == family)
    return sum(
        sample.value
        for sample in found.samples
        if all(sample.labels.get(key) == value for key, value in labels.items())
    )
