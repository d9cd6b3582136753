"""One bench run: inputs and weights, the raw measurement, then each server scenario in turn.

Each scenario is a fresh server process (so cold start and memory are its own), loaded first
for the warm-up, then for the measured period between two /metrics scrapes.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from torchgate_bench import promdiff
from torchgate_bench.h2load import find_h2load, run_h2load
from torchgate_bench.images import input_file_for
from torchgate_bench.load import LoadPlan, LoadResult, LoadTarget
from torchgate_bench.loadgen import GRPC_SCHEME, run_loadgen
from torchgate_bench.payload import multipart_body, raw_body, write_body
from torchgate_bench.protocols import ProtocolComparison, alternate, build_requests, target_for
from torchgate_bench.raw import RawResult, run_raw
from torchgate_bench.server import ServerProcess
from torchgate_bench.weights import needs_pretrained_weights, write_random_weights
from torchgate_bench.wrk import find_wrk, run_wrk

logger = logging.getLogger(__name__)

Driver = Callable[[LoadTarget, LoadPlan], LoadResult]
Targeting = Callable[[ServerProcess], LoadTarget]  # the predict request, aimed at a server
BATCHING_OFF = {"TORCHGATE_MAX_BATCH_SIZE": "1"}
# /healthz, and batching off, are compared in alternating slices (predict, healthz, predict,
# ...): this shared machine's speed drifts by 10-20% over a minute, and a ratio of two runs
# taken one after the other would measure the drift as much as the server.
HEALTHZ_ROUNDS = 3


@dataclass(frozen=True)
class BenchConfig:
    """Everything the command line decides; defaults suit a quick look at one model."""

    model: str
    concurrency: int = 8
    duration_s: float = 10.0
    warmup_s: float = 2.0
    images_per_request: int = 1
    upload: str = "multipart"  # multipart | raw (one image as the body)
    batching: str = "on"  # on | off | both
    baseline_healthz: bool = False
    workers: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()
    weights_dir: Path | None = None
    checkpoint_dir: Path = Path("models")
    raw: bool = True
    raw_budget_s: float = 20.0
    try_compile: bool = False
    raw_threads: int | None = None
    load_tool: str = "auto"  # auto | wrk | httpx
    ready_timeout_s: float = 300.0
    protocol: str = "v1"  # v1 | v2 | grpc | all (the three in alternating rounds, one server)
    log_dir: Path | None = None  # keep every server's log here (default: only failed ones)
    # What the server loads next to ``model``: None is serve's default, all six, as users run
    # it (the models share the device worker and the cores, so one alone flatters the figure).
    served_models: tuple[str, ...] | None = None

    @property
    def server_models(self) -> tuple[str, ...]:
        from app.config import ALL_MODELS

        models = self.served_models if self.served_models is not None else ALL_MODELS
        return models if self.model in models else (*models, self.model)


@dataclass(frozen=True)
class Scenario:
    name: str
    env: dict[str, str]


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


def scenarios_for(batching: str) -> list[Scenario]:
    """``on`` is the configured batching (spec defaults or --env); ``off`` is batch size 1."""
    chosen = {"on": ["on"], "off": ["off"], "both": ["on", "off"]}[batching]
    return [Scenario(f"batching {name}", BATCHING_OFF if name == "off" else {}) for name in chosen]


def choose_grpc_driver(tool: str, workdir: Path) -> tuple[str, Driver]:
    """h2load when installed (C, like wrk) unless httpx is asked for, else the Python client."""
    executable = find_h2load() if tool in ("auto", "wrk") else None
    if executable is not None:
        return "h2load", lambda target, plan: run_h2load(target, plan, workdir, executable)
    return "grpc.aio", run_loadgen


def choose_driver(tool: str, workdir: Path) -> tuple[str, Driver]:
    """wrk when asked for or installed (it costs the 2-core box far less CPU), else httpx."""
    executable = find_wrk() if tool in ("auto", "wrk") else None
    if tool == "wrk" and executable is None:
        raise RuntimeError("wrk is not installed; install it (apt-get install wrk) or use httpx.")
    if executable is not None:
        return "wrk", lambda target, plan: run_wrk(target, plan, workdir, executable)
    return "httpx", run_loadgen


def server_env(config: BenchConfig, weights_dir: Path, random_weights: bool) -> dict[str, str]:
    """The caller's environment with the bench's settings on top, then the user's --env."""
    env = dict(os.environ)
    env.update(
        {
            "TORCHGATE_MODELS": ",".join(config.server_models),
            "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
            "TORCHGATE_CHECKPOINT_DIR": str(config.checkpoint_dir.resolve()),
            "TORCHGATE_DOWNLOAD_WEIGHTS": "false",  # loopback only: never fetch during a bench
            "TORCHGATE_ADMIN_TOKEN": secrets.token_urlsafe(16),
        }
    )
    if random_weights:
        env["TORCHGATE_VERIFY_WEIGHTS"] = "false"
    env.update(config.extra_env)
    return env


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


def merge_results(results: list[LoadResult]) -> LoadResult:
    """Counts and durations summed; latency from the slice with the median rate (percentiles
    of separate runs cannot be combined exactly)."""
    middle = sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]
    cpu = [r.client_cpu_s for r in results]
    return replace(
        middle,
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        duration_s=sum(r.duration_s for r in results),
        client_cpu_s=None if None in cpu else sum(c for c in cpu if c is not None),
    )


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
