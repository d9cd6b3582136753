"""Getting a model's AOTInductor graph: from the package cache, or compiled in the background.

Models serve eager (the reference) from the start. One low-priority background thread per
process builds the compiled graphs one at a time, so compiling never takes a core from serving
for long on a small host; ModelForward swaps each one in between batches once it has agreed
with eager within MAX_PROBABILITY_DIFF.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from app.serving.aot import CompiledGraph, compile_package_isolated, compiler_found
from app.serving.checksum import parameters_sha256
from app.serving.compiled_cache import PackageCache, PackageKey
from app.serving.graphs import MAX_PROBABILITY_DIFF, max_difference

logger = logging.getLogger(__name__)

# Bumped whenever what a package holds changes (export settings, inductor configs).
PACKAGE_FORMAT = 1
_LOW_PRIORITY = 19


class GraphBuilder:
    """One daemon thread that runs build jobs in order (a compile itself runs in a child
    process at the lowest priority). A daemon, so an exiting process never waits for it."""

    def __init__(self, compile_threads: int = 1) -> None:
        self.compile_threads = compile_threads
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="graph-builder", daemon=True
                )
                self._thread.start()
        self._jobs.put(job)

    def close(self, wait_s: float = 30.0) -> None:
        """Drop the queued jobs and wait (at most ``wait_s``) for the one in progress, so a
        stopped app's models are no longer referenced from here (a trace takes seconds; a
        compile that outlasts the wait goes on in its daemon thread)."""
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        self._jobs.put(None)
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(wait_s)

    def _serve(self) -> None:
        # Loading and checking a package is light, but it need not compete with serving either:
        # Linux applies a thread id's priority to that thread alone.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _LOW_PRIORITY)
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a job reports its own failures; this keeps the thread alive
                logger.exception("graph build failed")


@dataclass(frozen=True)
class PackagePlan:
    """Where a model's packages live, what to do on a cache miss, and how a finished graph
    reaches the forward worker (``on_worker``: run a function there between batches; None:
    at the model's next batch)."""

    cache: PackageCache
    builder: GraphBuilder
    model: str
    compile_missing: bool = True
    wait: bool = False
    on_worker: Callable[[Callable[[], None]], object] | None = None


@dataclass(frozen=True)
class GraphTarget:
    """What the package is built for: the module, its inputs and the batch range."""

    module: nn.Module
    device: torch.device
    example: Callable[[int], tuple[torch.Tensor, ...]]
    max_batch: int
    channels_last: bool
    classifier: bool

    def key(self, model: str) -> PackageKey:
        options = (
            f"aoti-v{PACKAGE_FORMAT};batch=1..{self.max_batch};channels_last={self.channels_last}"
        )
        return PackageKey.for_model(model, self.device, parameters_sha256(self.module), options)

    def inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self.device) for t in self.example(batch))

    def sample_shapes(self) -> Sequence[torch.Size]:
        return [t.shape[1:] for t in self.example(1)]


def verified(graph: CompiledGraph, target: GraphTarget) -> CompiledGraph:
    """``graph`` if it agrees with eager at an odd batch size (one it was not traced at)."""
    example = target.inputs(min(3, target.max_batch))
    difference = max_difference(graph, target.module, example, target.classifier)
    if difference > MAX_PROBABILITY_DIFF:
        raise ValueError(f"it differs from eager by {difference:.2e}")
    return graph


def _load(path: Path, target: GraphTarget) -> CompiledGraph:
    graph = CompiledGraph(
        path, target.module, target.sample_shapes(), target.max_batch, target.device
    )
    return verified(graph, target)


def obtain_graph(plan: PackagePlan, target: GraphTarget) -> CompiledGraph | None:
    """The model's compiled graph, verified: the cached package, else (if allowed) a new one.
    A cached package that fails to load or disagrees is ignored with a warning."""
    key = target.key(plan.model)
    cached = plan.cache.find(key)
    if cached is not None:
        try:
            return _load(cached, target)
        except Exception as exc:
            logger.warning("ignoring the compiled graph %s: %s", cached, exc)
    if not plan.compile_missing:
        logger.info("no compiled graph cached for %s; serving eager", plan.model)
        return None
    if not compiler_found():
        logger.warning(
            "no compiled graph cached for %s and no C++ compiler to build one (install g++ or "
            "set CXX); serving eager",
            plan.model,
        )
        return None
    with plan.cache.compiling(key):
        found = plan.cache.find(key)
        if found is not None and cached is None:  # another worker compiled it meanwhile
            return _load(found, target)
        logger.info("compiling the %s graph (%s)", plan.model, key.options)
        seconds: list[float] = []
        path = plan.cache.store(
            key,
            lambda tmp: seconds.append(
                compile_package_isolated(
                    target.module,
                    target.inputs(1),
                    target.max_batch,
                    tmp,
                    plan.builder.compile_threads,
                )
            ),
        )
    logger.info("compiled the %s graph in %.1f s", plan.model, seconds[0])
    return _load(path, target)
