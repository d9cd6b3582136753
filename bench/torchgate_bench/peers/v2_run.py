"""``bench --peer triton,kserve``: torchgate against the live Open Inference Protocol servers,
the same request bytes to each, in one run.

torchgate runs as users start it (``python -m app serve``, its six default models; offline, the
ImageNet ones get random weights under their official names, which the peers load too). Each
peer's pre-pass (``v2_prepass``) tries its small grid alone and keeps the fastest configuration
per model; then torchgate and every chosen peer are up together, each answers every request
once (``v2_answers``), and the rounds load one series at a time (``v2_compare``), the others
idle: wrk for REST, h2load for gRPC, at c=32 for the cnn and c=8 for resnet101.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from app.config import ALL_MODELS
from torchgate_bench.drivers import choose_driver, choose_grpc_driver
from torchgate_bench.images import garment_png
from torchgate_bench.load import LoadPlan
from torchgate_bench.machine import describe_machine
from torchgate_bench.payload import raw_body, write_body
from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.peers.compare import GridEntry, ok_rate
from torchgate_bench.peers.requirements import (
    DEFAULT_V2_PYTHON,
    missing_v2_requirement,
    peer_versions,
)
from torchgate_bench.peers.run import model_statuses, torchgate_env
from torchgate_bench.peers.v2_answers import Slot, check_answers
from torchgate_bench.peers.v2_compare import Measurements, Series, plan_series, round_series
from torchgate_bench.peers.v2_options import V2Options, V2PeersResult
from torchgate_bench.peers.v2_prepass import (
    Setting,
    chosen_config,
    prepass,
    ranked_configs,
    series_slots,
)
from torchgate_bench.peers.v2_requests import cnn_tensor, imagenet_tensor, write_request
from torchgate_bench.peers.v2_servers import V2Config, V2PeerServer
from torchgate_bench.server import ServerProcess, free_port
from torchgate_bench.weights import provide_random_weights

logger = logging.getLogger(__name__)


def run_v2_peers(options: V2Options) -> V2PeersResult:
    """Start torchgate once, pick each peer's configuration, then the alternating rounds."""
    for peer in options.peers:
        problem = missing_v2_requirement(peer, options.pythons.get(peer, DEFAULT_V2_PYTHON[peer]))
        if problem:
            raise RuntimeError(problem)
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="torchgate-v2-peers-") as scratch, ExitStack() as stack:
        workdir = Path(scratch)
        upload = garment_png()
        png = write_body(raw_body(upload), workdir / "garment.png")
        weights_dir = options.weights_dir or workdir / "weights"
        listed = options.extra_env.get("TORCHGATE_MODELS", ",".join(ALL_MODELS)).split(",")
        enabled = [name.strip() for name in listed]
        randomized = provide_random_weights(enabled, weights_dir)
        server = stack.enter_context(_torchgate(options, weights_dir, bool(randomized)))
        statuses = model_statuses(server.base_url)
        heavy = options.heavy_model if options.heavy_model in enabled else None
        for model in ("cnn", heavy):
            if model is not None and statuses.get(model) != "ready":
                raise RuntimeError(f"torchgate's {model} is {statuses.get(model)}: see its log")
        files = CnnFiles.in_repository(options.checkpoint_dir)
        requests = {"cnn": write_request("cnn", cnn_tensor(upload.data, files), workdir)}
        resnet_weights = None
        if heavy is not None:
            requests[heavy] = write_request(heavy, imagenet_tensor(), workdir)
            resnet_weights = _weights_file(heavy, weights_dir)
        tools: dict[str, str] = {}
        tools["v2"], rest = choose_driver(options.load_tool, workdir)
        tools["grpc"], grpc = choose_grpc_driver(options.load_tool, workdir)
        drivers = {"rest": rest, "grpc": grpc}
        folder = options.log_dir or workdir
        setting = Setting(options, server, requests, files, resnet_weights, folder, drivers)
        grids = {peer: prepass(peer, setting) for peer in options.peers}
        configs = {
            peer: {model: chosen_config(entries) for model, entries in by_model.items()}
            for peer, by_model in grids.items()
        }
        peers = _start_peers(grids, configs, setting, stack)
        plan = plan_series(
            options.peers,
            options.concurrency,
            heavy,
            options.heavy_concurrency,
            options.heavy_grpc,
        )
        slots = series_slots(plan, setting, peers, png, upload.content_type)
        answers = check_answers(plan, slots, requests, upload.data, upload.content_type)
        measurements = _measure(plan, slots, options)
        versions = _versions(peers, options)
        torchgate = {
            "cold_start_s": server.cold_start_s,
            "models": statuses,
            "weights_dir": str(weights_dir),
            "random_weights": randomized,
            "serve_args": list(options.serve_args),
            "env": options.extra_env,
        }
    described = {"cnn": f"{upload.filename} ({len(upload.data)} B) as FP32 [1,1,28,28]"}
    inputs = {
        model: {
            "tensor": described.get(model, "seeded standard normal FP32 [1,3,224,224]"),
            "v2 REST bytes": len(request.body),
            "gRPC bytes": len(request.message),
        }
        for model, request in requests.items()
    }
    return V2PeersResult(
        options=options,
        tools=tools,
        machine=machine,
        load_average_end=[round(load, 2) for load in os.getloadavg()],
        torchgate=torchgate,
        configs=configs,
        prepass=grids,
        answers=answers,
        measurements=measurements,
        inputs=inputs,
        versions=versions,
        fallbacks=setting.fallbacks,
    )


def _torchgate(options: V2Options, weights_dir: Path, random_weights: bool) -> ServerProcess:
    """``python -m app serve`` with its defaults and this run's weights, gRPC on a free port
    whatever the caller's environment says (gRPC is half of this comparison)."""
    env = torchgate_env(options.checkpoint_dir, options.extra_env, weights_dir, random_weights)
    env["TORCHGATE_GRPC_PORT"] = options.extra_env.get("TORCHGATE_GRPC_PORT", str(free_port()))
    if env["TORCHGATE_GRPC_PORT"] == "0":
        raise RuntimeError("the v2 comparison needs gRPC: drop TORCHGATE_GRPC_PORT=0.")
    return ServerProcess(env, options.serve_args, options.ready_timeout_s, log_dir=options.log_dir)


def _start_peers(
    grids: dict[str, dict[str, list[GridEntry[V2Config]]]],
    configs: dict[str, dict[str, V2Config]],
    setting: Setting,
    stack: ExitStack,
) -> dict[tuple[str, str], V2PeerServer]:
    """One process per distinct configuration a peer kept, and which serves each model.

    A configuration that served in the pre-pass can still fail to start for the rounds (on a
    loaded machine KServe's supervisor kills workers still importing torch after its 5 s
    ping), so a peer falls back to its next configuration, and ``configs`` says what ran.
    """
    running: dict[tuple[str, V2Config], V2PeerServer] = {}
    failed: set[tuple[str, V2Config]] = set()
    for peer, chosen in configs.items():
        for model in list(chosen):
            for config in ranked_configs(grids[peer][model]):
                if (peer, config) in failed:
                    continue
                if (peer, config) not in running:
                    try:
                        running[(peer, config)] = stack.enter_context(
                            setting.peer(peer, config, f"rounds-{len(running)}")
                        )
                    except (RuntimeError, TimeoutError, OSError) as exc:
                        logger.warning("%s: %s did not start: %s", peer, config.label, exc)
                        setting.fallbacks.append(f"{peer}: {config.label} did not start")
                        failed.add((peer, config))
                        continue
                chosen[model] = config
                break
            else:
                raise RuntimeError(f"{peer} started in none of its configurations for {model}")
    return {
        (peer, model): running[(peer, config)]
        for peer, chosen in configs.items()
        for model, config in chosen.items()
    }


def _measure(plan: list[Series], slots: dict[str, Slot], options: V2Options) -> Measurements:
    """A warm-up of every series (not counted), then the rounds, one series at a time."""
    measurements = Measurements(plan)
    for series in plan:
        slot = slots[series.key]
        slot.driver(slot.target, LoadPlan(series.concurrency, options.warmup_s))
    for index in range(options.rounds):
        for series in round_series(plan, index):
            slot = slots[series.key]
            before = slot.failed() if slot.failed else None
            result = slot.driver(slot.target, LoadPlan(series.concurrency, options.duration_s))
            after = slot.failed() if slot.failed else None
            if before is not None and after is not None:
                result = replace(result, errors=max(result.errors, after - before))
            measurements.add(series, result)
            logger.info("round %d: %s %.0f req/s", index + 1, series.key, ok_rate(result))
    return measurements


def _versions(
    peers: dict[tuple[str, str], V2PeerServer], options: V2Options
) -> dict[str, str | None]:
    """Each peer's packages as its own python sees them, and its server's own version."""
    versions: dict[str, str | None] = {}
    for (peer, model), running in peers.items():
        if model != "cnn":
            continue
        versions.update(peer_versions(peer, options.pythons.get(peer, DEFAULT_V2_PYTHON[peer])))
        server = "tritonserver" if peer == "triton" else "kserve server"
        versions[f"{server} (GET /v2)"] = running.server_version()
    return versions


def _weights_file(model: str, weights_dir: Path) -> Path:
    """The file torchgate loads for ``model``: the peers load the very same one."""
    from app.serving.weights import pretrained_filename
    from app.zoo import SPECS

    weights = SPECS[model].pretrained
    assert weights is not None
    return weights_dir / pretrained_filename(weights)
