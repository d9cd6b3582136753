"""One peer comparison run: torchgate as users start it, each peer in turn, alternating rounds.

torchgate runs ``python -m app serve`` with its defaults (all six models); offline, the three
ImageNet models get random weights under the official file names (the compute is the same),
as ``bench --startup`` does, unless ``--weights-dir`` holds real ones (random ones written
there are kept for the next run). It stays up for the
whole run; each peer is started alone (its pre-pass configurations one after the other), and
while one side is loaded the other sits idle (an idle JVM or uvicorn costs little).
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.config import ALL_MODELS
from torchgate_bench.drivers import Driver, choose_driver
from torchgate_bench.images import garment_png
from torchgate_bench.load import LoadPlan, LoadResult, LoadTarget
from torchgate_bench.machine import describe_machine
from torchgate_bench.payload import raw_body, write_body
from torchgate_bench.peers.answers import check_answers
from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.peers.compare import (
    TORCHGATE,
    GridEntry,
    PeerComparison,
    Round,
    best_config,
    ok_rate,
    round_order,
)
from torchgate_bench.peers.configs import DEFAULT_GRID, PeerConfig, parse_grid
from torchgate_bench.peers.requirements import (
    DEFAULT_PEERS_PYTHON,
    missing_requirement,
    peer_versions,
)
from torchgate_bench.peers.servers import PeerServer
from torchgate_bench.server import ServerProcess
from torchgate_bench.weights import provide_random_weights

logger = logging.getLogger(__name__)
MODEL = "cnn"


@dataclass(frozen=True)
class PeersOptions:
    peers: tuple[str, ...]
    concurrency: int = 32
    rounds: int = 5
    duration_s: float = 10.0  # per side and round
    warmup_s: float = 2.0
    grid: str = DEFAULT_GRID
    peers_python: Path = DEFAULT_PEERS_PYTHON
    checkpoint_dir: Path = Path("models")
    weights_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()
    load_tool: str = "auto"
    ready_timeout_s: float = 300.0
    log_dir: Path | None = None

    @property
    def grid_seconds(self) -> float:
        """The pre-pass measures each configuration for half a round (at least 2 s)."""
        return max(2.0, self.duration_s / 2)


@dataclass
class PeersResult:
    options: PeersOptions
    load_tool: str
    machine: dict[str, Any]
    load_average_end: list[float]
    input: dict[str, Any]
    torchgate: dict[str, Any]
    comparisons: list[PeerComparison]
    versions: dict[str, str | None] = field(default_factory=dict)  # each peer's packages

    def to_document(self) -> dict[str, Any]:
        options = self.options
        return {
            **self.machine,
            "load_average_end": self.load_average_end,
            "model": MODEL,
            "load_tool": self.load_tool,
            "concurrency": options.concurrency,
            "rounds": options.rounds,
            "round_seconds": options.duration_s,
            "warmup_s": options.warmup_s,
            "grid": options.grid,
            "input": self.input,
            "torchgate": self.torchgate,
            "versions": self.versions,
            "peers": [comparison.to_dict() for comparison in self.comparisons],
        }


@dataclass
class _Sides:
    """What the rounds load: torchgate's predict and /healthz, a driver, a plan per slice."""

    driver: Driver
    predict: LoadTarget
    healthz: LoadTarget
    body: LoadTarget  # the peer's request without its address
    image: bytes
    content_type: str
    classes: int


def torchgate_env(
    checkpoint_dir: Path, extra_env: dict[str, str], weights_dir: Path, random_weights: bool
) -> dict[str, str]:
    """serve's defaults (all six models), this run's weights and checkpoints, then --env."""
    env = dict(os.environ)
    env.pop("TORCHGATE_MODELS", None)  # the defaults: all six
    env.update(
        {
            "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
            "TORCHGATE_CHECKPOINT_DIR": str(checkpoint_dir.resolve()),
            "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
            "TORCHGATE_ADMIN_TOKEN": secrets.token_urlsafe(32),
        }
    )
    if random_weights:
        env["TORCHGATE_VERIFY_WEIGHTS"] = "false"
    env.update(extra_env)
    return env


def model_statuses(base_url: str) -> dict[str, str]:
    models = httpx.get(f"{base_url}/v1/models", timeout=30).json()["models"]
    return {str(info["name"]): str(info["status"]) for info in models}


def run_peers(options: PeersOptions) -> PeersResult:
    """Start torchgate once, then compare it with each peer in ``options.peers``."""
    for peer in options.peers:
        problem = missing_requirement(peer, options.peers_python)
        if problem:
            raise RuntimeError(problem)
    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="torchgate-peers-") as scratch:
        workdir = Path(scratch)
        upload = garment_png()
        body_path = write_body(raw_body(upload), workdir / "body.png")
        weights_dir = options.weights_dir or workdir / "weights"
        enabled = options.extra_env.get("TORCHGATE_MODELS", ",".join(ALL_MODELS)).split(",")
        randomized = provide_random_weights([name.strip() for name in enabled], weights_dir)
        random_weights = bool(randomized)
        tool, driver = choose_driver(options.load_tool, workdir)
        env = torchgate_env(options.checkpoint_dir, options.extra_env, weights_dir, random_weights)
        server = ServerProcess(
            env,
            options.serve_args,
            options.ready_timeout_s,
            log_dir=options.log_dir,
            keep_log=options.log_dir is not None,
        )
        with server:
            statuses = model_statuses(server.base_url)
            if statuses.get(MODEL) != "ready":
                raise RuntimeError(f"torchgate's cnn is {statuses.get(MODEL)}: see its log")
            labels = httpx.get(f"{server.base_url}/v1/models/{MODEL}", timeout=30).json()
            sides = _Sides(
                driver=driver,
                predict=LoadTarget(
                    f"{server.base_url}/v1/models/{MODEL}/predict",
                    "POST",
                    body_path,
                    upload.content_type,
                    1,
                ),
                healthz=LoadTarget(f"{server.base_url}/healthz"),
                body=LoadTarget("", "POST", body_path, upload.content_type, 1),
                image=upload.data,
                content_type=upload.content_type,
                classes=int(labels.get("labels") or labels.get("num_labels") or 10),
            )
            peers_root = options.log_dir or workdir
            comparisons = [
                _compare(peer, options, sides, peers_root / f"peer-{peer}")
                for peer in options.peers
            ]
            torchgate = {
                "cold_start_s": server.cold_start_s,
                "models": statuses,
                "weights_dir": str(weights_dir),
                "random_weights": randomized,
                "serve_args": list(options.serve_args),
                "env": options.extra_env,
            }
    return PeersResult(
        options=options,
        load_tool=tool,
        machine=machine,
        load_average_end=[round(load, 2) for load in os.getloadavg()],
        input={"name": upload.filename, "bytes": len(upload.data), "body": "raw image/png"},
        torchgate=torchgate,
        comparisons=comparisons,
        versions={
            name: version
            for peer in options.peers
            for name, version in peer_versions(peer, options.peers_python).items()
        },
    )


def _configs(peer: str, options: PeersOptions) -> list[PeerConfig]:
    cores = len(os.sched_getaffinity(0))
    return parse_grid(options.grid, cores, batching=peer != "fastapi")


def _peer(peer: str, config: PeerConfig, options: PeersOptions, folder: Path) -> PeerServer:
    files = CnnFiles.in_repository(options.checkpoint_dir)
    return PeerServer(peer, config, files, folder, options.peers_python, options.ready_timeout_s)


def _compare(peer: str, options: PeersOptions, sides: _Sides, folder: Path) -> PeerComparison:
    """The pre-pass over the grid (when it has more than one entry), then the rounds."""
    configs = _configs(peer, options)
    grid: list[GridEntry] = []
    if len(configs) > 1:
        for index, config in enumerate(configs):
            grid.append(_measure_config(peer, config, options, sides, folder / f"grid-{index}"))
        if all(entry.result is None for entry in grid):
            raise RuntimeError(f"{peer} did not start in any configuration: {grid[0].error}")
        chosen = best_config(grid)
    else:
        chosen = configs[0]
    logger.info("%s: measuring %s", peer, chosen.label)
    comparison = PeerComparison(peer, chosen, grid)
    with _peer(peer, chosen, options, folder / "rounds") as server:
        comparison.answers = check_answers(
            sides.predict.url, server.predict_url, sides.image, sides.content_type, sides.classes
        )
        target = LoadTarget(server.predict_url, "POST", sides.body.body_path, sides.content_type, 1)
        warmup = LoadPlan(options.concurrency, options.warmup_s)
        if options.warmup_s > 0:
            sides.driver(sides.predict, warmup)
            sides.driver(target, warmup)
        plan = LoadPlan(options.concurrency, options.duration_s)
        for index in range(options.rounds):
            order = round_order(index, peer)
            results: dict[str, LoadResult] = {}
            for side in order:
                results[side] = sides.driver(sides.predict if side == TORCHGATE else target, plan)
            healthz = sides.driver(sides.healthz, plan)
            entry = Round(order, results[TORCHGATE], results[peer], healthz)
            comparison.rounds.append(entry)
            logger.info(
                "%s round %d: torchgate %.0f req/s, %s %.0f req/s, ratio %s",
                peer,
                index + 1,
                ok_rate(entry.torchgate),
                peer,
                ok_rate(entry.peer),
                f"{entry.ratio:.2f}" if entry.ratio is not None else "-",
            )
    return comparison


def _measure_config(
    peer: str, config: PeerConfig, options: PeersOptions, sides: _Sides, folder: Path
) -> GridEntry:
    """One pre-pass entry: start the peer so configured, check its answer, load it."""
    logger.info("%s pre-pass: %s", peer, config.label)
    try:
        with _peer(peer, config, options, folder) as server:
            check_answers(
                sides.predict.url,
                server.predict_url,
                sides.image,
                sides.content_type,
                sides.classes,
            )
            target = LoadTarget(
                server.predict_url, "POST", sides.body.body_path, sides.content_type, 1
            )
            plan = LoadPlan(options.concurrency, options.grid_seconds, options.warmup_s)
            result = sides.driver(target, plan)
    except (RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
        logger.warning("%s pre-pass: %s failed: %s", peer, config.label, exc)
        return GridEntry(config, None, str(exc))
    logger.info("%s pre-pass: %s -> %.0f req/s", peer, config.label, ok_rate(result))
    return GridEntry(config, result)
