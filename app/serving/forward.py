"""The device side of one model: its serving graph, host->device copies, autocast, warm-up.

Everything here runs on the device's worker thread (or in the loader before the model is
published), never on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from app.serving.aot import CompiledGraph
from app.serving.aot_builds import GraphBuilder, GraphTarget, PackagePlan, obtain_graph, verified
from app.serving.faults import DeviceFault, DeviceLost, device_fault, device_responds
from app.serving.graphs import TRACED_MODES, ServingGraph, build_graph
from app.serving.precision import (
    CAST_DTYPES,
    FLOAT32,
    convert,
    input_dtype,
    is_convolutional,
)

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


def bucket_sizes(max_batch_size: int) -> list[int]:
    """Every power of two below the limit, and the limit: the batch sizes CUDA serves."""
    sizes = {1, max_batch_size}
    size = 2
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def warmup_batch_sizes(device: torch.device, max_batch_size: int) -> list[int]:
    """On the CPU the first forward pays the one-off costs (allocator, oneDNN and graph
    set-up) and later batch sizes only add a cheap primitive each, so one batch of 1 is
    enough and keeps the cold start short. cuDNN's autotuner picks kernels per shape, so on
    CUDA every bucket size is run once (and batches are padded up to one, see ModelForward)."""
    if device.type != "cuda":
        return [1]
    return bucket_sizes(max_batch_size)


def padded_size(size: int, warmed: Sequence[int]) -> int:
    """The smallest warmed batch size that holds ``size`` (``size`` itself beyond them all)."""
    return min((w for w in warmed if w >= size), default=size)


def release_cached_memory(device: torch.device) -> None:
    """Hand the caching allocator's free blocks back to the driver, after a failed batch."""
    if device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            torch.cuda.empty_cache()


@contextlib.contextmanager
def _autotuning_off() -> Iterator[None]:
    """cuDNN's autotuner off for one call. The flag is process-wide, but every served batch
    runs on the one forward worker; only a model still warming up in a loader thread can run
    beside it, and at worst that model then tunes the shape at its first batch instead."""
    cudnn = torch.backends.cudnn
    cudnn.benchmark = False
    try:
        yield
    finally:
        cudnn.benchmark = True


class ModelForward:
    """Runs batches through the model's serving graph on its device.

    With ``fixed_shapes`` (the default on CUDA), only warmed shapes reach the device: a batch
    is padded with zero rows up to the next warmed batch size and its outputs are sliced back,
    and cuDNN's autotuner (``cudnn.benchmark``, which pauses to time every new shape) runs
    only for those shapes. Other inputs (ImageNet tensors of another height or width, an LSTM
    sequence shorter than 28 rows, an evaluation batch beyond the largest warmed size) run
    unpadded with cuDNN's heuristics, so clients cannot grow the tuning cache without bound.
    On the CPU there is no autotuner and one warm-up size serves all, so nothing is padded.
    """

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
        fixed_shapes: bool | None = None,
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
        self._fixed_shapes = device.type == "cuda" if fixed_shapes is None else fixed_shapes
        self._warmed: tuple[int, ...] = ()  # batch sizes run at warm-up
        self._sample_shapes: tuple[torch.Size, ...] | None = None  # one sample's, per input
        self.graph = ServingGraph("eager", False, module)
        # The "aot" mode's packages (set by the registry before prepare; None: serve eager).
        self.packages: PackagePlan | None = None
        # Where the TorchScript modes trace after readiness (None: trace before, in prepare).
        self.background: Background | None = None
        self._max_batch = 1
        self._generation = 0  # bumped by every rebuild: a build for older weights is dropped
        self._building: int | None = None  # the generation whose graph is being built
        self._pending: tuple[int, ServingGraph] | None = None
        self._pending_lock = threading.Lock()
        # The promoted precision (app.serving.precision): a reduced copy of ``module`` serves
        # eager in its place, made again from the float32 master after every parameter swap.
        self.precision = FLOAT32
        self._reduced: nn.Module | None = None
        self._reduced_nhwc = False  # whether the copy takes 4-D inputs channels_last

    def set_precision(self, dtype: str) -> None:
        """Serve ``dtype`` from now on (on the worker, between batches); raises, changing
        nothing, when the copy cannot be made."""
        nhwc = dtype in CAST_DTYPES and is_convolutional(self.module)
        reduced = None if dtype == FLOAT32 else convert(self.module, dtype, nhwc)
        self.precision, self._reduced, self._reduced_nhwc = dtype, reduced, nhwc

    @property
    def _name(self) -> str:
        return type(self.module).__name__

    def example(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        """A batch of the shapes the model is served (random values, on the CPU)."""
        return self._example(batch_size)

    def prepare(self, max_batch_size: int) -> float:
        """Build the serving graph and run one forward per served batch shape; returns seconds."""
        started = time.perf_counter()
        self._max_batch = max_batch_size
        self.rebuild(wait=self.packages is not None and self.packages.wait)
        if self._fixed_shapes:
            self._warmed = tuple(bucket_sizes(max_batch_size))
        else:
            self._warmed = tuple(warmup_batch_sizes(self.device, max_batch_size))
        self._sample_shapes = tuple(t.shape[1:] for t in self._example(1))
        for batch_size in self._warmed:
            self.run(self._example(batch_size))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    @property
    def graph_pending(self) -> bool:
        """Whether a graph for the current weights is still being built to replace eager."""
        return self._building is not None and self._building == self._generation

    def rebuild(self, wait: bool = False) -> None:
        """(Re)build the graph: a frozen TorchScript graph holds the weights as constants, so
        it must be rebuilt after every parameter swap; eager and compiled ones need not be.
        AOTInductor and (given ``background``) TorchScript graphs are built in the background
        while eager serves, unless ``wait``. A reduced precision's copy is made again."""
        if self._reduced is not None:
            try:
                self._reduced = convert(self.module, self.precision, self._reduced_nhwc)
            except Exception:  # the float32 master serves rather than stale weights
                logger.exception("%s: no %s copy; serving float32", self._name, self.precision)
                self.precision, self._reduced = FLOAT32, None
        if self.graph.mode == "compile":
            return
        if self._graph_mode == "aot":
            self._rebuild_aot(wait)
            return
        example = tuple(t.to(self.device) for t in self._example(1))
        background = self.background
        if self._graph_mode in TRACED_MODES and background is not None:
            self._trace_later(example, background, wait or background.wait)
            return
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

    def batch_plan(self, columns: Sequence[torch.Tensor]) -> tuple[int, bool]:
        """(rows to run, whether cuDNN may autotune them) for a stacked batch."""
        size = columns[0].shape[0]
        if not self._fixed_shapes or self._sample_shapes is None:
            return size, False
        if tuple(c.shape[1:] for c in columns) != self._sample_shapes:
            return size, False
        padded = padded_size(size, self._warmed)
        return padded, padded in self._warmed

    def run(self, columns: Sequence[torch.Tensor], postprocess: bool = True) -> torch.Tensor:
        """One forward on a stacked batch; returns float32 results on the CPU.

        A device fault is raised as a ``DeviceFault`` (app.serving.faults). Memory is freed
        only once the original exception is gone: its traceback's frames hold the batch's
        activations, so ``empty_cache()`` inside the ``except`` block would free little."""
        if self._pending is not None:
            self._adopt_pending()
        try:
            return self._run(columns, postprocess)
        except Exception as exc:
            fault = device_fault(exc)
            if fault is None:
                raise
            logger.warning("%s: %s", type(self.module).__name__, fault)
        raise self._settle(fault)

    def _settle(self, fault: DeviceFault) -> DeviceFault:
        """Free what the failed batch held, unless the device is lost (a sticky error fails
        every call, empty_cache() too); a suspected sticky error is confirmed by a probe."""
        if isinstance(fault, DeviceLost):
            if self.device.type != "cuda" or not device_responds(self.device):
                return fault
            fault = DeviceFault(f"{fault} (the device still responds)")
        release_cached_memory(self.device)
        return fault

    def _run(self, columns: Sequence[torch.Tensor], postprocess: bool) -> torch.Tensor:
        # Every torch call below drops and retakes the GIL, and retaking it can wait for the
        # busy event loop thread; so no-op conversions are skipped with plain Python checks.
        rows = columns[0].shape[0]
        size, tuned = self.batch_plan(columns)
        cuda = self.device.type == "cuda"
        if cuda:
            columns = [c.pin_memory().to(self.device, non_blocking=True) for c in columns]
        else:
            columns = list(columns)
            if self.cpu_threads is not None and torch.get_num_threads() != self.cpu_threads:
                torch.set_num_threads(self.cpu_threads)  # this model's budget, not the last one's
        if size > rows:
            columns = [torch.cat([c, c.new_zeros((size - rows, *c.shape[1:]))]) for c in columns]
        reduced = self._reduced
        if reduced is not None:
            return self._run_reduced(reduced, columns, rows, size, postprocess, cuda)
        first = columns[0]
        if (
            self.graph.channels_last
            and first.dim() == 4
            and not first.is_contiguous(memory_format=torch.channels_last)
        ):
            columns[0] = first.contiguous(memory_format=torch.channels_last)
        autotune = self._fixed_shapes and not tuned and torch.backends.cudnn.benchmark
        with (
            torch.inference_mode(),
            self._autocast_context(),
            _autotuning_off() if autotune else contextlib.nullcontext(),
        ):
            result = self.graph.forward(*columns)
            if result.dtype != torch.float32:
                result = result.float()
            if postprocess and self.classifier:
                result = result.softmax(dim=1)
        if size > rows:
            result = result[:rows]
        return result.cpu() if cuda else result

    def _run_reduced(
        self,
        reduced: nn.Module,
        columns: list[torch.Tensor],
        rows: int,
        size: int,
        postprocess: bool,
        cuda: bool,
    ) -> torch.Tensor:
        """The promoted precision's copy, eager: float inputs cast to its dtype (labels stay
        integers), outputs back to float32 for the softmax and the answer."""
        cast = input_dtype(self.precision)
        columns = [c.to(cast) if c.is_floating_point() and c.dtype != cast else c for c in columns]
        first = columns[0]
        if self._reduced_nhwc and first.dim() == 4:
            columns[0] = first.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            result = reduced(*columns).float()
            if postprocess and self.classifier:
                result = result.softmax(dim=1)
        if size > rows:
            result = result[:rows]
        return result.cpu() if cuda else result
