"""A served model's parameter swaps (reinitialize, reload, a promoted precision) and the
other work that must run between two of its batches, on the device's one worker thread.

A swap can never interleave with a batch, so each answer comes entirely from one parameter
version; every swap publishes the version and checksum of what the parameters now are.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import torch

from app.errors import ReloadFailed, WeightsUnavailable
from app.serving.checksum import parameters_sha256
from app.serving.forward import ModelForward
from app.serving.loading import LoadedModel
from app.serving.outputs import ParameterState
from app.serving.reinit import InitPlan, reinitialize
from app.zoo import ModelSpec

T = TypeVar("T")
_HISTORY = 64  # parameter versions whose checksum responses can still name


class ParameterSwaps:
    """ModelRuntime's swaps and worker calls, a base class of it: the attributes below are set
    by ModelRuntime.__init__."""

    spec: ModelSpec
    loaded: LoadedModel
    module: torch.nn.Module
    device: torch.device
    forward: ModelForward
    state: ParameterState
    precision_accuracy: dict[str, Any] | None
    _worker: Executor
    _history: dict[int, str]

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

    async def set_precision(
        self, dtype: str, measured: dict[str, Any] | None, version: int
    ) -> None:
        """Serve ``dtype`` from ``version`` on (a copy made from the float32 master, between
        batches); the version moves even if the copy fails, like any record."""

        def change() -> None:
            try:
                self.forward.set_precision(dtype)
                self.precision_accuracy = measured
            finally:
                self._publish(version)

        await self.on_worker(change)

    async def adopt_version(self, version: int) -> None:
        """Name the parameters as loaded ``version``: a process that has just read the
        source is where a reload record would have left it."""
        await self.on_worker(lambda: self._publish(version))

    def snapshot_blocking(self, timeout_s: float | None = None) -> tuple[torch.nn.Module, int]:
        """A copy of the float32 master and its version, taken between batches (precision
        trials measure copies beside the serving model, never the model itself)."""
        future = self._worker.submit(
            lambda: (copy.deepcopy(self.module).eval(), self.state.version)
        )
        try:
            return future.result(timeout=timeout_s)
        finally:
            future.cancel()

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
