"""Two builds of torchgate side by side: did a change make the service slower?

``bench-builds --baseline PATH`` serves a checkout of the commit before a change (PATH) and this
one, each with ``python -m app serve``'s defaults (all six models; the ImageNet ones with random
weights, which cost the same as trained ones), and drives both with the same requests and the
same load generator in alternating rounds (ABBA order, so neither side always runs first on a
drifting machine): the cnn's raw-body predict at c=32, resnet101's at c=8, /healthz at c=32
and the cnn over gRPC at c=32; then each one's cold start to /readyz, alternately. Ratios are
current / baseline per round, and the median of the rounds.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torchgate_bench.drivers import Driver, choose_driver, choose_grpc_driver
from torchgate_bench.images import garment_png, photo_jpeg
from torchgate_bench.load import GRPC_SCHEME, LoadPlan, LoadResult, LoadTarget
from torchgate_bench.payload import raw_body, write_body
from torchgate_bench.protocols import MODEL_INFER, build_requests
from torchgate_bench.results import Record
from torchgate_bench.server import ServerProcess
from torchgate_bench.weights import provide_random_weights

SIDES = ("baseline", "current")


@dataclass(frozen=True)
class Scenario:
    """One kind of request at one concurrency, aimed at a server by ``target``."""

    name: str
    concurrency: int
    target: Callable[[ServerProcess], LoadTarget]
    grpc: bool = False
    higher_is_better: bool = True


def scenarios(workdir: Path) -> list[Scenario]:
    """The issue's 'must not get worse' list, each request built once as a file."""
    garment, photo = garment_png(), photo_jpeg()
    cnn_body = write_body(raw_body(garment), workdir / "cnn.png")
    photo_body = write_body(raw_body(photo), workdir / "photo.jpg")
    v1 = LoadTarget("", "POST", cnn_body, "image/png", 1)
    grpc_request = build_requests("cnn", garment, v1, 1, workdir)["grpc"]

    def raw(model: str, body: Path, media: str) -> Callable[[ServerProcess], LoadTarget]:
        return lambda server: LoadTarget(
            f"{server.base_url}/v1/models/{model}/predict", "POST", body, media, 1
        )

    return [
        Scenario("cnn raw predict", 32, raw("cnn", cnn_body, "image/png")),
        Scenario("resnet101 raw predict", 8, raw("resnet101", photo_body, "image/jpeg")),
        Scenario("/healthz", 32, lambda server: LoadTarget(f"{server.base_url}/healthz")),
        Scenario(
            "cnn gRPC ModelInfer",
            32,
            lambda server: LoadTarget(
                f"{GRPC_SCHEME}{server.grpc_target}",
                MODEL_INFER,
                grpc_request.body_path,
                None,
                1,
            ),
            grpc=True,
        ),
    ]


@dataclass
class BuildsOptions:
    baseline: Path
    current: Path
    rounds: int = 3
    duration_s: float = 10.0
    warmup_s: float = 2.0
    cold_starts: int = 3
    weights_dir: Path | None = None
    tool: str = "auto"


def _server_env(weights_dir: Path, state_dir: Path) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_VERIFY_WEIGHTS": "false",
        "TORCHGATE_ADMIN_TOKEN": "bench-builds-admin-token-0123456789abcdef",
        "TORCHGATE_ACCESS_LOG": "true",  # a default users run with
        "TORCHGATE_DATA_DIR": str(state_dir),
    }


def _rate(result: LoadResult) -> float:
    return result.requests / result.duration_s if result.duration_s else float("nan")


def run_builds(options: BuildsOptions, report: Callable[[str], None] = print) -> Record:
    """Measure both builds and return the record (a table row per scenario); ``report``
    gets a line per measurement as it is taken."""
    with tempfile.TemporaryDirectory(prefix="torchgate-bench-builds-") as scratch:
        workdir = Path(scratch)
        weights_dir = options.weights_dir or workdir / "weights"
        weights_dir.mkdir(parents=True, exist_ok=True)
        randomized = provide_random_weights(["alexnet", "vgg16", "resnet101"], weights_dir)
        _, http_driver = choose_driver(options.tool, workdir)
        _, grpc_driver = choose_grpc_driver(options.tool, workdir)
        chosen = scenarios(workdir)
        rates: dict[str, dict[str, list[float]]] = {
            s.name: {side: [] for side in SIDES} for s in chosen
        }
        p99: dict[str, dict[str, list[float]]] = {
            s.name: {side: [] for side in SIDES} for s in chosen
        }
        errors: dict[str, dict[str, int]] = {s.name: dict.fromkeys(SIDES, 0) for s in chosen}
        trees = {"baseline": options.baseline, "current": options.current}
        servers = {
            side: ServerProcess(
                env=_server_env(weights_dir, workdir / f"data-{side}"), cwd=trees[side]
            )
            for side in SIDES
        }
        rounds: list[dict[str, object]] = []
        with servers["baseline"], servers["current"]:
            for number in range(1, options.rounds + 1):
                order = SIDES if number % 2 else SIDES[::-1]
                for scenario in chosen:
                    driver: Driver = grpc_driver if scenario.grpc else http_driver
                    plan = LoadPlan(scenario.concurrency, options.duration_s, options.warmup_s)
                    for side in order:
                        result = driver(scenario.target(servers[side]), plan)
                        rates[scenario.name][side].append(_rate(result))
                        p99[scenario.name][side].append(result.latency.p99_ms)
                        errors[scenario.name][side] += result.errors
                        report(
                            f"round {number} {scenario.name} c={scenario.concurrency} {side}: "
                            f"{_rate(result):.1f} req/s, p99 {result.latency.p99_ms:.1f} ms, "
                            f"{result.errors} errors {result.error_kinds or ''}"
                        )
                        rounds.append(
                            {
                                "round": number,
                                "scenario": scenario.name,
                                "side": side,
                                "requests_per_s": _rate(result),
                                "p99_ms": result.latency.p99_ms,
                                "errors": result.errors,
                            }
                        )
        cold: dict[str, list[float]] = {side: [] for side in SIDES}
        for number in range(options.cold_starts):
            for side in SIDES if number % 2 == 0 else SIDES[::-1]:
                server = ServerProcess(
                    env=_server_env(weights_dir, workdir / f"cold-{side}-{number}"),
                    cwd=trees[side],
                    settle_graphs=False,
                )
                with server:
                    cold[side].append(server.cold_start_s)
                report(f"cold start {number + 1} {side}: {server.cold_start_s:.2f} s")
    return _record(chosen, rates, p99, errors, cold, rounds, randomized, options)


def _median_ratio(values: dict[str, list[float]]) -> float:
    pairs = zip(values["current"], values["baseline"], strict=True)
    return statistics.median(
        current / baseline if baseline else float("nan") for current, baseline in pairs
    )


def _record(
    chosen: list[Scenario],
    rates: dict[str, dict[str, list[float]]],
    p99: dict[str, dict[str, list[float]]],
    errors: dict[str, dict[str, int]],
    cold: dict[str, list[float]],
    rounds: list[dict[str, object]],
    randomized: list[str],
    options: BuildsOptions,
) -> Record:
    rows: list[list[object]] = []
    ratios: dict[str, float | None] = {}
    for scenario in chosen:
        values = rates[scenario.name]
        ratio = _median_ratio(values)
        label = f"{scenario.name} c={scenario.concurrency}"
        ratios[f"{label}: current / baseline (median of round ratios)"] = round(ratio, 3)
        rows.append(
            [
                label,
                round(statistics.median(values["baseline"]), 1),
                round(statistics.median(values["current"]), 1),
                round(ratio, 3),
                round(statistics.median(p99[scenario.name]["baseline"]), 1),
                round(statistics.median(p99[scenario.name]["current"]), 1),
                errors[scenario.name]["baseline"] + errors[scenario.name]["current"],
            ]
        )
    cold_ratio = statistics.median(cold["current"]) / statistics.median(cold["baseline"])
    ratios["cold start to /readyz: current / baseline (medians)"] = round(cold_ratio, 3)
    rows.append(
        [
            "cold start to /readyz (s)",
            round(statistics.median(cold["baseline"]), 2),
            round(statistics.median(cold["current"]), 2),
            round(cold_ratio, 3),
            None,
            None,
            0,
        ]
    )
    return Record(
        kind="builds",
        title="Two builds side by side: the change against the commit before it",
        columns=[
            "scenario",
            "baseline req/s",
            "current req/s",
            "ratio",
            "baseline p99 ms",
            "current p99 ms",
            "errors",
        ],
        rows=rows,
        ratios=ratios,
        rounds=rounds,
        notes=[
            f"baseline: {options.baseline}; current: {options.current}",
            f"{options.rounds} alternating rounds of {options.duration_s:g} s "
            f"(+{options.warmup_s:g} s warm-up) per scenario and side; cold starts: "
            f"{options.cold_starts} each, alternating",
            f"random weights for: {', '.join(randomized) or 'none'} (same cost as trained ones)",
        ],
    )
