"""How a model's serving graph is replaced without holding up its batches: eager serves at
once, a TorchScript or AOTInductor graph is built in the background and swapped in between two
batches, and only if it was built for the weights the module holds by then.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from app.serving.aot import CompiledGraph
from app.serving.aot_builds import GraphBuilder, GraphTarget, PackagePlan, obtain_graph, verified
from app.serving.graphs import ServingGraph, build_graph

logger = logging.getLogger(__name__)

ExampleFn = Callable[[int], tuple[torch.Tensor, ...]]
OnWorker = Callable[[Callable[[], None]], object]


@dataclass(frozen=True)
class Background:
    """Where a TorchScript graph is traced once the model already serves eager, and how the
    graph reaches the forward worker (``on_worker``; None: at the model's next batch).
    ``wait``: trace before the model is ready instead (TORCHGATE_WAIT_FOR_GRAPHS)."""

    builder: GraphBuilder
    on_worker: OnWorker | None = None
    wait: bool = False


class GraphSwaps:
    """ModelForward's graph builds and swaps, a base class of it: the attributes below are set
    by ModelForward.__init__, and every method runs on the device's worker or a builder thread.
    """

    module: nn.Module
    device: torch.device
    classifier: bool
    graph: ServingGraph
    packages: PackagePlan | None
    _example: ExampleFn
    _graph_mode: str
    _channels_last: bool
    _autocast: bool
    _half_dtype: torch.dtype
    _max_batch: int
    _generation: int
    _building: int | None
    _pending: tuple[int, ServingGraph] | None
    _pending_lock: threading.Lock

    @property
    def graph_pending(self) -> bool:
        """Whether a graph for the current weights is still being built to replace eager."""
        return self._building is not None and self._building == self._generation

    def _graph_target(self) -> GraphTarget:
        return GraphTarget(
            self.module,
            self.device,
            self._example,
            self._max_batch,
            self._channels_last,
            self.classifier,
        )

    def _trace_later(
        self, example: tuple[torch.Tensor, ...], background: Background, wait: bool
    ) -> None:
        """Eager at once, the TorchScript graph once traced and checked (about a second for
        resnet101, which would otherwise hold up readiness and every parameter swap)."""
        generation = self._next_generation()
        self.graph = build_graph(
            self.module, "eager", self._channels_last, example, self.classifier
        )

        def trace() -> ServingGraph | None:
            with self._autocast_context():
                graph = build_graph(
                    self.module,
                    self._graph_mode,
                    self._channels_last,
                    example,
                    self.classifier,
                    convert_module=False,  # eager already has the layout; it is serving
                )
            # else build_graph logged why it serves eager
            return graph if graph.mode == self._graph_mode else None

        self._schedule(generation, trace, background.builder, background.on_worker, wait)

    def _next_generation(self) -> int:
        """Start serving new weights: any graph built for older ones is dropped."""
        self._generation += 1
        with self._pending_lock:
            self._pending = None
        return self._generation

    def _schedule(
        self,
        generation: int,
        make: Callable[[], ServingGraph | None],
        builder: GraphBuilder,
        on_worker: OnWorker | None,
        wait: bool,
    ) -> None:
        """Build a graph for ``generation`` with ``make`` on ``builder``'s thread (or now, if
        ``wait``), and hand it to the worker, which swaps it in between two batches."""

        def build() -> None:
            graph = None
            try:
                if generation == self._generation:  # else the weights changed again since
                    graph = make()
            finally:
                if graph is None and self._building == generation:
                    self._building = None  # eager stays, and nothing is pending any more
            if graph is None:
                return
            with self._pending_lock:
                self._pending = (generation, graph)
            if on_worker is not None and not wait:
                with contextlib.suppress(RuntimeError):  # the worker has shut down
                    on_worker(self._adopt_pending)

        self._building = generation
        if wait:
            build()
            self._adopt_pending()
        else:
            builder.submit(build)

    def _rebuild_aot(self, wait: bool) -> None:
        """Eager at once, the compiled graph when it is ready. A graph that reads every weight
        from the module keeps serving after a parameter swap if it still agrees with eager;
        one with weights baked in gives way to eager until the new weights' package is ready."""
        self._next_generation()
        current = self.graph.forward
        if isinstance(current, CompiledGraph) and current.weights_external:
            try:
                current.bind_weights()
                verified(current, self._graph_target())
                return
            except Exception as exc:
                logger.warning("%s: compiled graph dropped (%s)", type(self.module).__name__, exc)
        example = tuple(t.to(self.device) for t in self._example(1))
        self.graph = build_graph(self.module, "aot", self._channels_last, example, self.classifier)
        if self.packages is None or self._autocast:  # half precision on CUDA serves eager
            return
        plan, target = self.packages, self._graph_target()

        def package() -> ServingGraph | None:
            try:
                graph = obtain_graph(plan, target)
            except Exception as exc:
                logger.warning("%s: no compiled graph (%s); serving eager", plan.model, exc)
                return None
            return None if graph is None else ServingGraph("aot", False, graph)

        self._schedule(self._generation, package, plan.builder, plan.on_worker, wait)

    def _adopt_pending(self) -> None:
        """Swap in a finished compiled graph (on the worker, between batches) if it was built
        for the weights the module holds now."""
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None or pending[0] != self._generation:
            return
        self.graph, self._building = pending[1], None
        forward = self.graph.forward
        source = f" ({forward.path.name})" if isinstance(forward, CompiledGraph) else ""
        logger.info("%s serving graph: %s%s", type(self.module).__name__, self.graph.mode, source)

    def _autocast_context(self) -> contextlib.AbstractContextManager[object]:
        if self._autocast:
            return torch.autocast("cuda", dtype=self._half_dtype)
        return contextlib.nullcontext()
