"""The device side of one model: its serving graph, host->device copies, autocast, warm-up.

Everything here runs on the device's worker thread (or in the loader before the model is
published), never on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from app.serving.graphs import ServingGraph, build_graph

logger = logging.getLogger(__name__)

ExampleFn = Callable[[int], tuple[torch.Tensor, ...]]


def warmup_batch_sizes(device: torch.device, max_batch_size: int) -> list[int]:
    """On the CPU the first forward pays the one-off costs (allocator, oneDNN and graph
    set-up) and later batch sizes only add a cheap primitive each, so one batch of 1 is
    enough and keeps the cold start short. cuDNN's autotuner picks kernels per shape, so on
    CUDA every power of two up to the limit (and the limit) is run once."""
    if device.type != "cuda":
        return [1]
    sizes = {1, max_batch_size}
    size = 2
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


class ModelForward:
    """Runs batches through the model's serving graph on its device."""

    def __init__(
        self,
        module: nn.Module,
        device: torch.device,
        classifier: bool,
        example: ExampleFn,
        graph_mode: str = "eager",
        channels_last: bool = False,
        half: bool = False,
        half_dtype: torch.dtype = torch.float16,
        cpu_threads: int | None = None,
    ) -> None:
        self.module = module
        # Intra-op threads for this model's batches on the CPU (None: the process setting).
        self.cpu_threads = cpu_threads
        self.device = device
        self.classifier = classifier
        self._example = example
        self._graph_mode = graph_mode
        self._channels_last = channels_last
        self._autocast = half and device.type == "cuda"  # CPU autocast is slower, not faster
        self._half_dtype = half_dtype
        self.graph = ServingGraph("eager", False, module)

    def prepare(self, max_batch_size: int) -> float:
        """Build the serving graph and run one forward per served batch shape; returns seconds."""
        started = time.perf_counter()
        self.rebuild()
        for batch_size in warmup_batch_sizes(self.device, max_batch_size):
            self.run(self._example(batch_size))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def rebuild(self) -> None:
        """(Re)build the graph: a frozen TorchScript graph holds the weights as constants, so
        it must be rebuilt after every parameter swap; eager and compiled ones need not be."""
        if self.graph.mode == "compile":
            return
        example = tuple(t.to(self.device) for t in self._example(1))
        with self._autocast_context():
            self.graph = build_graph(
                self.module, self._graph_mode, self._channels_last, example, self.classifier
            )
        logger.info(
            "%s serving graph: %s%s",
            type(self.module).__name__,
            self.graph.mode,
            " + channels_last" if self.graph.channels_last else "",
        )

    def _autocast_context(self) -> contextlib.AbstractContextManager[object]:
        if self._autocast:
            return torch.autocast("cuda", dtype=self._half_dtype)
        return contextlib.nullcontext()

    def run(self, columns: Sequence[torch.Tensor], postprocess: bool = True) -> torch.Tensor:
        """One forward on a stacked batch; returns float32 results on the CPU."""
        # Every torch call below drops and retakes the GIL, and retaking it can wait for the
        # busy event loop thread; so no-op conversions are skipped with plain Python checks.
        cuda = self.device.type == "cuda"
        if cuda:
            columns = [c.pin_memory().to(self.device, non_blocking=True) for c in columns]
        else:
            columns = list(columns)
            if self.cpu_threads is not None and torch.get_num_threads() != self.cpu_threads:
                torch.set_num_threads(self.cpu_threads)
        first = columns[0]
        if (
            self.graph.channels_last
            and first.dim() == 4
            and not first.is_contiguous(memory_format=torch.channels_last)
        ):
            columns[0] = first.contiguous(memory_format=torch.channels_last)
        try:
            with torch.inference_mode(), self._autocast_context():
                result = self.graph.forward(*columns)
                if result.dtype != torch.float32:
                    result = result.float()
                if postprocess and self.classifier:
                    result = result.softmax(dim=1)
            return result.cpu() if cuda else result
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise
