"""The protocols comparison (``bench --protocol all``) in the JSON document and as a table."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from torchgate_bench.formatting import fmt, load_cells
from torchgate_bench.protocols import ProtocolComparison


def protocols_document(comparison: ProtocolComparison | None) -> dict[str, Any] | None:
    if comparison is None:
        return None
    return {
        protocol: {
            **load.to_dict(),
            "server_cpu_ms_per_request": comparison.cpu_ms_per_request(protocol),
            "client_cpu_ms_per_request": comparison.client_cpu_ms_per_request(protocol),
            "over_v1": comparison.ratio(protocol),
            "rounds_requests_per_s": [rates[protocol] for rates in comparison.rounds],
        }
        for protocol, load in comparison.results.items()
    }


def protocols_table(comparison: ProtocolComparison) -> Table:
    table = Table(
        title="protocols: one server, alternating rounds (same images, same runtime)",
        title_justify="left",
    )
    table.add_column("figure")
    for protocol, load in comparison.results.items():
        table.add_column(f"{protocol} ({load.tool})", justify="right")
    labels = ["requests/s", "images/s", "latency p50 ms", "latency p90 ms", "latency p99 ms"]
    labels += ["errors / requests", "server CPU ms / request", "client CPU ms / request"]
    labels += ["requests/s over v1 (median)", "  each round"]
    columns = [
        [
            *load_cells(load),
            fmt(comparison.cpu_ms_per_request(protocol), 2),
            fmt(comparison.client_cpu_ms_per_request(protocol), 2),
            fmt(comparison.ratio(protocol), 3),
            " ".join(f"{rates[protocol]:,.0f}" for rates in comparison.rounds),
        ]
        for protocol, load in comparison.results.items()
    ]
    for index, label in enumerate(labels):
        table.add_row(label, *(column[index] for column in columns))
    return table
