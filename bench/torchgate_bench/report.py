"""Render a bench result: one JSON document with every figure, or rich tables for a person."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from torchgate_bench.formatting import fmt, load_cells
from torchgate_bench.protocols_report import protocols_document, protocols_table
from torchgate_bench.results import finite
from torchgate_bench.runner import BenchResult, ScenarioResult

_MIB = 1024 * 1024


def _ratio(numerator: float, denominator: float | None) -> float | None:
    if denominator is None or not denominator > 0 or math.isnan(numerator):
        return None
    return numerator / denominator


def served_over_raw(scenario: ScenarioResult, result: BenchResult) -> float | None:
    """Served images/s as a share of what this model does in-process on the same machine."""
    raw = result.raw.raw_images_per_s if result.raw is not None else None
    return _ratio(scenario.predict.images_per_s, raw)


def served_over_reachable_raw(scenario: ScenarioResult, result: BenchResult) -> float | None:
    """Served over raw at the batches this load can form (at most concurrency x images per
    request); None when that is raw's own best batch, which the plain ratio already uses."""
    raw = result.raw
    in_flight = result.config.concurrency * max(1, result.config.images_per_request)
    if raw is None or in_flight >= raw.best_batch_size:
        return None
    return _ratio(scenario.predict.images_per_s, raw.raw_up_to(in_flight))


def served_over_healthz(scenario: ScenarioResult) -> float | None:
    """Predict requests/s over no-op requests/s: how far the model is from the HTTP ceiling.
    The median of the alternating rounds when there are some (see runner.HEALTHZ_ROUNDS)."""
    ratios = [r for r in (_ratio(p, h) for p, h in scenario.paired_rates) if r is not None]
    if ratios:
        return statistics.median(ratios)
    healthz = scenario.healthz.requests_per_s if scenario.healthz is not None else None
    return _ratio(scenario.predict.requests_per_s, healthz)


def batching_gain(result: BenchResult) -> float | None:
    """Images/s with the configured batching over images/s with batch size 1: the median of
    the alternating rounds when there are some, else the two scenarios' ratio."""
    ratios = [r for r in (_ratio(on, off) for on, off in result.batching_rounds) if r]
    if ratios:
        return statistics.median(ratios)
    by_name = {s.name: s for s in result.scenarios}
    on, off = by_name.get("batching on"), by_name.get("batching off")
    if on is None or off is None:
        return None
    return _ratio(on.predict.images_per_s, off.predict.images_per_s)


def _healthz_cpu_ms(scenario: ScenarioResult) -> float | None:
    """Server CPU per no-op request: the HTTP stack's floor, to set predict's cost against."""
    if scenario.healthz is None or scenario.healthz_cpu_s is None:
        return None
    return _ratio(scenario.healthz_cpu_s * 1000, scenario.healthz.requests)


def to_document(result: BenchResult, machine: dict[str, object]) -> dict[str, Any]:
    config = result.config
    header = {
        **machine,
        "model": config.model,
        "served_models": list(config.server_models),
        "load_tool": result.load_tool,
        "concurrency": config.concurrency,
        "duration_s": config.duration_s,
        "warmup_s": config.warmup_s,
        "images_per_request": config.images_per_request,
        "upload": config.upload,
        "protocol": config.protocol,
        "input": {"file": result.input_name, "bytes": result.input_bytes},
        "workers": config.workers,
        # each worker process keeps its own /metrics: "server" figures are then one worker's
        "server_metrics_per_worker": (config.workers or 1) > 1,
        "extra_env": config.extra_env,
        "serve_args": list(config.serve_args),
    }
    scenarios = [
        {
            "name": s.name,
            "env": s.env,
            "cold_start_s": s.cold_start_s,
            "rss_mib": s.rss_bytes / _MIB,
            "processes": s.processes,
            "server_cpu_s": s.cpu_s,
            "server_cores_busy": _ratio(s.cpu_s, s.predict.duration_s),
            "server_cpu_ms_per_request": _ratio(s.cpu_s * 1000, s.predict.requests),
            "predict": s.predict.to_dict(),
            "server": asdict(s.server),
            "healthz": s.healthz.to_dict() if s.healthz is not None else None,
            "healthz_server_cpu_ms_per_request": _healthz_cpu_ms(s),
            "served_over_raw": served_over_raw(s, result),
            "served_over_reachable_raw": served_over_reachable_raw(s, result),
            "served_over_healthz": served_over_healthz(s),
            "paired_rates": [list(pair) for pair in s.paired_rates],
        }
        for s in result.scenarios
    ]
    return finite(
        {
            "header": header,
            "raw": asdict(result.raw) if result.raw is not None else None,
            "scenarios": scenarios,
            "batching_on_over_off": batching_gain(result),
            "batching_rounds": [list(pair) for pair in result.batching_rounds],
            "protocols": protocols_document(result.protocols),
        }
    )


def _served_table(result: BenchResult) -> Table:
    table = Table(title="served (closed loop, separate load process)", title_justify="left")
    table.add_column("figure")
    for scenario in result.scenarios:
        table.add_column(scenario.name, justify="right")
    labels = ["requests/s", "images/s", "latency p50 ms", "latency p90 ms", "latency p99 ms"]
    labels += ["errors / requests", "mean batch size (server)", "mean forward ms (server)"]
    labels += ["mean queue wait ms (server)", "server CPU ms / request", "server cores busy"]
    labels += ["cold start s", "server RSS MiB", "served / raw"]
    reachable = [served_over_reachable_raw(s, result) for s in result.scenarios]
    if any(ratio is not None for ratio in reachable):
        in_flight = result.config.concurrency * max(1, result.config.images_per_request)
        labels += [f"served / raw at batches <= {in_flight}"]
    columns = []
    for s in result.scenarios:
        rss = f"{s.rss_bytes / _MIB:,.0f}" + (f" ({s.processes} procs)" if s.processes > 1 else "")
        columns.append(
            [
                *load_cells(s.predict),
                fmt(s.server.mean_batch_size, 2),
                fmt(s.server.mean_forward_ms),
                fmt(s.server.mean_queue_wait_ms),
                fmt(_ratio(s.cpu_s * 1000, s.predict.requests), 2),
                fmt(_ratio(s.cpu_s, s.predict.duration_s), 2),
                fmt(s.cold_start_s),
                rss,
                fmt(served_over_raw(s, result), 3),
            ]
        )
        if any(ratio is not None for ratio in reachable):
            columns[-1].append(fmt(served_over_reachable_raw(s, result), 3))
    if any(s.healthz is not None for s in result.scenarios):
        labels += ["healthz requests/s", "healthz p50 ms", "healthz server CPU ms / request"]
        labels += ["served / healthz (req/s)", "  each round (predict, healthz)"]
        for s, column in zip(result.scenarios, columns, strict=True):
            h = s.healthz
            rounds = " ".join(f"{_ratio(p, q) or math.nan:.2f}" for p, q in s.paired_rates)
            column += [
                fmt(h.requests_per_s if h else None),
                fmt(h.latency.p50_ms if h else None, 2),
                fmt(_healthz_cpu_ms(s), 3),
                fmt(served_over_healthz(s), 4),
                rounds or "-",
            ]
    for index, label in enumerate(labels):
        table.add_row(label, *(column[index] for column in columns))
    return table


def _raw_table(result: BenchResult) -> Table:
    raw = result.raw
    assert raw is not None
    sizes = sorted({int(t["batch_size"]) for t in raw.trials})
    precision = (
        "fp32 and fp16 autocast" if any("fp16" in str(t["variant"]) for t in raw.trials) else "fp32"
    )
    table = Table(
        title=f"raw in-process forward images/s on {raw.device} ({precision})", title_justify="left"
    )
    table.add_column("variant \\ batch")
    for size in sizes:
        table.add_column(str(size), justify="right")
    grid: dict[str, dict[int, float]] = {}
    for trial in raw.trials:
        threads = int(trial["threads"])
        row = f"{trial['variant']}, {threads} thread{'s' if threads > 1 else ''}"
        grid.setdefault(row, {})[int(trial["batch_size"])] = float(trial["images_per_s"])
    for row, cells in grid.items():
        table.add_row(row, *(fmt(cells.get(size)) for size in sizes))
    return table


def render(result: BenchResult, machine: dict[str, object], console: Console) -> None:
    config = result.config
    console.print(
        f"[bold]torchgate bench[/] {config.model} · load: {result.load_tool} · "
        f"nproc {machine['nproc']} · load avg {machine['load_average']} · "
        f"torch {machine['torch_version']} ({machine['torch_threads']} threads)"
    )
    console.print(
        f"concurrency {config.concurrency} · {config.duration_s:g} s measured after "
        f"{config.warmup_s:g} s warm-up · {config.images_per_request} x {result.input_name} "
        f"({result.input_bytes / 1000:.1f} kB) per request, {config.upload} upload"
        + (f" · workers {config.workers}" if config.workers else "")
        + (f" · env {config.extra_env}" if config.extra_env else "")
    )
    console.print(f"the server loads: {', '.join(config.server_models)}")
    load = machine.get("load_average")
    nproc = machine.get("nproc")
    if isinstance(load, list) and isinstance(nproc, int) and load and load[0] > nproc:
        console.print(
            f"[yellow]the machine was busy (load average {load[0]} on {nproc} cores) when the "
            "bench started: other processes share the cores, so the figures are noisy[/]"
        )
    if (config.workers or 1) > 1:
        console.print(
            "[yellow]several workers: each keeps its own /metrics, so the (server) rows are one "
            "worker's, and meaningless if the two scrapes reached different workers[/]"
        )
    if result.scenarios:
        console.print(_served_table(result))
    if result.protocols is not None:
        console.print(protocols_table(result.protocols))
    raw = result.raw
    if raw is not None:
        console.print(_raw_table(result))
        forward = (
            f"forward {raw.forward_images_per_s:,.1f} images/s ({raw.best_variant}, "
            f"{raw.best_threads} threads, batch {raw.best_batch_size})"
        )
        if raw.rule == "min":  # CUDA: the GPU runs the forward while the cores decode
            combined = (
                f"min({forward}, decode {raw.decode_images_per_s:,.1f} images/s on "
                f"{raw.decode_threads} threads)"
            )
        else:
            combined = f"{forward} + decode {raw.decode_ms_per_image:.2f} ms/image (1 thread)"
        console.print(f"raw: {combined} = [bold]{raw.raw_images_per_s:,.1f} images/s[/]")
    gain = batching_gain(result)
    if gain is not None:
        rounds = " ".join(
            f"{_ratio(on, off) or math.nan:.2f}" for on, off in result.batching_rounds
        )
        console.print(
            f"batching on / off (images/s): [bold]{gain:.2f}x[/]"
            + (f" (median of alternating rounds {rounds})" if rounds else "")
        )
