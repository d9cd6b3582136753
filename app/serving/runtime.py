"""One served model's core: decode -> dynamic batch -> one forward per batch.

The heads that turn outputs into answers (top-k, generated images) are app/serving/heads.py;
the parameter swaps, which run between two batches on the device's worker thread, are
app/serving/parameter_swaps.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict
from typing import Any, TypeVar

import numpy as np
import torch

from app.errors import DeviceUnavailable, InvalidInput, Overloaded
from app.serving.batching import BatchObserver, DynamicBatcher, Inputs
from app.serving.checksum import parameter_count, parameters_sha256
from app.serving.device_worker import DeviceWorker, batch_lane
from app.serving.explain_queue import Explainer
from app.serving.faults import DeviceLost, DeviceOutOfMemory, device_fault
from app.serving.forward import ModelForward
from app.serving.images import open_image
from app.serving.inputs import InputCodec
from app.serving.loading import LoadedModel
from app.serving.model_config import BatchingConfig, GraphChoice
from app.serving.outputs import Output, ParameterState
from app.serving.parameter_swaps import ParameterSwaps
from app.zoo import ModelSpec

T = TypeVar("T")
logger = logging.getLogger(__name__)
INLINE_DECODE_PIXELS = 64 * 64  # images this small are decoded on the event loop


class ModelRuntime(ParameterSwaps):
    """Owns a loaded model's queue, its forward function and (ParameterSwaps) its
    parameter swaps."""

    def __init__(
        self,
        spec: ModelSpec,
        loaded: LoadedModel,
        device: torch.device,
        worker: Executor,
        decode_pool: Executor,
        batching: BatchingConfig,
        max_image_pixels: int,
        graph: GraphChoice = GraphChoice(),
        half: bool = False,
        half_dtype: torch.dtype = torch.float16,
        observer: BatchObserver | None = None,
        explain_queue: int = 16,
    ) -> None:
        self.spec = spec
        self.loaded = loaded
        self.module = loaded.module
        self.device = device
        self.batching = batching
        self.max_image_pixels = max_image_pixels
        self._worker = worker
        self._decode_pool = decode_pool
        self.forward = ModelForward(
            self.module,
            device,
            spec.is_classifier,
            self._example,
            graph.mode,
            graph.channels_last,
            half,
            half_dtype,
            graph.cpu_threads,
        )
        self.state = ParameterState(1, parameters_sha256(self.module))
        # What the precision in use was measured at when it was promoted (None: float32 as
        # loaded, or never measured); set by every process from the promotion's record.
        self.precision_accuracy: dict[str, Any] | None = None
        self.parameter_count = parameter_count(self.module)
        self._history = {self.state.version: self.state.sha256}
        self._batcher = DynamicBatcher(
            self._run_batch,
            batch_lane(worker),
            max_batch_size=batching.max_batch_size,
            max_delay_s=batching.max_delay_ms / 1000.0,
            max_queue=batching.max_queue,
            observer=observer,
            queue_timeout_s=batching.queue_timeout_s,
        )
        # explanations: their own queue, on the worker's low lane (app/serving/explain_queue.py)
        self.explainer: Explainer | None = None
        if isinstance(worker, DeviceWorker) and spec.explain is not None:
            self.explainer = Explainer(self, worker, explain_queue, batching.queue_timeout_s)

    def _example(self, batch: int) -> tuple[torch.Tensor, ...]:
        if self.loaded.codec is not None:
            return self.loaded.codec.example(batch)
        latent = torch.randn(batch, self.spec.latent_size)
        return latent, torch.arange(batch) % max(1, len(self.loaded.labels))

    def prepare(self) -> float:
        """Build the serving graph and warm it up; called before the model is published."""
        return self.forward.prepare(self.batching.max_batch_size)

    def describe(self) -> dict[str, object]:
        """What /v1/models shows about the live model."""
        codec = self.loaded.codec
        return {
            "dtype": self.forward.precision,
            "precision_accuracy": self.precision_accuracy,
            "training": self.module.training,
            "parameter_count": self.parameter_count,
            "weights_source": self.loaded.source,
            "parameters_sha256": self.state.sha256,
            "parameters_version": self.state.version,
            "labels": len(self.loaded.labels),
            "input": codec.description if codec is not None else self._generator_input(),
            "batching": asdict(self.batching),
            "graph": self.forward.graph.mode
            + (" + channels_last" if self.forward.graph.channels_last else ""),
            "graph_pending": self.forward.graph_pending,
        }

    def _generator_input(self) -> str:
        return (
            "JSON {n, label, seed, format}: a latent of "
            f"{self.spec.latent_size} normal values per image + class"
        )

    def recorded_accuracy(self) -> dict[str, object]:
        """Accuracy recorded with the weights: the training manifest, or torchvision's metrics."""
        weights = self.spec.pretrained
        if weights is not None:
            metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
            return {
                "source": "torchvision weights metadata",
                "dataset": "ImageNet-1K validation",
                "top1": metrics.get("acc@1", 0.0) / 100,
                "top5": metrics.get("acc@5", 0.0) / 100,
            }
        manifest = self.loaded.manifest
        recorded = {
            key: value
            for key, value in manifest.items()
            if key.startswith(("test_", "val_", "consistency", "classes_produced", "independent_"))
        }
        extra = {k: manifest.get(k) for k in ("dataset", "best_epoch", "epochs", "wall_time_s")}
        return {"source": "training manifest", **extra, **recorded}

    @property
    def labels(self) -> tuple[str, ...]:
        return self.loaded.labels

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.stop()

    # -- inputs -----------------------------------------------------------------------------

    def _require_codec(self) -> InputCodec:
        if self.loaded.codec is None:
            raise InvalidInput(f"model {self.spec.name!r} takes no image or tensor inputs.")
        return self.loaded.codec

    async def decode_images(self, blobs: Sequence[bytes]) -> list[torch.Tensor]:
        """Decode and preprocess, keeping order. Headers are checked here (cheap); tiny images
        (28x28 uploads) are decoded inline, since a thread hop costs more than their decode,
        plain greyscale PNGs by libspng, and everything larger goes to the decode pool, one
        task per image."""
        codec = self._require_codec()
        loop = asyncio.get_running_loop()
        results: list[torch.Tensor | asyncio.Future[torch.Tensor]] = []
        for blob in blobs:
            sample = codec.from_plain_png(blob, min(self.max_image_pixels, INLINE_DECODE_PIXELS))
            if sample is not None:
                results.append(sample)
                continue
            image = open_image(blob, self.max_image_pixels)
            if image.width * image.height <= INLINE_DECODE_PIXELS:
                results.append(codec.from_opened(image))
            else:
                results.append(loop.run_in_executor(self._decode_pool, codec.from_opened, image))
        return [r if isinstance(r, torch.Tensor) else await r for r in results]

    def samples_from_array(self, array: np.ndarray) -> list[torch.Tensor]:
        return self._require_codec().from_array(array)

    async def on_decode_pool(self, fn: Callable[..., T], *args: object) -> T:
        """CPU work around the forward (decoding, PNG encoding), never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._decode_pool, fn, *args)

    # -- inference --------------------------------------------------------------------------

    def _run_batch(self, batch: list[Inputs]) -> list[Output]:
        """Runs on the worker thread: stack, forward on the device, split per sample.

        Stacking and splitting go through numpy on purpose: a torch call drops the GIL and
        must win it back from the busy event loop thread, which cost this thread more time
        than the forward of a small model; numpy's copies keep it."""
        columns = [
            torch.from_numpy(np.stack([sample.numpy() for sample in column]))
            for column in zip(*batch, strict=True)
        ]
        result = self.forward.run(columns).numpy()
        version = self.state.version
        return [Output(torch.from_numpy(row), version) for row in result]

    async def infer(self, samples: Sequence[Inputs]) -> list[Output]:
        """Queue samples for batching; device faults become 503, other failures of the
        forward 422 (the input was what the model could not take), never 500."""
        try:
            return await self._batcher.submit(samples)
        except Exception as exc:
            fault = device_fault(exc)
            if isinstance(fault, DeviceLost):
                raise DeviceUnavailable(
                    f"the device {self.device} failed ({fault}) and this process cannot use "
                    "it until it restarts; retry against another replica."
                ) from exc
            if isinstance(fault, DeviceOutOfMemory):
                raise Overloaded(
                    f"the device ran out of memory for this input ({fault}), even in a batch "
                    "of its own; retry later, or send fewer or smaller inputs."
                ) from exc
            if fault is not None:
                raise Overloaded(
                    f"the device failed to run this input ({fault}); retry later."
                ) from exc
            if not isinstance(exc, RuntimeError | ValueError):
                raise
            logger.warning("model %s failed on a client input: %s", self.spec.name, exc)
            raise InvalidInput(
                f"model {self.spec.name!r} could not process the input: {exc}"
            ) from exc
