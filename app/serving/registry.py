"""The model registry: every enabled model's lifecycle (loading -> ready | unavailable | error).

Models load in the background, a few at a time, so the server answers ``/healthz`` at once and
one model's missing weights never stop the others from serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

import torch

from app.config import Settings
from app.errors import DeviceUnavailable, ModelNotReady, NotFound, WeightsUnavailable
from app.metrics import Metrics
from app.serving.aot_builds import GraphBuilder, PackagePlan
from app.serving.batching import BatchObserver
from app.serving.compiled_cache import PackageCache
from app.serving.device_worker import DeviceWorker
from app.serving.faults import DeviceLost
from app.serving.graph_swaps import Background
from app.serving.graphs import TRACED_MODES
from app.serving.loading import WeightsLocation, load_model
from app.serving.model_config import batching_config, graph_choice
from app.serving.runtime import ModelRuntime
from app.zoo import ModelSpec, get_spec

logger = logging.getLogger(__name__)


class ModelStatus(StrEnum):
    LOADING = "loading"
    READY = "ready"
    UNAVAILABLE = "unavailable"
    ERROR = "error"


@dataclass
class ModelEntry:
    spec: ModelSpec
    status: ModelStatus = ModelStatus.LOADING
    reason: str | None = None
    runtime: ModelRuntime | None = None
    load_seconds: float | None = None


class ModelRegistry:
    """Owns the models, the device's forward worker and the decode pool."""

    def __init__(self, settings: Settings, device: torch.device, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.device = device
        self.entries = {name: ModelEntry(get_spec(name)) for name in settings.models}
        # predict batches and swaps first, explanations after (app/serving/device_worker.py)
        self._worker = DeviceWorker(f"forward-{device.type}")
        decode_threads = settings.decode_threads_per_worker(
            os.cpu_count() or 1, cuda=device.type == "cuda"
        )
        self._decode_pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")
        # Builds graphs (TorchScript traces, "aot" packages) one at a time, at low priority,
        # while the models serve eager.
        self._graph_builder = GraphBuilder(settings.graph_compile_threads)
        self._done = asyncio.Event()
        # Set by ParameterSync once the control store's records are replayed: a process must
        # not answer with parameters the rest of the service has already changed.
        self.in_sync = False
        # Set by the first sticky device error (app.serving.faults.DeviceLost): the CUDA
        # context is gone, so nothing on this device can serve until the process restarts.
        self.device_failure: str | None = None
        # What else can leave this process beyond repair while it runs (the control-store
        # sync's stall check): each says why, or None.
        self.liveness_checks: list[Callable[[], str | None]] = []

    @property
    def loaded(self) -> bool:
        """True once every enabled model has finished loading, successfully or not."""
        return all(entry.status is not ModelStatus.LOADING for entry in self.entries.values())

    @property
    def ready(self) -> bool:
        """Loaded, caught up with the control store, and the device usable: /readyz 200."""
        return self.loaded and self.in_sync and self.device_failure is None

    @property
    def liveness_failure(self) -> str | None:
        """Why only a restart helps this process (None: it is live): what liveness answers."""
        found = (check() for check in self.liveness_checks)
        return self.device_failure or next((why for why in found if why is not None), None)

    def device_lost(self, reason: str) -> None:
        """Take every model on the lost device out of service, saying why (on the event loop:
        the batchers report their failures there)."""
        if self.device_failure is not None:
            return
        self.device_failure = (
            f"the device {self.device} failed ({reason}); this process cannot use it until it "
            "is restarted"
        )
        logger.error("%s", self.device_failure)
        for entry in self.entries.values():
            if entry.status is ModelStatus.READY:
                entry.status, entry.reason = ModelStatus.ERROR, self.device_failure

    def gauge_samples(self) -> tuple[dict[str, int], dict[str, str]]:
        """Queue depth of every model that has a runtime, and every model's status: what the
        metrics' gauges show (set at each scrape and, for --workers, each heartbeat)."""
        entries = self.entries.items()
        depths = {name: e.runtime.queue_depth for name, e in entries if e.runtime is not None}
        return depths, {name: entry.status.value for name, entry in entries}

    def entry(self, name: str) -> ModelEntry:
        spec = get_spec(name)
        entry = self.entries.get(spec.name)
        if entry is None:
            raise NotFound(
                f"model {name!r} is not enabled on this server; enabled: "
                f"{', '.join(self.entries)} (see TORCHGATE_MODELS)."
            )
        return entry

    def runtime(self, name: str) -> ModelRuntime:
        entry = self.entry(name)
        if self.device_failure is not None:
            raise DeviceUnavailable(f"{self.device_failure}; retry against another replica.")
        if entry.runtime is None or entry.status is not ModelStatus.READY:
            reason = entry.reason or "it is still loading; retry when /readyz answers 200"
            raise ModelNotReady(f"model {name!r} is {entry.status.value}: {reason}")
        if not self.in_sync:  # its parameters may be older than the rest of the service's
            raise ModelNotReady(
                f"model {name!r} is loaded, but this process is still replaying the control "
                "store's parameter changes; retry when /readyz answers 200."
            )
        return entry.runtime

    async def wait_loaded(self) -> None:
        await self._done.wait()

    async def load_all(self) -> None:
        limit = asyncio.Semaphore(self.settings.load_concurrency)
        started = time.perf_counter()
        await asyncio.gather(*(self._load(entry, limit) for entry in self._load_order()))
        logger.info("models loaded in %.2f s", time.perf_counter() - started)
        # Everything alive now (torch, the models, the app) lives as long as the process: move
        # it out of the collector's reach, so full collections stop pausing the event loop for
        # the ~10^6 objects torch brings.
        gc.collect()
        gc.freeze()
        self._done.set()

    async def load(self, name: str) -> ModelEntry:
        """Load one enabled model now, on its own (tools that measure each model's load)."""
        entry = self.entry(name)
        await self._load(entry, asyncio.Semaphore(1))
        return entry

    def _load_order(self) -> list[ModelEntry]:
        """Slowest first, so the longest load starts at once instead of trailing the others:
        pretrained nets that get a TorchScript graph (traced at load if TORCHGATE_WAIT_FOR_GRAPHS:
        resnet101's takes about a second), then the other pretrained ones, largest first, then
        the small trained ones. Otherwise graphs are built after loading, in the background."""

        wait = self.settings.wait_for_graphs

        def key(entry: ModelEntry) -> tuple[bool, bool, int]:
            spec = entry.spec
            size = int(spec.pretrained.meta.get("num_params", 0)) if spec.pretrained else 0
            traced_at_load = (
                wait and graph_choice(self.settings, spec, self.device).mode in TRACED_MODES
            )
            return spec.pretrained is None, not traced_at_load, -size

        return sorted(self.entries.values(), key=key)

    async def _load(self, entry: ModelEntry, limit: asyncio.Semaphore) -> None:
        spec = entry.spec
        async with limit:
            started = time.perf_counter()
            try:
                runtime = await asyncio.to_thread(self._build_runtime, spec)
            except WeightsUnavailable as exc:
                entry.status, entry.reason = ModelStatus.UNAVAILABLE, str(exc)
                logger.warning("model %s unavailable: %s", spec.name, exc)
                return
            except Exception as exc:
                entry.status, entry.reason = ModelStatus.ERROR, f"{type(exc).__name__}: {exc}"
                logger.exception("model %s failed to load", spec.name)
                return
            runtime.start()
            self.metrics.watch_queue_depth(spec.name, lambda: runtime.queue_depth)
            entry.runtime, entry.status = runtime, ModelStatus.READY
            if self.device_failure is not None:  # lost while this one was loading
                entry.status, entry.reason = ModelStatus.ERROR, self.device_failure
            entry.load_seconds = time.perf_counter() - started
            logger.info(
                "model %s ready on %s in %.2f s", spec.name, self.device, entry.load_seconds
            )

    def _build_runtime(self, spec: ModelSpec) -> ModelRuntime:
        settings = self.settings
        where = WeightsLocation(
            weights_dir=settings.weights_dir,
            checkpoint_dir=settings.checkpoint_dir,
            download=settings.download_weights,
            verify=settings.verify_weights,
        )
        loaded = load_model(spec, where, self.device)
        batching = batching_config(settings, spec)
        graph = graph_choice(settings, spec, self.device)
        runtime = ModelRuntime(
            spec,
            loaded,
            self.device,
            worker=self._worker,
            decode_pool=self._decode_pool,
            batching=batching,
            max_image_pixels=settings.max_image_pixels,
            graph=graph,
            half=settings.half,
            half_dtype=getattr(torch, settings.half_dtype),
            observer=self._observer(spec.name),
            explain_queue=settings.explain_queue,
        )
        # A finished graph is swapped in on the batch lane: it changes no parameter, so it may
        # run at an explanation's yield point instead of restarting the explanation.
        adopt = self._worker.batches.submit
        if graph.mode in TRACED_MODES:
            runtime.forward.background = Background(
                self._graph_builder, on_worker=adopt, wait=settings.wait_for_graphs
            )
        if graph.mode == "aot":
            runtime.forward.packages = PackagePlan(
                PackageCache(settings.compiled_graphs_dir),
                self._graph_builder,
                spec.name,
                compile_missing=settings.compile_graphs,
                wait=settings.wait_for_graphs,
                on_worker=adopt,
            )
        seconds = runtime.prepare()
        logger.info("model %s warmed up in %.2f s", spec.name, seconds)
        return runtime

    def _observer(self, name: str) -> BatchObserver:
        batch_size = self.metrics.batch_size.labels(name)
        forward = self.metrics.forward.labels(name)
        wait = self.metrics.queue_wait.labels(name)

        def on_batch(size: int, seconds: float) -> None:
            batch_size.observe(size)
            forward.observe(seconds)
            runtime = self.entries[name].runtime
            precision = runtime.forward.precision if runtime is not None else "float32"
            self.metrics.inferences.labels(name, precision).inc(size)

        def on_failure(exc: Exception) -> None:
            if isinstance(exc, DeviceLost):
                self.device_lost(str(exc))

        return BatchObserver(on_batch=on_batch, on_wait=wait.observe, on_failure=on_failure)

    async def close(self) -> None:
        for entry in self.entries.values():
            if entry.runtime is not None:
                await entry.runtime.stop()
        await asyncio.to_thread(self._graph_builder.close)
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        # Hand the frozen objects back to the collector: the models and the app hold reference
        # cycles, which a process that goes on after this app (tests, an embedding program)
        # could otherwise never free.
        gc.unfreeze()
