"""Dynamic batching: queue items per model, run each batch as one call on the device worker.

A batch closes when it holds ``max_batch_size`` items or ``max_delay`` has passed since its
first item was queued; while another batch of the model is still running, only a full batch
closes (a partial one keeps filling: it could not start earlier anyway), and once the device
is free it may wait a little more for the clients that batch answered; up to
``max_in_flight`` batches are handed to the worker at once. Only items of the same tensor
shapes share a batch (others wait for the next one, keeping their order). If a batch fails, it
is retried in halves so that one bad item cannot fail its batch-mates, and transient device
faults (e.g. CUDA OOM) get a smaller retry; a lost device (app.serving.faults.DeviceLost)
fails the whole batch at once, since nothing smaller could run either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import torch

from app.errors import Overloaded
from app.serving.faults import DeviceLost

logger = logging.getLogger(__name__)

Inputs = tuple[torch.Tensor, ...]
BatchFn = Callable[[list[Inputs]], Sequence[Any]]


@dataclass(slots=True)
class _Item:
    inputs: Inputs
    future: asyncio.Future[Any]
    enqueued: float
    key: tuple[Any, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.key = tuple((t.shape, t.dtype) for t in self.inputs)


@dataclass(frozen=True)
class BatchObserver:
    """Hooks for metrics; the batcher itself stays free of any metrics library."""

    on_batch: Callable[[int, float], None] = lambda size, seconds: None
    on_wait: Callable[[float], None] = lambda seconds: None
    on_failure: Callable[[Exception], None] = lambda exc: None


class DynamicBatcher:
    """Owns one model's queue and the asyncio task that turns it into batches."""

    def __init__(
        self,
        run_batch: BatchFn,
        executor: Executor,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        observer: BatchObserver | None = None,
        queue_timeout_s: float = float("inf"),
        max_in_flight: int = 2,
    ) -> None:
        if max_batch_size < 1 or max_in_flight < 1:
            raise ValueError("max_batch_size and max_in_flight must be at least 1")
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max(0.0, max_delay_s)
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self._observer = observer or BatchObserver()
        self._pending: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Batches handed to the device worker and not answered yet. Two keep the device fed:
        # a batch that fills up while another runs waits in the worker's queue, instead of
        # being formed only after the event loop has seen the running one finish. A batch
        # that is not full keeps filling while the device is busy (it could not start
        # earlier anyway), so big models still get big batches.
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._running = 0
        # When the device last became free, and how many items the batch then forming could
        # hold if the clients just answered came straight back (see _next_batch).
        self._free_since = 0.0
        self._refill_target = 0
        self._last_forward_s = 0.0

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*self._in_flight, return_exceptions=True)  # answer what runs
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(Overloaded("the model is shutting down; retry later."))

    async def submit(self, samples: Sequence[Inputs]) -> list[Any]:
        """Queue every sample of one request and return their outputs in the same order."""
        if len(self._pending) + len(samples) > self.max_queue:
            raise Overloaded(
                f"the model's queue is full ({self.max_queue} items waiting); retry shortly."
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = [_Item(inputs, loop.create_future(), now) for inputs in samples]
        self._pending.extend(items)
        self._wakeup.set()
        try:
            if len(items) == 1:  # the common case: no gathering future and callbacks
                return [await items[0].future]
            return list(await asyncio.gather(*(item.future for item in items)))
        except BaseException:
            for item in items:
                item.future.cancel()
            raise

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()  # a free slot first, so the batch can still grow
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _next_batch(self) -> list[_Item]:
        """Wait for the first item, then until the batch is full or the delay since that
        item has passed and no other batch of this model is running.

        When the device has just become free, a batch that filled while it was busy may also
        wait (``_linger_s``) for the clients the finished batch answered: closed-loop clients
        send their next request at once, and without this eight clients of a slow model
        settle into two alternating batches of four (alexnet: 130 images/s at batch 4, 210
        at batch 8 on two cores). It waits only while fewer items are queued than the
        finished batch and the queue could make together."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._pending[0].enqueued + self.max_delay_s
            while len(self._pending) < self.max_batch_size:
                if self._running:  # the device is busy: keep filling until full or it is free
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                now = loop.time()
                remaining = deadline - now
                if remaining <= 0:
                    if len(self._pending) >= self._refill_target:
                        break
                    remaining = self._free_since + self._linger_s() - now
                    if remaining <= 0:
                        break
                self._wakeup.clear()
                # not wait_for: on 3.11 it can swallow a cancellation (stop() would hang); a
                # timeout comes back round, where the first item's deadline has now passed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._wakeup.wait()
            batch = self._take_batch()
            self._refill_target = 0  # this batch's clients are answered by its own finish
            if batch:
                now = loop.time()
                for item in batch:
                    self._observer.on_wait(now - item.enqueued)
                return batch

    def _linger_s(self) -> float:
        """How long a freed device may wait for the clients it answered: the delay, or half
        a forward if that is longer, since doubling a batch costs a slow model far less than
        a second forward (alexnet on two cores: 38 ms at batch 8, 31 ms at batch 4), while
        the returning requests still need their round trip and decoding (5-10 ms)."""
        return max(self.max_delay_s, self._last_forward_s / 2)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            await self._execute(batch)
        finally:
            self._running -= 1
            if not self._running:
                self._free_since = asyncio.get_running_loop().time()
                self._refill_target = min(self.max_batch_size, len(self._pending) + len(batch))
            self._slots.release()
            self._wakeup.set()

    def _take_batch(self) -> list[_Item]:
        """Pop up to max_batch_size live items sharing the first live item's shapes; items
        that waited longer than the queue timeout are answered 503 instead of run late."""
        batch: list[_Item] = []
        skipped: list[_Item] = []
        key = None
        expired_before = asyncio.get_running_loop().time() - self.queue_timeout_s
        while self._pending and len(batch) < self.max_batch_size:
            item = self._pending.popleft()
            if item.future.done():
                continue
            if item.enqueued < expired_before:
                item.future.set_exception(
                    Overloaded(
                        f"the request waited more than {self.queue_timeout_s:g} s in the "
                        "model's queue; the server is overloaded, retry later."
                    )
                )
                continue
            if key is None:
                key = item.key
            if item.key == key:
                batch.append(item)
            else:
                skipped.append(item)
        self._pending.extendleft(reversed(skipped))
        return batch

    def _timed_run(self, inputs: list[Inputs]) -> tuple[Sequence[Any], float]:
        """On the worker: the batch's outputs and its own run time (not its wait in the
        worker's queue behind the batch before it)."""
        started = time.perf_counter()
        outputs = self._run_batch(inputs)
        return outputs, time.perf_counter() - started

    async def _execute(self, batch: list[_Item]) -> None:
        if not await self._attempt(batch):
            # Retried only now, once the failed attempt's exception (whose traceback holds
            # that batch's tensors) is gone.
            middle = len(batch) // 2
            await self._execute(batch[:middle])
            await self._execute(batch[middle:])

    async def _attempt(self, batch: list[_Item]) -> bool:
        """Run ``batch`` and answer its items; False if it failed and should be split."""
        loop = asyncio.get_running_loop()
        try:
            outputs, seconds = await loop.run_in_executor(
                self._executor, self._timed_run, [item.inputs for item in batch]
            )
        except Exception as exc:
            self._observer.on_failure(exc)
            if len(batch) > 1 and not isinstance(exc, DeviceLost):
                logger.warning("batch of %d failed (%s); retrying in halves", len(batch), exc)
                return False
            for item in batch:  # nothing smaller could run: answer every item with it
                if not item.future.done():
                    item.future.set_exception(exc)
            return True
        self._observer.on_batch(len(batch), seconds)
        self._last_forward_s = seconds
        for item, output in zip(batch, outputs, strict=True):
            if not item.future.done():
                item.future.set_result(output)
        return True
