"""One bench run: inputs and weights, the raw measurement, then each server scenario in turn.

Each scenario is a fresh server process (so cold start and memory are its own), loaded first
for the warm-up, then for the measured period between two /metrics scrapes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from torchgate_bench import promdiff
from torchgate_bench.config import BATCHING_OFF, BenchConfig, Scenario, scenarios_for, server_env
from torchgate_bench.drivers import Driver, choose_driver, choose_grpc_driver
from torchgate_bench.images import input_file_for
from torchgate_bench.load import GRPC_SCHEME, LoadPlan, LoadResult, LoadTarget, merge_results
from torchgate_bench.payload import multipart_body, raw_body, write_body
from torchgate_bench.protocols import ProtocolComparison, alternate, build_requests, target_for
from torchgate_bench.raw import RawResult, run_raw
from torchgate_bench.server import ServerProcess
from torchgate_bench.weights import needs_pretrained_weights, write_random_weights

logger = logging.getLogger(__name__)

Targeting = Callable[[ServerProcess], LoadTarget]  # the predict request, aimed at a server
# /healthz, and batching off, are compared in alternating slices (predict, healthz, predict,
# ...): this shared machine's speed drifts by 10-20% over a minute, and a ratio of two runs
# taken one after the other would measure the drift as much as the server.
HEALTHZ_ROUNDS = 3


@dataclass
class ScenarioResult:
    name: str
    env: dict[str, str]
    cold_start_s: float
    rss_bytes: int
    processes: int
    cpu_s: float  # server CPU time (all its processes) over the measured period
    predict: LoadResult
    server: promdiff.ServerStats
    healthz: LoadResult | None = None
    healthz_cpu_s: float | None = None
    # (predict requests/s, healthz requests/s) of each alternating round
    paired_rates: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class BenchResult:
    config: BenchConfig
    load_tool: str
    input_bytes: int
    input_name: str
    raw: RawResult | None
    scenarios: list[ScenarioResult]
    # (images/s with batching on, off) of each alternating round (--batching both)
    batching_rounds: list[tuple[float, float]] = field(default_factory=list)
    protocols: ProtocolComparison | None = None  # --protocol all


def _require_ready(base_url: str, model: str) -> None:
    """/readyz is 200 for an unavailable model too; the bench needs this one serving."""
    info = httpx.get(f"{base_url}/v1/models/{model}", timeout=30).json()
    if info.get("status") != "ready":
        raise RuntimeError(
            f"{model} is {info.get('status')} in the bench's server: {info.get('reason')} "
            "(server settings go through --env KEY=VALUE)"
        )


def _server(config: BenchConfig, env: dict[str, str]) -> ServerProcess:
    """A server for ``env`` with the bench's serve flags (not started: use it as a context)."""
    serve_args = list(config.serve_args)
    if config.workers is not None:
        serve_args += ["--workers", str(config.workers)]
    # several workers load independently: wait for a run of 200s from /readyz before loading
    confirmations = 1 if (config.workers or 1) == 1 else 4 * (config.workers or 1)
    return ServerProcess(
        env,
        serve_args,
        config.ready_timeout_s,
        confirmations,
        log_dir=config.log_dir,
        keep_log=config.log_dir is not None,
    )


def _run_scenario(
    config: BenchConfig, scenario: Scenario, env: dict[str, str], target: Targeting, driver: Driver
) -> ScenarioResult:
    """``target`` gives the predict request for the scenario's server (its address)."""
    warmup = LoadPlan(config.concurrency, config.warmup_s)
    measured = LoadPlan(config.concurrency, config.duration_s)
    with _server(config, {**env, **scenario.env}) as server:
        logger.info("%s: server ready in %.1f s", scenario.name, server.cold_start_s)
        _require_ready(server.base_url, config.model)
        predict = target(server)
        if config.warmup_s > 0:
            driver(predict, warmup)
        before = promdiff.scrape(server.base_url)
        cpu_before = server.cpu_seconds()
        result = driver(predict, measured)
        cpu_s = server.cpu_seconds() - cpu_before
        after = promdiff.scrape(server.base_url)
        rss, processes = server.memory()
        healthz, healthz_cpu_s, pairs = None, None, []
        if config.baseline_healthz:
            healthz, healthz_cpu_s, pairs = _alternate_with_healthz(
                driver, predict, server, LoadPlan(config.concurrency, config.duration_s)
            )
    return ScenarioResult(
        name=scenario.name,
        env=scenario.env,
        cold_start_s=server.cold_start_s,
        rss_bytes=rss,
        processes=processes,
        cpu_s=cpu_s,
        predict=result,
        server=promdiff.server_stats(promdiff.diff(before, after), config.model),
        healthz=healthz,
        healthz_cpu_s=healthz_cpu_s,
        paired_rates=pairs,
    )


def _alternate_with_healthz(
    driver: Driver, predict: LoadTarget, server: ServerProcess, plan: LoadPlan
) -> tuple[LoadResult, float, list[tuple[float, float]]]:
    """HEALTHZ_ROUNDS rounds of (predict, /healthz) slices of plan.duration / rounds each.
    Returns the healthz slices merged, the server CPU they took, and each round's two rates."""
    slice_plan = LoadPlan(plan.concurrency, max(1.0, plan.duration_s / HEALTHZ_ROUNDS))
    healthz_target = LoadTarget(f"{server.base_url}/healthz")
    slices: list[LoadResult] = []
    pairs: list[tuple[float, float]] = []
    cpu_s = 0.0
    for _ in range(HEALTHZ_ROUNDS):
        served = driver(predict, slice_plan)
        cpu_before = server.cpu_seconds()
        healthz = driver(healthz_target, slice_plan)
        cpu_s += server.cpu_seconds() - cpu_before
        slices.append(healthz)
        pairs.append((served.requests_per_s, healthz.requests_per_s))
    return merge_results(slices), cpu_s, pairs


def run_bench(config: BenchConfig) -> BenchResult:
    """Prepare once (input, body, weights), measure raw before any server exists so the two
    never share the cores, then run each scenario against its own fresh server."""
    with tempfile.TemporaryDirectory(prefix="torchgate-bench-") as scratch:
        workdir = Path(scratch)
        upload = input_file_for(config.model)
        input_path = workdir / upload.filename
        input_path.write_bytes(upload.data)
        if config.upload == "raw" and config.images_per_request == 1:
            body = raw_body(upload)
        else:
            body = multipart_body([upload] * config.images_per_request)
        body_path = write_body(body, workdir / "body.bin")
        pretrained = [m for m in config.server_models if needs_pretrained_weights(m)]
        random_weights = config.weights_dir is None and bool(pretrained)
        weights_dir = config.weights_dir or workdir / "weights"
        if random_weights:
            for name in pretrained:
                write_random_weights(name, weights_dir)
        env = server_env(config, weights_dir, random_weights)
        raw = None
        if config.raw:
            logger.info("measuring raw in-process throughput (budget %.0f s)", config.raw_budget_s)
            raw = run_raw(
                config.model,
                weights_dir,
                config.checkpoint_dir,
                input_path,
                config.raw_budget_s,
                config.try_compile,
                config.raw_threads,
                env,
                device=env.get("TORCHGATE_DEVICE", "auto"),  # where the server will run
                half=env.get("TORCHGATE_HALF", "").strip().lower() in ("1", "true", "yes", "on"),
            )
        tool, http_driver = choose_driver(config.load_tool, workdir)
        grpc_tool, grpc_driver = choose_grpc_driver(config.load_tool, workdir)
        if config.protocol in ("grpc", "all"):
            tool = f"{tool} (HTTP), {grpc_tool} (gRPC)"
        upload_request = LoadTarget(
            "", "POST", body_path, body.content_type, config.images_per_request
        )
        requests = build_requests(
            config.model, upload, upload_request, config.images_per_request, workdir
        )

        def driver(target: LoadTarget, plan: LoadPlan) -> LoadResult:
            grpc = target.url.startswith(GRPC_SCHEME)  # wrk speaks HTTP/1.1 only
            return (grpc_driver if grpc else http_driver)(target, plan)

        results, rounds, protocols = [], [], None
        if config.protocol == "all":
            protocols = _compare_protocols(config, env, requests, driver)
        else:
            request = requests[config.protocol]

            def predict(server: ServerProcess) -> LoadTarget:
                return target_for(config.protocol, request, config.model, server)

            results = [
                _run_scenario(config, scenario, env, predict, driver)
                for scenario in scenarios_for(config.batching)
            ]
            if config.batching == "both":
                rounds = _alternate_batching(config, env, predict, driver)
    return BenchResult(
        config, tool, len(upload.data), upload.filename, raw, results, rounds, protocols
    )


def _compare_protocols(
    config: BenchConfig, env: dict[str, str], requests: dict[str, LoadTarget], driver: Driver
) -> ProtocolComparison:
    """v1, v2 and gRPC against one server, in HEALTHZ_ROUNDS alternating rounds."""
    with _server(config, env) as server:
        _require_ready(server.base_url, config.model)
        targets = {
            protocol: target_for(protocol, request, config.model, server)
            for protocol, request in requests.items()
        }
        plan = LoadPlan(config.concurrency, config.duration_s, config.warmup_s)
        comparison = alternate(targets, server, driver, plan, HEALTHZ_ROUNDS, merge_results)
    logger.info("protocols in alternating rounds (requests/s): %s", comparison.rounds)
    return comparison


def _alternate_batching(
    config: BenchConfig, env: dict[str, str], target: Targeting, driver: Driver
) -> list[tuple[float, float]]:
    """Both servers up at once (the idle one costs nothing), loaded in alternating slices, so
    the on/off ratio does not measure the machine's drift between two scenarios."""
    slice_plan = LoadPlan(config.concurrency, max(1.0, config.duration_s / HEALTHZ_ROUNDS))
    with _server(config, env) as on, _server(config, {**env, **BATCHING_OFF}) as off:
        targets = []
        for server in (on, off):
            _require_ready(server.base_url, config.model)
            targets.append(target(server))
            if config.warmup_s > 0:
                driver(targets[-1], LoadPlan(config.concurrency, config.warmup_s))
        rounds = []
        for _ in range(HEALTHZ_ROUNDS):
            batched = driver(targets[0], slice_plan)
            single = driver(targets[1], slice_plan)
            rounds.append((batched.images_per_s, single.images_per_s))
    logger.info("batching on/off in alternating rounds: %s", rounds)
    return rounds
