"""Print a peer comparison for a person: the setting, each peer's pre-pass, the rounds, ratios.

Everything the docs' performance page needs from one run is on screen (and in the
JSON document): nproc and the load average, the chosen peer configuration, per-round
figures, the median torchgate/peer ratio and torchgate's served/healthz ratio.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from torchgate_bench.load import LoadResult
from torchgate_bench.peers.compare import PeerComparison, ok_rate
from torchgate_bench.peers.run import PeersResult

RATIO_TARGET = 1.5  # issue 13: torchgate >= 1.5x TorchServe's best configuration
HEALTHZ_TARGET = 0.6
P99_TARGET_MS = 25.0


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cells(result: LoadResult | None) -> list[str]:
    if result is None:
        return ["-", "-", "-", "-"]
    latency = result.latency
    return [f"{ok_rate(result):,.0f}", _ms(latency.p50_ms), _ms(latency.p99_ms), str(result.errors)]


def _pre_pass(comparison: PeerComparison, console: Console, seconds: float) -> None:
    if not comparison.grid:
        return
    table = Table(title=f"{comparison.peer} pre-pass ({seconds:g} s each)")
    for column in ("configuration", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for entry in comparison.grid:
        cells = _cells(entry.result) if entry.result is not None else ["failed", "", "", ""]
        table.add_row(entry.config.label, *cells)
    console.print(table)
    if any(entry.error for entry in comparison.grid):
        for entry in comparison.grid:
            if entry.error:
                console.print(f"  {entry.config.label}: {entry.error[:200]}")


def _rounds(comparison: PeerComparison, console: Console) -> None:
    peer = comparison.peer
    table = Table(title=f"torchgate vs {peer} ({comparison.config.label}), alternating rounds")
    columns = ["round", "first"]
    columns += [f"torchgate {c}" for c in ("req/s", "p50", "p99", "err")]
    columns += [f"{peer} {c}" for c in ("req/s", "p50", "p99", "err")]
    columns += ["/healthz req/s", "ratio", "served/healthz"]
    for column in columns:
        table.add_column(column, justify="right")
    for index, entry in enumerate(comparison.rounds, 1):
        healthz = f"{ok_rate(entry.healthz):,.0f}" if entry.healthz is not None else "-"
        table.add_row(
            str(index),
            entry.order[0],
            *_cells(entry.torchgate),
            *_cells(entry.peer),
            healthz,
            _x(entry.ratio),
            f"{entry.served_over_healthz:.2f}" if entry.served_over_healthz else "-",
        )
    console.print(table)


def render(result: PeersResult, console: Console, command: str | None = None) -> None:
    options, machine = result.options, result.machine
    if command:
        console.print(f"$ {command}", markup=False, highlight=False)
    console.print(
        f"cnn · c={options.concurrency} · {options.rounds} rounds x {options.duration_s:g} s per "
        f"side · one {result.input['name']} ({result.input['bytes']} B) per request as a raw "
        f"body · load: {result.load_tool}"
    )
    console.print(
        f"nproc {machine.get('nproc')} · load average {machine.get('load_average')} at start, "
        f"{result.load_average_end} at end · torch {machine.get('torch_version')}"
    )
    torchgate = result.torchgate
    models = ", ".join(f"{name} {status}" for name, status in torchgate["models"].items())
    randomized = ", ".join(torchgate["random_weights"]) or "none"
    console.print(
        f"torchgate: python -m app serve ({models}); random weights under the official file "
        f"names (offline) for: {randomized}; cold start {torchgate['cold_start_s']:.1f} s"
    )
    for comparison in result.comparisons:
        _pre_pass(comparison, console, options.grid_seconds)
        answers = comparison.answers
        console.print(
            f"{comparison.peer}: {comparison.config.label}; same answer as torchgate: top-1 "
            f"{answers['top1']['peer']!r}, max |probability difference| "
            f"{answers['max_abs_diff']:.1e} (tolerance {answers['tolerance']:g})"
        )
        _rounds(comparison, console)
        p99 = comparison.median("torchgate", "p99_ms")
        target = f"; target >= {RATIO_TARGET}x" if comparison.peer == "torchserve" else ""
        console.print(
            f"[bold]torchgate / {comparison.peer}: {_x(comparison.median_ratio)}[/bold] (median "
            f"of rounds{target}) · torchgate p99 {_ms(p99)} ms (target <= {P99_TARGET_MS:g}) · "
            f"served/healthz {_x(comparison.median_served_over_healthz)} "
            f"(target >= {HEALTHZ_TARGET})"
        )
