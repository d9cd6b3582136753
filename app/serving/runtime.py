"""One served model's core: decode -> dynamic batch -> one forward per batch, and parameter swaps.

The heads that turn outputs into answers (top-k, generated images) are app/serving/heads.py.
Every forward and every parameter swap (reinitialize, reload) runs on the device's single
worker thread, so a swap can never interleave with a batch: each answer comes entirely from
one parameter version, and that version is reported with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np
import torch

from app.errors import (
    DeviceUnavailable,
    InvalidInput,
    Overloaded,
    ReloadFailed,
    WeightsUnavailable,
)
from app.serving.batching import BatchObserver, DynamicBatcher, Inputs
from app.serving.checksum import parameter_count, parameters_sha256
from app.serving.faults import DeviceLost, DeviceOutOfMemory, device_fault
from app.serving.forward import ModelForward
from app.serving.images import open_image
from app.serving.inputs import InputCodec
from app.serving.loading import LoadedModel
from app.serving.outputs import Output, ParameterState
from app.serving.reinit import InitPlan, reinitialize
from app.zoo import ModelSpec

T = TypeVar("T")
logger = logging.getLogger(__name__)
_HISTORY = 64  # parameter versions whose checksum responses can still name
INLINE_DECODE_PIXELS = 64 * 64  # images this small are decoded on the event loop


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


class ModelRuntime:
    """Owns a loaded model's queue, its forward function and its parameter swaps."""

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
        self.parameter_count = parameter_count(self.module)
        self._history = {self.state.version: self.state.sha256}
        self._batcher = DynamicBatcher(
            self._run_batch,
            worker,
            max_batch_size=batching.max_batch_size,
            max_delay_s=batching.max_delay_ms / 1000.0,
            max_queue=batching.max_queue,
            observer=observer,
            queue_timeout_s=batching.queue_timeout_s,
        )

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
        first = next(iter(self.module.parameters()), None)
        codec = self.loaded.codec
        return {
            "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
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

    # -- parameter swaps --------------------------------------------------------------------

    async def on_worker(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the device worker, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn)

    def sha256_of(self, version: int) -> str:
        """The checksum of a recent parameter version (responses name the one that served them)."""
        return self._history.get(version, "")

    def _publish(self, version: int) -> None:
        self.state = ParameterState(version, parameters_sha256(self.module))
        self._history[version] = self.state.sha256
        while len(self._history) > _HISTORY:
            del self._history[min(self._history)]

    def _swap(self, mutate: Callable[[], T], version: int) -> T:
        """Apply ``mutate`` between batches and publish it as ``version`` (the control
        store's). Whatever happens, the published checksum then describes the parameters as
        they really are (a failed mutation may have changed some of them)."""
        try:
            return mutate()
        finally:
            self.module.eval()
            self.forward.rebuild()
            self._publish(version)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    async def reinitialize(self, plan: InitPlan, version: int) -> int:
        """Reinitialize in place with ``plan`` as ``version``; returns the seed used."""
        return await self.on_worker(
            lambda: self._swap(lambda: reinitialize(self.module, plan), version)
        )

    async def read_state(self) -> dict[str, torch.Tensor]:
        """The weights' source, read and verified again (``ReloadFailed`` if it cannot be)."""
        try:
            return await asyncio.to_thread(self.loaded.read_state)
        except (WeightsUnavailable, RuntimeError, OSError) as exc:
            raise ReloadFailed(
                f"model {self.spec.name!r} could not be reloaded: {exc}. The weights it "
                "serves are unchanged unless its parameters_version moved."
            ) from exc

    async def reload(self, version: int) -> None:
        """Read the weights' source again and swap it in as ``version``."""
        state = await self.read_state()
        try:
            await self.on_worker(
                lambda: self._swap(lambda: self.module.load_state_dict(state), version)
            )
        except RuntimeError as exc:
            raise ReloadFailed(
                f"model {self.spec.name!r} could not be reloaded: {exc}. Its checksum now "
                "describes whatever parameters it holds."
            ) from exc

    async def adopt_version(self, version: int) -> None:
        """Name the parameters as loaded ``version``: a process that has just read the
        source is where a reload record would have left it."""
        await self.on_worker(lambda: self._publish(version))

    def forward_blocking(
        self, *inputs: torch.Tensor, timeout_s: float | None = None
    ) -> tuple[torch.Tensor, int]:
        """Raw outputs for a whole batch, from a non-event-loop thread (evaluation jobs);
        ``TimeoutError`` when the device worker has not answered within ``timeout_s``."""

        def run() -> tuple[torch.Tensor, int]:
            return self.forward.run(inputs, postprocess=False), self.state.version

        future = self._worker.submit(run)
        try:
            return future.result(timeout=timeout_s)
        finally:
            future.cancel()  # timed out before it started: it never will
