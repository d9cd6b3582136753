"""Many deadlines on one timer: each fires once past its time (never early, at most a tick
late), unwatched ones never fire, and the timer runs only while something is watched."""

import asyncio

import pytest

from app.api.deadlines import Deadlines

pytestmark = pytest.mark.anyio
TICK_S = 0.02


async def test_a_deadline_fires_once_after_it_passes_and_not_before() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, tick_s=TICK_S)
    fired: list[float] = []
    due = loop.time() + 0.1
    deadlines.watch("head", due, lambda: fired.append(loop.time()))
    await asyncio.sleep(0.05)
    assert fired == []
    await asyncio.sleep(0.15)
    assert len(fired) == 1
    assert due <= fired[0] <= due + TICK_S + 0.05  # a tick late at most, with scheduling slack
    assert len(deadlines) == 0


async def test_unwatched_and_rewatched_deadlines() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, tick_s=TICK_S)
    fired: list[str] = []
    deadlines.watch("done in time", loop.time() + 0.05, lambda: fired.append("done in time"))
    deadlines.watch("extended", loop.time() + 0.05, lambda: fired.append("extended"))
    deadlines.watch("extended", loop.time() + 0.3, lambda: fired.append("extended"))
    deadlines.unwatch("done in time")
    deadlines.unwatch("never watched")  # no error
    await asyncio.sleep(0.15)
    assert fired == []
    await asyncio.sleep(0.25)
    assert fired == ["extended"]


async def test_the_timer_runs_only_while_something_is_watched() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, tick_s=TICK_S)
    deadlines.watch("a", loop.time() + 10, lambda: None)
    assert deadlines._sweeper is not None
    deadlines.unwatch("a")
    await asyncio.sleep(TICK_S * 3)
    assert deadlines._sweeper is None  # the last sweep found nothing and did not rearm
    fired: list[str] = []
    deadlines.watch("b", loop.time(), lambda: fired.append("b"))  # starts it again
    await asyncio.sleep(TICK_S * 3)
    assert fired == ["b"] and deadlines._sweeper is None


async def test_a_failing_expiry_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, tick_s=TICK_S)
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("bug in a callback")

    deadlines.watch("broken", loop.time(), broken)
    deadlines.watch("fine", loop.time(), lambda: fired.append("fine"))
    deadlines.watch("later", loop.time() + 0.1, lambda: fired.append("later"))
    await asyncio.sleep(0.25)
    assert fired == ["fine", "later"]
    assert "a deadline's expiry failed" in caplog.text


async def test_an_expiry_may_unwatch_another_due_in_the_same_sweep() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, tick_s=TICK_S)
    fired: list[str] = []

    def first() -> None:
        fired.append("first")
        deadlines.unwatch("second")

    deadlines.watch("first", loop.time(), first)
    deadlines.watch("second", loop.time(), lambda: fired.append("second"))
    await asyncio.sleep(TICK_S * 4)
    assert fired == ["first"]


async def test_one_set_of_deadlines_per_event_loop() -> None:
    loop = asyncio.get_running_loop()
    assert Deadlines.of(loop) is Deadlines.of(loop)
    other = asyncio.new_event_loop()
    try:
        assert Deadlines.of(other) is not Deadlines.of(loop)
        assert Deadlines.of(other).loop is other
    finally:
        other.close()
