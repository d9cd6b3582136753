"""The batch sizes a model is warmed up and served at, and cuDNN's autotuner switch.

On CUDA every power-of-two bucket is warmed, and a batch is padded up to the next one (see
ModelForward), so cuDNN tunes a bounded set of shapes; the CPU needs one warm-up size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch


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


@contextlib.contextmanager
def autotuning_off() -> Iterator[None]:
    """cuDNN's autotuner off for one call. The flag is process-wide, but every served batch
    runs on the one forward worker; only a model still warming up in a loader thread can run
    beside it, and at worst that model then tunes the shape at its first batch instead."""
    cudnn = torch.backends.cudnn
    cudnn.benchmark = False
    try:
        yield
    finally:
        cudnn.benchmark = True
