"""The Open Inference Protocol comparison as a results record (``results.py``, kind
``v2-peers``): one row per series with the medians of the rounds and its p99, the ratios that
judge torchgate, every round, and in the notes how each peer was configured and why."""

from __future__ import annotations

from typing import Any

from torchgate_bench.peers.v2_compare import PROTOCOLS, figures
from torchgate_bench.peers.v2_options import V2PeersResult
from torchgate_bench.results import Record

KIND = "v2-peers"
COLUMNS = ["model", "protocol", "server", "c", "req/s", "p50 ms", "p99 ms", "errors"]


def _rows(result: V2PeersResult) -> list[list[object]]:
    measured = result.measurements
    return [
        [
            series.model,
            PROTOCOLS[series.protocol],
            series.server,
            series.concurrency,
            measured.median(series.key, "requests_per_s"),
            measured.median(series.key, "p50_ms"),
            measured.median(series.key, "p99_ms"),
            measured.errors(series.key),
        ]
        for series in measured.series
    ]


def _rounds(result: V2PeersResult) -> list[dict[str, Any]]:
    """Every series' figures in every round, with each round's ratios."""
    measured = result.measurements
    pairs = measured.ratio_pairs()
    per_round = {name: measured.round_ratios(*pair) for name, pair in pairs.items()}
    rounds = []
    for index in range(measured.rounds):
        rounds.append(
            {
                "round": index + 1,
                "series": {
                    key: figures(results[index]) for key, results in measured.results.items()
                },
                "ratios": {name: values[index] for name, values in per_round.items()},
            }
        )
    return rounds


def _notes(result: V2PeersResult) -> list[str]:
    options = result.options
    notes = [
        f"{options.rounds} rounds of {options.duration_s:g} s per series, the order reversed "
        "every other round; medians of the rounds, each ratio the median of the rounds' ratios; "
        f"load: {result.tools['v2']} (REST), {result.tools['grpc']} (gRPC)",
        "the same request bytes to every server: v2 REST with the binary tensor extension "
        "(FP32 input 'input', output 'probabilities' in binary), gRPC a ModelInferRequest with "
        "raw_input_contents; torchgate's v1 row: the PNG the cnn's tensor was made from",
        "torchgate: python -m app serve with its default models; random weights (offline) for: "
        f"{', '.join(result.torchgate['random_weights']) or 'none'}, the same files the peers "
        "load",
    ]
    for peer, by_model in result.prepass.items():
        for model, entries in by_model.items():
            measured = any(entry.result is not None for entry in entries)
            how = (
                f"the fastest of {len(entries)} in the pre-pass ({model} alone over v2 REST at "
                f"c={options.concurrency_for(model)}, {options.prepass_s:g} s each)"
                if measured
                else "not measured (pre-pass off)"
            )
            notes.append(f"{peer} for {model}: {result.configs[peer][model].label}, {how}")
    notes.extend(f"{line} for the rounds: the next configuration ran" for line in result.fallbacks)
    for model in result.measurements.models:
        verdicts = {k: v for k, v in result.answers.items() if k.startswith(f"{model} ")}
        worst = max((v["max_abs_diff"] for v in verdicts.values()), default=0.0)
        tops = {v["top1"] for v in verdicts.values()}
        notes.append(
            f"{model}: every server answered the same request 200/OK with top class "
            f"{', '.join(map(str, sorted(tops)))}; max |probability difference| {worst:.1e}"
        )
    if "kserve" in result.configs:
        notes.append(
            "KServe keeps no count of failed gRPC calls: h2load sees them as HTTP 200, so its "
            "gRPC errors column counts transport errors and timeouts only"
        )
    return notes


def v2_peers_record(result: V2PeersResult) -> Record:
    options = result.options
    title = f"cnn at c={options.concurrency}"
    for model in result.measurements.models[1:]:
        title += f", {model} at c={options.heavy_concurrency}"
    return Record(
        kind=KIND,
        title=f"{title}: torchgate against {', '.join(options.peers)} (Open Inference Protocol)",
        columns=COLUMNS,
        rows=_rows(result),
        ratios=result.measurements.ratios(),
        rounds=_rounds(result),
        notes=_notes(result),
        versions=dict(result.versions),
    )
