"""A peer comparison as a results record (``results.py``): one row per side with the medians
of the rounds, the ratios that judge them, every round, and the setting in notes."""

from __future__ import annotations

from torchgate_bench.peers.compare import PeerComparison
from torchgate_bench.peers.run import MODEL, PeersResult
from torchgate_bench.results import Record

COLUMNS = ["server", "req/s", "p50 ms", "p99 ms", "errors"]


def _row(label: str, comparison: PeerComparison, side: str) -> list[object]:
    """Medians over the rounds of one side; errors summed over them."""
    errors = sum(getattr(entry, side).errors for entry in comparison.rounds)
    return [
        label,
        comparison.median(side, "requests_per_s"),
        comparison.median(side, "p50_ms"),
        comparison.median(side, "p99_ms"),
        errors,
    ]


def peers_record(result: PeersResult) -> Record:
    options, several = result.options, len(result.comparisons) > 1
    peers = [comparison.peer for comparison in result.comparisons]
    rows: list[list[object]] = []
    ratios: dict[str, float | None] = {}
    rounds: list[dict[str, object]] = []
    notes = [
        f"one {result.input['name']} ({result.input['bytes']} B) per request as a raw body; "
        f"{options.rounds} alternating rounds of {options.duration_s:g} s per side; "
        f"load: {result.load_tool}",
        "torchgate: python -m app serve with its default models; random weights (offline) "
        f"for: {', '.join(result.torchgate['random_weights']) or 'none'}",
    ]
    for comparison in result.comparisons:
        peer = comparison.peer
        label = f"torchgate (rounds with {peer})" if several else "torchgate"
        rows += [_row(label, comparison, "torchgate"), _row(peer, comparison, "peer")]
        ratios[f"torchgate / {peer} (median of rounds)"] = comparison.median_ratio
        ratios[f"torchgate served / healthz (median of rounds with {peer})"] = (
            comparison.median_served_over_healthz
        )
        rounds += [
            {"round": index, "peer": peer, **entry.to_dict()}
            for index, entry in enumerate(comparison.rounds, 1)
        ]
        chosen = "fastest of the pre-pass grid" if comparison.grid else "the only one asked for"
        notes.append(f"{peer}: {comparison.config.label} ({chosen})")
        answers = comparison.answers
        if answers:
            notes.append(
                f"{peer} gives torchgate's answer: top-1 {answers['top1']['peer']!r}, max "
                f"|probability difference| {answers['max_abs_diff']:.1e}"
            )
    return Record(
        kind="peers",
        title=f"{MODEL} at c={options.concurrency}: torchgate against {', '.join(peers)}",
        columns=COLUMNS,
        rows=rows,
        ratios=ratios,
        rounds=rounds,
        notes=notes,
        versions=dict(result.versions),
    )
