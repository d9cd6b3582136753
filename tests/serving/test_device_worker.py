"""The device worker's lanes: serving work before explanations, predict batches inside an
explanation's yield points, and a swap that restarts the explanation behind it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError

import pytest

from app.serving.device_worker import DeviceWorker, batch_lane

TIMEOUT_S = 10


@pytest.fixture
def worker() -> Iterator[DeviceWorker]:
    device = DeviceWorker("test-device", max_preemptions=2)
    try:
        yield device
    finally:
        device.shutdown(wait=True, cancel_futures=True)


def _blocked(worker: DeviceWorker) -> threading.Event:
    """Hold the worker busy until the returned event is set, so that work queues up."""
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(TIMEOUT_S)

    worker.submit(hold)
    assert started.wait(TIMEOUT_S)
    return release


def test_serving_work_runs_before_explanations_queued_earlier(worker: DeviceWorker) -> None:
    order: list[str] = []
    release = _blocked(worker)
    low = worker.submit_low(lambda: order.append("explanation"))
    batch = worker.batches.submit(order.append, "batch")
    swap = worker.submit(order.append, "swap")
    release.set()
    for future in (low, batch, swap):
        future.result(TIMEOUT_S)
    assert order == ["batch", "swap", "explanation"]


def test_batches_queued_during_an_explanation_run_at_its_yield_points(
    worker: DeviceWorker,
) -> None:
    order: list[str] = []
    queued = threading.Event()
    batches: list = []

    def explanation() -> str:
        order.append("step 1")
        batches.append(worker.batches.submit(order.append, "batch"))
        queued.set()
        worker.run_waiting_batches()  # the yield point: the batch runs here, on this thread
        order.append("step 2")
        return "explained"

    assert worker.submit_low(explanation).result(TIMEOUT_S) == "explained"
    assert order == ["step 1", "batch", "step 2"]
    assert batches[0].done()


def test_a_swap_restarts_the_explanation_after_it(worker: DeviceWorker) -> None:
    """The explanation sees one parameter version from start to end: the one after the swap."""
    version = {"now": 1}
    runs: list[int] = []
    seen: list[tuple[int, int]] = []

    def explanation() -> int:
        start = version["now"]
        runs.append(start)
        if len(runs) == 1:  # the first run: a swap arrives while it is under way
            worker.submit(version.__setitem__, "now", 2)
        worker.run_waiting_batches()
        seen.append((start, version["now"]))
        return start

    assert worker.submit_low(explanation).result(TIMEOUT_S) == 2
    assert runs == [1, 2]  # started on version 1, stopped at its yield point, ran again
    assert seen == [(2, 2)]  # and only the run on one version finished


def test_after_its_preemptions_an_explanation_finishes_and_the_swap_waits(
    worker: DeviceWorker,
) -> None:
    runs: list[int] = []
    swaps: list = []

    def explanation() -> int:
        runs.append(len(runs))
        swaps.append(worker.submit(lambda: None))  # a swap arrives at every run
        worker.run_waiting_batches()
        return len(runs)

    assert worker.submit_low(explanation).result(TIMEOUT_S) == 3  # 2 preemptions, then done
    for swap in swaps:
        swap.result(TIMEOUT_S)


def test_yield_points_belong_to_the_worker_thread(worker: DeviceWorker) -> None:
    with pytest.raises(RuntimeError, match="device worker"):
        worker.run_waiting_batches()


def test_failures_reach_their_futures_and_the_worker_goes_on(worker: DeviceWorker) -> None:
    def fail() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        worker.submit_low(fail).result(TIMEOUT_S)
    with pytest.raises(ValueError, match="bad input"):
        worker.batches.submit(fail).result(TIMEOUT_S)
    assert worker.submit(lambda: 7).result(TIMEOUT_S) == 7


def test_shutdown_cancels_what_waits(worker: DeviceWorker) -> None:
    release = _blocked(worker)
    waiting: list[Callable[[], object]] = [
        worker.submit_low(lambda: None).result,
        worker.batches.submit(lambda: None).result,
    ]
    threading.Timer(0.2, release.set).start()
    worker.shutdown(wait=True, cancel_futures=True)
    for result in waiting:
        with pytest.raises(CancelledError):
            result(TIMEOUT_S)
    with pytest.raises(RuntimeError, match="shutdown"):
        worker.submit(lambda: None)


def test_a_plain_executor_takes_batches_as_they_are() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert batch_lane(pool) is pool
    device = DeviceWorker("test-lane")
    try:
        assert batch_lane(device) is device.batches
    finally:
        device.shutdown()
