"""What each model is served with, from the settings and its spec: its batching limits,
its serving graph and the intra-op threads its batches run on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from app.config import Settings
from app.zoo import ModelSpec


@dataclass(frozen=True)
class GraphChoice:
    mode: str = "eager"
    channels_last: bool = False
    cpu_threads: int | None = None


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int
    max_delay_ms: float
    max_queue: int
    queue_timeout_s: float = 30.0


def batching_config(settings: Settings, spec: ModelSpec) -> BatchingConfig:
    """The model's batch limit and delay (its setting, else the global one, else the spec's);
    the queue holds 32 batches, or four of the largest requests, unless max_queue is set."""
    max_batch = settings.batch_size_for(spec.name, spec.max_batch_size)
    return BatchingConfig(
        max_batch_size=max_batch,
        max_delay_ms=settings.batch_delay_for(spec.name, spec.max_batch_delay_ms),
        max_queue=settings.max_queue or max(max_batch * 32, settings.max_images_per_request * 4),
        queue_timeout_s=settings.queue_timeout_s,
    )


def graph_choice(settings: Settings, spec: ModelSpec, device: torch.device) -> GraphChoice:
    """TORCHGATE_GRAPH, or the form measured fastest for this model on this device type,
    and its thread budget."""
    cuda = device.type == "cuda"
    mode = settings.graph
    if mode == "auto":
        mode = spec.cuda_graph if cuda else spec.cpu_graph
    channels_last = settings.channels_last
    if channels_last is None:
        channels_last = spec.channels_last
    return GraphChoice(mode, channels_last, thread_budget(settings, spec, device))


def thread_budget(settings: Settings, spec: ModelSpec, device: torch.device) -> int:
    """Intra-op threads for this model's batches: the worker's share of the cores, or the
    spec's cap if smaller (unless TORCHGATE_TORCH_THREADS is set). Every model applies its
    own count before each batch, so one model's cap never leaks into another's forwards."""
    share = settings.torch_threads_per_worker(os.cpu_count() or 1, cuda=device.type == "cuda")
    if settings.torch_threads is None and spec.cpu_threads is not None:
        return min(share, spec.cpu_threads)
    return share
