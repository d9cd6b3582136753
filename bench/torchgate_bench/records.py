"""A ``bench`` run as a results record (``results.py``): one model served against raw
(kind ``models``), or the three protocols on one server (kind ``protocols``)."""

from __future__ import annotations

from torchgate_bench.report import batching_gain, served_over_healthz, served_over_raw
from torchgate_bench.results import Record
from torchgate_bench.runner import BenchResult


def _setting(result: BenchResult, random_weights: list[str]) -> list[str]:
    config = result.config
    notes = [
        f"{config.images_per_request} x {result.input_name} ({result.input_bytes} B) per "
        f"request, {config.upload} upload; {config.duration_s:g} s measured after "
        f"{config.warmup_s:g} s warm-up; load: {result.load_tool}",
        f"the server loads: {', '.join(config.server_models)}"
        + (f"; {config.workers} workers" if config.workers else ""),
    ]
    if config.extra_env or config.serve_args:
        notes.append(f"server env {config.extra_env}, serve args {list(config.serve_args)}")
    if random_weights:
        notes.append(
            f"random weights for {', '.join(random_weights)} (offline): the architecture's "
            "throughput, meaningless predictions"
        )
    return notes


def bench_record(result: BenchResult, random_weights: list[str]) -> Record:
    """The protocols record for ``--protocol all``, else the models one."""
    if result.protocols is not None:
        return _protocols_record(result, random_weights)
    return _models_record(result, random_weights)


def _models_record(result: BenchResult, random_weights: list[str]) -> Record:
    config, raw = result.config, result.raw
    columns = ["scenario", "req/s", "images/s", "p50 ms", "p99 ms", "errors", "mean batch"]
    columns += ["served / raw", "served / healthz"]
    rows: list[list[object]] = []
    ratios: dict[str, float | None] = {}
    rounds: list[dict[str, object]] = []
    for s in result.scenarios:
        load = s.predict
        rows.append(
            [
                s.name,
                load.requests_per_s,
                load.images_per_s,
                load.latency.p50_ms,
                load.latency.p99_ms,
                load.errors,
                s.server.mean_batch_size,
                served_over_raw(s, result),
                served_over_healthz(s),
            ]
        )
        ratios[f"served / raw ({s.name})"] = served_over_raw(s, result)
        if s.healthz is not None:
            ratios[f"served / healthz ({s.name}, median of rounds)"] = served_over_healthz(s)
        rounds += [
            {"round": index, "scenario": s.name, "predict req/s": p, "healthz req/s": h}
            for index, (p, h) in enumerate(s.paired_rates, 1)
        ]
    notes = _setting(result, random_weights)
    if raw is not None:
        rows.append(["raw in-process", None, raw.raw_images_per_s, None, None, 0, None, 1.0, None])
        notes.append(
            f"raw: {raw.best_variant}, {raw.best_threads} threads, batch {raw.best_batch_size} "
            f"on {raw.device}: forward {raw.forward_images_per_s:.1f} images/s, with decode "
            f"{raw.raw_images_per_s:.1f}"
        )
    if result.batching_rounds:
        ratios["batching on / off (median of rounds)"] = batching_gain(result)
        rounds += [
            {"round": index, "batching on images/s": on, "batching off images/s": off}
            for index, (on, off) in enumerate(result.batching_rounds, 1)
        ]
    return Record(
        kind="models",
        title=f"{config.model} at c={config.concurrency}: served against raw in-process",
        columns=columns,
        rows=rows,
        ratios=ratios,
        rounds=rounds,
        notes=notes,
    )


def _protocols_record(result: BenchResult, random_weights: list[str]) -> Record:
    config, comparison = result.config, result.protocols
    assert comparison is not None
    columns = ["protocol", "load tool", "req/s", "images/s", "p50 ms", "p99 ms", "errors"]
    columns += ["server CPU ms / request"]
    rows = [
        [
            protocol,
            load.tool,
            load.requests_per_s,
            load.images_per_s,
            load.latency.p50_ms,
            load.latency.p99_ms,
            load.errors,
            comparison.cpu_ms_per_request(protocol),
        ]
        for protocol, load in comparison.results.items()
    ]
    return Record(
        kind="protocols",
        title=f"{config.model} at c={config.concurrency}: v1 REST, v2 REST and v2 gRPC",
        columns=columns,
        rows=rows,
        ratios={
            f"{protocol} / v1 (median of rounds)": comparison.ratio(protocol)
            for protocol in comparison.results
            if protocol != "v1"
        },
        rounds=[{"round": index, **rates} for index, rates in enumerate(comparison.rounds, 1)],
        notes=[
            "one server, the protocols in alternating rounds",
            *_setting(result, random_weights),
        ],
    )
