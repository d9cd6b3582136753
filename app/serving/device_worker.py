"""The device's one worker thread, with two lanes: serving work first, explanations after.

Every forward, parameter swap and explanation of a device runs on this thread, so a swap never
interleaves with a batch or an explanation: each answer comes from one parameter version. The
high lane holds predict batches (``batches``, what the batchers submit) and everything else
(swaps, evaluation forwards, compiled graphs: ``submit``), in order; the low lane holds
explanations (``submit_low``), which run only when the high lane is empty.

An explanation runs many forwards and backwards, so it yields between them
(``run_waiting_batches``): predict batches queued meanwhile run there and then, on this
thread, and the explanation goes on with the same parameters. Anything else waiting (a swap)
preempts it instead: the explanation stops (``Preempted``), the swap runs, and the explanation
starts again from the beginning, behind it, so it still matches one parameter version. After
``max_preemptions`` restarts it runs to its end, and the swap waits for it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Any

MAX_PREEMPTIONS = 3


class Preempted(Exception):
    """Raised at an explanation's yield point when a swap waits: it runs again after it."""


class _Lane(Enum):
    BATCH = "batch"  # a predict batch: may run inside an explanation's yield point
    OTHER = "other"  # a swap, an evaluation forward: runs between explanations
    LOW = "low"  # an explanation


@dataclass(slots=True)
class _Task:
    future: Future[Any]
    fn: Callable[[], Any]
    lane: _Lane
    started: bool = False
    preemptions: int = 0


class DeviceWorker(Executor):
    """A one-thread executor whose ``submit`` work goes before ``submit_low`` work."""

    def __init__(self, name: str, max_preemptions: int = MAX_PREEMPTIONS) -> None:
        self.max_preemptions = max_preemptions
        self._ready = threading.Condition()
        self._high: deque[_Task] = deque()
        self._low: deque[_Task] = deque()
        self._closed = False
        self._current: _Task | None = None  # the explanation running now
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self.batches = _BatchLane(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Serving work that is not a predict batch (a swap, an evaluation's forward)."""
        return self._put(partial(fn, *args, **kwargs), _Lane.OTHER)

    def submit_low(self, fn: Callable[[], Any]) -> Future[Any]:
        """An explanation: runs when no serving work waits; ``fn`` may raise ``Preempted``
        (from ``run_waiting_batches``) to be run again after the work that preempted it."""
        return self._put(fn, _Lane.LOW)

    def _put(self, fn: Callable[[], Any], lane: _Lane) -> Future[Any]:
        future: Future[Any] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            (self._low if lane is _Lane.LOW else self._high).append(_Task(future, fn, lane))
            self._ready.notify()
        return future

    def run_waiting_batches(self) -> None:
        """An explanation's yield point, on this thread: run the predict batches waiting at
        the head of the high lane; raise ``Preempted`` if other serving work waits there (the
        explanation is then run again after it, up to ``max_preemptions`` times)."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("run_waiting_batches is for work running on the device worker")
        while True:
            with self._ready:
                if not self._high:
                    return
                head = self._high[0]
                if head.lane is not _Lane.BATCH:
                    current = self._current
                    if current is not None and current.preemptions < self.max_preemptions:
                        raise Preempted
                    return
                self._high.popleft()
            _run(head)

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not (self._high or self._low or self._closed):
                    self._ready.wait()
                if self._high:
                    task = self._high.popleft()
                elif self._low:
                    task = self._low.popleft()
                else:
                    return  # closed, and nothing left
            if task.lane is _Lane.LOW:
                self._run_low(task)
            else:
                _run(task)
            del task  # its result and inputs are the future's now, not this frame's

    def _run_low(self, task: _Task) -> None:
        if not task.started:
            if not task.future.set_running_or_notify_cancel():
                return
            task.started = True
        self._current = task
        try:
            result = task.fn()
        except Preempted:
            task.preemptions += 1
            with self._ready:  # first in line again, behind the work that preempted it
                self._low.appendleft(task)
            return
        except BaseException as exc:
            task.future.set_exception(exc)
        else:
            task.future.set_result(result)
        finally:
            self._current = None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._ready:
            self._closed = True
            if cancel_futures:
                for task in (*self._high, *self._low):
                    if task.started:  # a preempted explanation: its future is running
                        task.future.set_exception(RuntimeError("the device worker shut down"))
                    else:
                        task.future.cancel()
                self._high.clear()
                self._low.clear()
            self._ready.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()


class _BatchLane(Executor):
    """The high lane for predict batches: what a model's batcher submits to."""

    def __init__(self, worker: DeviceWorker) -> None:
        self._worker = worker

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._worker._put(partial(fn, *args, **kwargs), _Lane.BATCH)


def _run(task: _Task) -> None:
    if not task.future.set_running_or_notify_cancel():
        return
    try:
        result = task.fn()
    except BaseException as exc:
        task.future.set_exception(exc)
    else:
        task.future.set_result(result)


def batch_lane(worker: Executor) -> Executor:
    """Where a model's predict batches go: the device worker's batch lane (any other executor,
    as tests give, takes them as they are)."""
    return worker.batches if isinstance(worker, DeviceWorker) else worker
