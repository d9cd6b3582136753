"""Print the Open Inference Protocol comparison for a person: the setting, each peer's
pre-pass and choice, the answers check, one table of every series' medians and rounds, and
the ratios that judge torchgate (each with its rounds' values, so their spread shows)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from torchgate_bench.peers.compare import ok_rate
from torchgate_bench.peers.v2_compare import PROTOCOLS
from torchgate_bench.peers.v2_options import V2PeersResult


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _rate(value: float | None) -> str:
    """Requests per second: whole above 100, one decimal below (resnet101's few per second)."""
    return _number(value, 0 if value is not None and value >= 100 else 1)


def _prepass(result: V2PeersResult, console: Console) -> None:
    seconds = result.options.prepass_s
    for peer, by_model in result.prepass.items():
        chosen = result.configs[peer]
        if all(entry.result is None for grid in by_model.values() for entry in grid):
            console.print(f"{peer}: {chosen['cnn'].label} (pre-pass off)")
            continue
        table = Table(title=f"{peer} pre-pass (each model alone, v2 REST, {seconds:g} s each)")
        table.add_column("configuration")
        for model in by_model:
            for figure in ("req/s", "p99 ms", "errors"):
                table.add_column(f"{model} {figure}", justify="right")
        grids = list(by_model.values())
        for row, entry in enumerate(grids[0]):
            cells = [entry.config.label]
            for grid in grids:
                found = grid[row].result
                if found is None:
                    cells += ["failed", "", str(grid[row].error)[:60]]
                    continue
                cells += [
                    _rate(ok_rate(found)),
                    _number(found.latency.p99_ms),
                    str(found.errors),
                ]
            table.add_row(*cells)
        console.print(table)
        for model, config in chosen.items():
            console.print(f"{peer} for {model}: {config.label}")


def _answers(result: V2PeersResult, console: Console) -> None:
    for model in result.measurements.models:
        verdicts = {k: v for k, v in result.answers.items() if k.startswith(f"{model} ")}
        tops = sorted({v["top1"] for v in verdicts.values()})
        worst = max((v["max_abs_diff"] for v in verdicts.values()), default=0.0)
        console.print(
            f"{model}: the same request answered 200/OK by all {len(verdicts)} "
            f"(server, protocol) pairs, top class {tops}, max |probability difference| "
            f"{worst:.1e}"
        )


def _table(result: V2PeersResult, console: Console) -> None:
    measured = result.measurements
    table = Table(title="medians of the rounds (req/s: answered requests per second)")
    columns = ["model", "protocol", "server", "c", "req/s", "p50 ms", "p99 ms", "errors"]
    columns.append("req/s by round")
    for column in columns:
        table.add_column(column, justify="left" if column in columns[:3] else "right")
    for series in measured.series:
        rates = [ok_rate(r) for r in measured.results.get(series.key, [])]
        table.add_row(
            series.model,
            PROTOCOLS[series.protocol],
            series.server,
            str(series.concurrency),
            _rate(measured.median(series.key, "requests_per_s")),
            _number(measured.median(series.key, "p50_ms")),
            _number(measured.median(series.key, "p99_ms")),
            str(measured.errors(series.key)),
            " ".join(_rate(rate) for rate in rates),
        )
    console.print(table)


def render(result: V2PeersResult, console: Console, command: str | None = None) -> None:
    options, machine = result.options, result.machine
    if command:
        console.print(f"$ {command}", markup=False, highlight=False)
    models = result.measurements.models
    where = f"cnn at c={options.concurrency}" + "".join(
        f", {model} at c={options.heavy_concurrency}" for model in models[1:]
    )
    console.print(
        f"{where} · {options.rounds} rounds x {options.duration_s:g} s per series · load: "
        f"{result.tools['v2']} (REST), {result.tools['grpc']} (gRPC)"
    )
    console.print(
        f"nproc {machine.get('nproc')} · load average {machine.get('load_average')} at start, "
        f"{result.load_average_end} at end · torch {machine.get('torch_version')}"
    )
    versions = ", ".join(f"{name} {version}" for name, version in result.versions.items())
    console.print(f"peers: {versions}", markup=False, highlight=False)
    torchgate = result.torchgate
    randomized = ", ".join(torchgate["random_weights"]) or "none"
    console.print(
        f"torchgate: python -m app serve ({', '.join(torchgate['models'])}); random weights "
        f"for: {randomized}; cold start {torchgate['cold_start_s']:.1f} s"
    )
    _prepass(result, console)
    _answers(result, console)
    _table(result, console)
    measured = result.measurements
    for name, pair in measured.ratio_pairs().items():
        rounds = " ".join(_number(value, 2) for value in measured.round_ratios(*pair))
        console.print(
            f"[bold]{name}: {_number(measured.ratio(*pair), 2)}x[/bold] (rounds: {rounds})"
        )
