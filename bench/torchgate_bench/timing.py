"""Time a module's forward over graph variants, thread counts and batch sizes, within a budget.

The grid's axes are the knobs a server on this machine can turn (TORCHGATE_GRAPH, channels_last,
TORCHGATE_TORCH_THREADS, TORCHGATE_MAX_BATCH_SIZE); the best cell is the raw ceiling.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]
Variant = tuple[str, Callable[[torch.Tensor], Forward], int]


@dataclass(frozen=True)
class Trial:
    variant: str
    threads: int
    batch_size: int
    seconds_per_batch: float

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.seconds_per_batch


def median_seconds(run: Callable[[], object], budget_s: float, warmups: int) -> tuple[float, int]:
    """Median time of one call after ``warmups`` untimed calls, repeating within the budget."""
    for _ in range(warmups):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 2 or (time.perf_counter() < deadline and len(times) < 200):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(times)


def decode_seconds(decode: Callable[[], object], budget_s: float) -> float:
    """Per-image decode + preprocess time on one thread, as one decode-pool thread spends it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds, _ = median_seconds(decode, budget_s, warmups=2)
    finally:
        torch.set_num_threads(threads)
    return seconds


def decode_ceiling(decode: Callable[[], object], threads: int, budget_s: float) -> float:
    """Images/s that ``threads`` threads decode together, as the server's decode pool (the
    GIL's share included); at least one call per thread is counted."""
    deadline = time.perf_counter() + budget_s

    def work() -> int:
        done = 0
        while done == 0 or time.perf_counter() < deadline:
            decode()
            done += 1
        return done

    decode()  # one-off set-up (codec tables, allocator) out of the timing
    started = time.perf_counter()
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        done = sum(pool.map(lambda _: work(), range(threads)))
    return done / (time.perf_counter() - started)


def variants(
    module: nn.Module, sample: torch.Tensor, try_compile: bool, half: bool = False
) -> list[Variant]:
    """(name, build a forward for an example batch, warm-up calls) per graph variant.

    channels_last converts the module in place when built, so it comes last; TorchScript's
    profiling executor optimises on its second call, hence two warm-ups. ``half`` adds fp16
    autocast variants, as the server runs with TORCHGATE_HALF on CUDA.
    """

    def autocast(forward: Forward) -> Forward:
        def run(batch: torch.Tensor) -> torch.Tensor:
            with torch.autocast(batch.device.type, dtype=torch.float16):
                return forward(batch)

        return run

    def eager(batch: torch.Tensor) -> Forward:
        return module

    def traced(batch: torch.Tensor) -> Forward:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.freeze(torch.jit.trace(module, batch).eval())

    def compiled(batch: torch.Tensor) -> Forward:
        return torch.compile(module)

    def channels_last(batch: torch.Tensor) -> Forward:
        return module.to(memory_format=torch.channels_last)

    found: list[Variant] = [("eager", eager, 1), ("script", traced, 2)]
    if try_compile:
        found.append(("compile", compiled, 2))
    if half:
        found.append(("eager fp16", lambda batch: autocast(eager(batch)), 1))
    if sample.dim() == 3:  # an image [C,H,W]: batches are 4-d, where channels_last applies
        found.append(("channels_last", channels_last, 1))
        if half:
            found.append(("channels_last fp16", lambda b: autocast(channels_last(b)), 1))
    return found


def _time_forward(
    forward: Forward, batch: torch.Tensor, budget_s: float, warmups: int
) -> tuple[float, int]:
    """CUDA calls return before the work is done: each timed call waits for its kernels."""

    def run() -> None:
        forward(batch)
        if batch.is_cuda:
            torch.cuda.synchronize(batch.device)

    with torch.inference_mode():
        return median_seconds(run, budget_s, warmups)


def _row(
    variant: Variant,
    threads: int,
    sample: torch.Tensor,
    batch_sizes: Sequence[int],
    share_s: float,
    skipped: dict[str, str],
    device: torch.device,
) -> list[Trial]:
    """One variant at one thread count over growing batches; a larger batch is skipped when
    its predicted cost (calls x the last per-image time) would overrun the share by half."""
    name, build, warmups = variant
    row = f"{name}/{threads}t"
    torch.set_num_threads(threads)
    started = time.perf_counter()
    trials: list[Trial] = []
    for position, size in enumerate(batch_sizes):
        batch = torch.stack([sample] * size).to(device)
        if name.startswith("channels_last"):
            batch = batch.contiguous(memory_format=torch.channels_last)
        try:
            seconds, calls = _time_forward(build(batch), batch, share_s / len(batch_sizes), warmups)
        except Exception as exc:  # a variant that cannot run this model is reported, not fatal
            skipped[f"{row}@{size}"] = f"{type(exc).__name__}: {exc}"[:300]
            break
        trials.append(Trial(name, threads, size, seconds))
        logger.info("%s batch %d: %.1f images/s (%d calls)", row, size, size / seconds, calls)
        later = batch_sizes[position + 1 :]
        predicted = (warmups + 3) * seconds * later[0] / size if later else 0.0
        if later and time.perf_counter() - started + predicted > 1.5 * share_s:
            skipped[f"{row}@{','.join(map(str, later))}"] = "the time budget ran out"
            break
    return trials


def forward_trials(
    module: nn.Module,
    sample: torch.Tensor,
    batch_sizes: Sequence[int],
    budget_s: float,
    thread_counts: Sequence[int] = (),
    try_compile: bool = False,
    device: torch.device | None = None,
    half: bool = False,
) -> tuple[list[Trial], dict[str, str]]:
    """Every (variant, threads, batch size) cell, an equal share of the budget per row, on
    ``device`` (the module's; CPU by default). fp16 variants only on CUDA, as the server.

    Variants go in the outer loop because channels_last converts the module in place.
    """
    device = device or torch.device("cpu")
    threads_before = torch.get_num_threads()
    counts = list(dict.fromkeys(thread_counts)) or [threads_before]
    grid = variants(module, sample, try_compile, half=half and device.type == "cuda")
    share = budget_s / (len(grid) * len(counts))
    trials: list[Trial] = []
    skipped: dict[str, str] = {}
    try:
        for variant in grid:
            for threads in counts:
                trials += _row(variant, threads, sample, batch_sizes, share, skipped, device)
    finally:
        torch.set_num_threads(threads_before)
    return trials, skipped
