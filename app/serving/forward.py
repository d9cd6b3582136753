"""The device side of one model: host->device copies, padding, autocast, warm-up, and the
promoted precision's copy.

Everything here runs on the device's worker thread (or in the loader before the model is
published), never on the event loop. How the serving graph is built and swapped in is
app/serving/graph_swaps.py; the batch sizes it is warmed up at, app/serving/batch_shapes.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence

import torch
from torch import nn

from app.serving.aot_builds import PackagePlan
from app.serving.batch_shapes import autotuning_off, bucket_sizes, padded_size, warmup_batch_sizes
from app.serving.faults import DeviceFault, DeviceLost, device_fault, device_responds
from app.serving.graph_swaps import Background, ExampleFn, GraphSwaps
from app.serving.graphs import TRACED_MODES, ServingGraph, build_graph
from app.serving.precision import CAST_DTYPES, FLOAT32, convert, is_convolutional, run_converted

logger = logging.getLogger(__name__)


def release_cached_memory(device: torch.device) -> None:
    """Hand the caching allocator's free blocks back to the driver, after a failed batch."""
    if device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            torch.cuda.empty_cache()


class ModelForward(GraphSwaps):
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
            softmax = postprocess and self.classifier
            result = run_converted(reduced, columns, self.precision, self._reduced_nhwc, softmax)
            if size > rows:
                result = result[:rows]
            return result.cpu() if cuda else result
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
            autotuning_off() if autotune else contextlib.nullcontext(),
        ):
            result = self.graph.forward(*columns)
            if result.dtype != torch.float32:
                result = result.float()
            if postprocess and self.classifier:
                result = result.softmax(dim=1)
        if size > rows:
            result = result[:rows]
        return result.cpu() if cuda else result
