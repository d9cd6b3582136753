"""The Open Inference Protocol run's set-up: each peer's pre-pass, the configuration it keeps,
and each series' target (its server's address, its driver, its own failure count).

The pre-pass starts each configuration of the peer's grid alone (torchgate idle), checks its
answers against torchgate's and loads it briefly with each model's v2 REST request; for each
model the fastest configuration without errors is kept, as ``compare.best_config`` keeps
TorchServe's. One setting cannot suit both: a second intra-op thread is wasted on the cnn and
needed by resnet101, so a peer whose two choices differ runs as two processes in the rounds,
each serving the model it was chosen for (the idle one costs little).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import httpx

from torchgate_bench.drivers import Driver
from torchgate_bench.load import GRPC_SCHEME, LoadPlan, LoadTarget
from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.peers.compare import GridEntry, best_config, ok_rate
from torchgate_bench.peers.v2_answers import Slot, judge, rest_answer
from torchgate_bench.peers.v2_compare import TORCHGATE, Series
from torchgate_bench.peers.v2_options import V2Options
from torchgate_bench.peers.v2_requests import V2Request
from torchgate_bench.peers.v2_servers import V2Config, V2PeerServer, peer_grid
from torchgate_bench.protocols import failed_calls
from torchgate_bench.server import ServerProcess

logger = logging.getLogger(__name__)


@dataclass
class Setting:
    """What every step needs: torchgate, the requests, the drivers, where peers keep files."""

    options: V2Options
    server: ServerProcess
    requests: dict[str, V2Request]
    files: CnnFiles
    resnet_weights: Path | None
    folder: Path
    drivers: dict[str, Driver]  # "rest" | "grpc"
    fallbacks: list[str] = field(default_factory=list)  # configurations that did not start

    def peer(self, name: str, config: V2Config, folder: str) -> V2PeerServer:
        return V2PeerServer(
            name,
            config,
            self.files,
            self.folder / f"{name}-{folder}",
            self.resnet_weights,
            self.options.pythons.get(name),
            self.options.ready_timeout_s,
        )


def chosen_config(entries: list[GridEntry[V2Config]]) -> V2Config:
    """The fastest configuration of the pre-pass, or the only one when it was not measured."""
    if all(entry.result is None for entry in entries):
        return entries[0].config
    return best_config(entries)


def ranked_configs(entries: list[GridEntry[V2Config]]) -> list[V2Config]:
    """The pre-pass's configurations from the one to start first to the last resort: the
    chosen one, then those measured without errors by rate, then the rest in grid order."""
    chosen = chosen_config(entries)
    clean = sorted(
        (e for e in entries if e.result is not None and e.result.errors == 0),
        key=lambda e: ok_rate(e.result),  # type: ignore[arg-type]
        reverse=True,
    )
    rest = [e.config for e in entries]
    return list(dict.fromkeys([chosen, *(e.config for e in clean), *rest]))


def series_slots(
    plan: list[Series],
    setting: Setting,
    peers: dict[tuple[str, str], V2PeerServer],
    png: Path,
    content_type: str,
) -> dict[str, Slot]:
    """Each series' target (the request with its server's address), driver and failure count:
    the server's own count for gRPC, which h2load cannot see; wrk sees HTTP statuses.
    ``peers`` maps (peer, model) to the process that serves that model best."""
    server, drivers = setting.server, setting.drivers
    slots: dict[str, Slot] = {}
    for series in plan:
        request, model = setting.requests[series.model], series.model
        ours = series.server == TORCHGATE
        peer = None if ours else peers[(series.server, model)]
        base = server.base_url if peer is None else peer.base_url
        if series.protocol == "v1":
            url = f"{base}/v1/models/{model}/predict"
            slots[series.key] = Slot(LoadTarget(url, "POST", png, content_type, 1), drivers["rest"])
        elif series.protocol == "v2":
            target = replace(request.rest, url=f"{base}/v2/models/{model}/infer")
            slots[series.key] = Slot(target, drivers["rest"])
        else:
            address = server.grpc_target if peer is None else peer.grpc_target
            target = replace(request.grpc, url=f"{GRPC_SCHEME}{address}")
            failed = partial(failed_calls, server) if peer is None else peer.failed_calls
            slots[series.key] = Slot(target, drivers["grpc"], failed)
    return slots


def prepass(peer: str, setting: Setting) -> dict[str, list[GridEntry[V2Config]]]:
    """Each configuration of the grid alone: its answers checked, then one short v2 REST load
    per model (at the model's concurrency); each model's entries, so that each keeps its own
    fastest. A single configuration (``prepass`` off) is kept unmeasured."""
    options, models = setting.options, list(setting.requests)
    grid = peer_grid(peer, len(os.sched_getaffinity(0)))
    if not options.prepass:
        return {model: [GridEntry(grid[0], None, "pre-pass off")] for model in models}
    entries: dict[str, list[GridEntry[V2Config]]] = {model: [] for model in models}
    references = {
        model: rest_answer(f"{setting.server.base_url}/v2/models/{model}/infer", request)
        for model, request in setting.requests.items()
    }
    for index, config in enumerate(grid):
        logger.info("%s pre-pass: %s", peer, config.label)
        try:
            with setting.peer(peer, config, f"grid-{index}") as server:
                for model, request in setting.requests.items():
                    answer = rest_answer(server.infer_url(model), request)
                    judge({TORCHGATE: references[model], peer: answer}, TORCHGATE)
                results = {}
                for model, request in setting.requests.items():
                    target = replace(request.rest, url=server.infer_url(model))
                    concurrency = options.concurrency_for(model)
                    plan = LoadPlan(concurrency, options.prepass_s, options.warmup_s)
                    results[model] = setting.drivers["rest"](target, plan)
        except (RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
            logger.warning("%s pre-pass: %s failed: %s", peer, config.label, exc)
            for model in models:
                entries[model].append(GridEntry(config, None, str(exc)))
            continue
        for model, result in results.items():
            logger.info(
                "%s pre-pass: %s, %s %.0f req/s", peer, config.label, model, ok_rate(result)
            )
            entries[model].append(GridEntry(config, result))
    if all(entry.result is None for entry in entries["cnn"]):
        raise RuntimeError(f"{peer} did not serve in any configuration: {entries['cnn'][0].error}")
    return entries
