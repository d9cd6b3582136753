"""Prometheus metrics, in a registry per app so several apps (tests) never collide.

Under several worker processes (app/metrics_multiprocess.py) every worker writes its samples to
shared files, and a scrape merges the files of all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

import torch
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.zoo import SPECS

disable_created_metrics()  # the *_created series only add noise to scrapes

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The values of app.serving.registry.ModelStatus, in order (that module imports this one).
MODEL_STATUSES = ("loading", "ready", "unavailable", "error")


class GpuMemoryCollector(Collector):
    """Allocated and reserved memory of the serving CUDA device, read at scrape time from the
    caching allocator's counters (no device sync); nothing before CUDA is initialised."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "torchgate_gpu_memory_allocated_bytes",
                "GPU memory held by live tensors, per device.",
                labels=["device"],
            ),
            GaugeMetricFamily(
                "torchgate_gpu_memory_reserved_bytes",
                "GPU memory reserved by PyTorch's caching allocator, per device.",
                labels=["device"],
            ),
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if not torch.cuda.is_initialized():
            return ()
        index = self.device.index
        if index is None:
            index = torch.cuda.current_device()
        allocated, reserved = self._families()
        label = [f"cuda:{index}"]
        allocated.add_metric(label, float(torch.cuda.memory_allocated(index)))
        reserved.add_metric(label, float(torch.cuda.memory_reserved(index)))
        return allocated, reserved


class Metrics:
    """Every metric the service exports; names follow Prometheus conventions.

    Gauges sum over the live worker processes (``livesum``; one process: its own value).
    """

    def __init__(self, device: torch.device | None = None) -> None:
        # prometheus_client chose, when first imported, where samples go: memory or shared files.
        self.multiprocess = values.ValueClass is not values.MutexValue
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "torchgate_http_requests_total",
            "HTTP requests by model, route and status code.",
            ["model", "route", "method", "code"],
            registry=self.registry,
        )
        self.grpc_requests = Counter(
            "torchgate_grpc_requests_total",
            "gRPC calls (Open Inference Protocol) by model, method and status code.",
            ["model", "method", "code"],
            registry=self.registry,
        )
        # gRPC calls are timed here too, with route = the full method name (HTTP/2 paths).
        self.latency = Histogram(
            "torchgate_http_request_duration_seconds",
            "Request latency, from first byte in to last byte out (HTTP, and gRPC calls).",
            ["model", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "torchgate_queue_wait_seconds",
            "Time an item waited in its model's batching queue.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.forward = Histogram(
            "torchgate_inference_seconds",
            "Time of one batched forward pass (including host/device copies).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "torchgate_batch_size",
            "Items per forward pass.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        # Bounded: six models times the four precisions of app.serving.precision.
        self.inferences = Counter(
            "torchgate_inferences_total",
            "Inputs run through a forward pass, by model and the precision that served them.",
            ["model", "precision"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "torchgate_queue_depth",
            "Items waiting in a model's batching queue.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.model_status = Gauge(
            "torchgate_model_status",
            "1 for the model's current status, 0 for the others.",
            ["model", "status"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )

        self._exported = self.registry
        if self.multiprocess:
            self._exported = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exported)
        if device is not None and device.type == "cuda":
            self._exported.register(GpuMemoryCollector(device))  # this process's device only

    def watch_queue_depth(self, model: str, read: Callable[[], int]) -> None:
        """One process: ``read`` at every scrape. Several: a callback is not exported, so the
        depth is the one sample_gauges last set."""
        if not self.multiprocess:
            self.queue_depth.labels(model).set_function(read)

    def sample_gauges(self, queue_depths: Mapping[str, int], statuses: Mapping[str, str]) -> None:
        """Set the queue depth of each model that has a runtime and every model's status
        (one-hot over MODEL_STATUSES); cheap and thread-safe, for every scrape and heartbeat."""
        for model, depth in queue_depths.items():
            self.queue_depth.labels(model).set(depth)
        for model, current in statuses.items():
            for status in MODEL_STATUSES:
                self.model_status.labels(model, status).set(int(current == status))

    def render(self) -> bytes:
        return generate_latest(self._exported)

    def close(self) -> None:
        """When the worker process stops: its gauges leave the sums (its counters stay)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


def model_label(name: str | None) -> str:
    """A model name as a label value: bounded to the known models."""
    if name is None:
        return ""
    return name if name in SPECS else "unknown"
