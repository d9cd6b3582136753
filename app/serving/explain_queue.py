"""A model's explanations: their own bounded queue, run on the device worker's low lane.

An explanation costs tens to hundreds of forwards and backwards, so it must never hold up
serving: at most ``max_queue`` inputs wait (more: 503 with Retry-After, like a full predict
queue), each request's inputs run as one task on the device worker's low lane, after every
predict batch, swap and evaluation forward waiting (app/serving/device_worker.py), and they
yield to predict batches between their steps. A request is explained entirely by one parameter
version (a swap that comes meanwhile restarts it), which its answer names.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from app.errors import DeviceUnavailable, InvalidInput, Overloaded, PayloadTooLarge
from app.serving.device_worker import DeviceWorker
from app.serving.explain import Attribution, ExplainOptions, attribute
from app.serving.faults import DeviceLost, device_fault
from app.serving.heatmap import CropGeometry, overlay, overlay_on_input, to_image_frame
from app.serving.images import decode_image, open_image

if TYPE_CHECKING:
    from app.serving.runtime import ModelRuntime


@dataclass(frozen=True)
class Explained:
    """A request's attributions, in input order, and the parameter version that made them."""

    attributions: list[Attribution]
    version: int


class _Backends:
    """cuDNN's settings for explanations on CUDA: no autotuning of their odd batch sizes,
    and cuDNN off for a net whose backward it cannot run in eval mode (an LSTM); the serving
    settings come back around the predict batches run at a yield point."""

    def __init__(self, device: torch.device, cudnn: bool) -> None:
        self._cuda = device.type == "cuda"
        self._cudnn = cudnn
        self._saved = (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark)

    @contextlib.contextmanager
    def explaining(self) -> Iterator[None]:
        if not self._cuda:
            yield
            return
        backends = torch.backends.cudnn
        self._saved = (backends.enabled, backends.benchmark)
        backends.enabled, backends.benchmark = self._cudnn and self._saved[0], False
        try:
            yield
        finally:
            backends.enabled, backends.benchmark = self._saved

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        if not self._cuda:
            yield
            return
        backends = torch.backends.cudnn
        mine = (backends.enabled, backends.benchmark)
        backends.enabled, backends.benchmark = self._saved
        try:
            yield
        finally:
            backends.enabled, backends.benchmark = mine


class Explainer:
    """Explains a runtime's inputs on its device worker, one request per low-lane task."""

    def __init__(
        self, runtime: ModelRuntime, worker: DeviceWorker, max_queue: int, timeout_s: float
    ) -> None:
        self._runtime = runtime
        self._worker = worker
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.waiting = 0  # inputs queued or being explained
        # Steps per forward: half a predict batch, so a predict waiting behind an explanation
        # waits about one batch's time (a backward costs about two forwards).
        self.chunk = max(1, runtime.batching.max_batch_size // 2)

    async def explain(self, samples: Sequence[torch.Tensor], options: ExplainOptions) -> Explained:
        """Attributions for decoded ``samples`` (checked ``options``), off the event loop."""
        if len(samples) > self.max_queue:
            raise PayloadTooLarge(
                f"one request may have at most {self.max_queue} inputs explained "
                f"(TORCHGATE_EXPLAIN_QUEUE); got {len(samples)}."
            )
        if self.waiting + len(samples) > self.max_queue:
            raise Overloaded(
                f"the model's explanation queue is full ({self.max_queue} inputs, "
                "TORCHGATE_EXPLAIN_QUEUE); retry shortly."
            )
        self.waiting += len(samples)
        try:
            job = functools.partial(self._run, list(samples), options, time.monotonic())
            return await asyncio.wrap_future(self._worker.submit_low(job))
        except Exception as exc:
            mapped = self._client_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            self.waiting -= len(samples)

    def _client_error(self, exc: Exception) -> Exception:
        """Device faults as 503 (lost: DeviceUnavailable), a failure on the input as 422."""
        fault = device_fault(exc)
        name = self._runtime.spec.name
        if isinstance(fault, DeviceLost):
            return DeviceUnavailable(
                f"the device failed ({fault}) and this process cannot use it until it "
                "restarts; retry against another replica."
            )
        if fault is not None:
            return Overloaded(f"the device failed to explain this input ({fault}); retry later.")
        if isinstance(exc, RuntimeError | ValueError) and not isinstance(exc, Overloaded):
            return InvalidInput(f"model {name!r} could not explain the input: {exc}")
        return exc

    def _run(
        self, samples: list[torch.Tensor], options: ExplainOptions, queued: float
    ) -> Explained:
        """On the device worker: every sample with one parameter version (a swap that waits
        meanwhile raises Preempted at a yield point, and this runs again after it)."""
        waited = time.monotonic() - queued
        if waited > self.timeout_s:
            raise Overloaded(
                f"the explanation waited {waited:.0f} s behind serving work (more than "
                f"TORCHGATE_QUEUE_TIMEOUT_S); the model is busy, retry later."
            )
        runtime = self._runtime
        spec = runtime.spec.explain
        assert spec is not None  # ExplainOptions.checked refused a model without one
        backends = _Backends(runtime.device, spec.cudnn)
        threads = runtime.forward.cpu_threads

        def budget() -> None:  # this model's intra-op threads, as its batches get
            if runtime.device.type == "cpu" and threads and torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

        def checkpoint() -> None:
            with backends.serving():
                self._worker.run_waiting_batches()
            budget()

        version = runtime.state.version
        results = []
        with backends.explaining():
            for sample in samples:
                checkpoint()
                x = sample.to(runtime.device)
                results.append(attribute(runtime.module, spec, x, options, self.chunk, checkpoint))
        return Explained(results, version)

    # -- pictures ---------------------------------------------------------------------------

    @functools.cached_property
    def _geometry(self) -> CropGeometry | None:
        weights = self._runtime.spec.pretrained
        if weights is None:
            return None
        transform = weights.transforms()
        return CropGeometry(transform.resize_size[0], transform.crop_size[0])

    async def on_images(self, explained: Explained, images: Sequence[bytes]) -> Explained:
        """ImageNet models: each image's attributions mapped back onto that image (at most
        512 pixels a side); other models' inputs are the images' own size already."""
        geometry = self._geometry
        if geometry is None:
            return explained
        limit = self._runtime.max_image_pixels
        sizes = [open_image(image, limit).size for image in images]
        mapped = await asyncio.gather(
            *(
                self._runtime.on_decode_pool(to_image_frame, a.values, size, geometry)
                for a, size in zip(explained.attributions, sizes, strict=True)
            )
        )
        attributions = [
            Attribution(a.probabilities, a.target, values, a.delta)
            for a, values in zip(explained.attributions, mapped, strict=True)
        ]
        return Explained(attributions, explained.version)

    async def heatmap(
        self, attribution: Attribution, sample: torch.Tensor, image: bytes | None
    ) -> np.ndarray:
        """RGB pixels of the heatmap over the input: the uploaded image for the ImageNet
        models, else the input as the model saw it (28x28 for the Fashion-MNIST models)."""
        limit = self._runtime.max_image_pixels
        if image is None or self._geometry is None:
            return await self._runtime.on_decode_pool(
                overlay_on_input, attribution.values, sample.numpy()
            )
        background = await self._runtime.on_decode_pool(decode_image, image, limit)
        return await self._runtime.on_decode_pool(overlay, attribution.values, background)


def rows_of(values: np.ndarray) -> list[float]:
    """Attributions per row of an input read row by row ([T, 28]: one per time step)."""
    return values.sum(axis=-1).tolist()
