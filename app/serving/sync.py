"""Keeps this process's parameters in step with the control store, and says it is alive.

One background task per process: it heartbeats, replays the records a fresh process missed
(before ``/readyz`` turns 200), applies new records in version order on the device worker
(between batches, like any swap: ``sync_records.py``), reports what it applied, and expires
the jobs of dead processes. Admin calls append a record and wait, bounded, until every live
process that serves the model has reported it (``fanout.py``). The request path never comes
here.

The task is supervised: every tick catches every error and the next one tries again; a record
that cannot be applied is marked failed in the store and later records go on; and when no tick
completes for ``TORCHGATE_SYNC_STALL_S`` (or the task ended), ``failure`` says why, liveness
fails, and the process leaves the live set so that admin calls stop waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from app.config import Settings
from app.serving.fanout import FanOut, Signal, await_fan_out, wait_for
from app.serving.registry import ModelRegistry
from app.serving.store import ControlStore, FailedRecord, ProcessInfo, StoreUnavailable
from app.serving.store.base import Operation
from app.serving.sync_records import RecordReplay

logger = logging.getLogger(__name__)


def default_process_id() -> str:
    """``host:pid``: a pod's hostname is its name, and pids tell workers of one host apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ParameterSync(RecordReplay):
    """This process's side of the control store (RecordReplay: the records it applies)."""

    def __init__(
        self,
        store: ControlStore,
        registry: ModelRegistry,
        settings: Settings,
        process_id: str | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.process_id = process_id or default_process_id()
        self.started_at = time.time()
        self.caught_up = False
        self.store_error: str | None = None
        self.tick_error: str | None = (
            None  # the last unexpected error of a tick, until one completes
        )
        self.failed_records: dict[str, list[FailedRecord]] = {}  # per model, as last read
        self._applied: dict[str, int] = {}  # per model: the newest record taken (ok or not)
        self._caught: set[str] = set()  # models replayed so far by the catch-up
        self._changed = Signal()
        self._on_tick = on_tick
        self._last_heartbeat = 0.0
        self._progress_at = time.monotonic()  # the last completed tick (or applied record)
        self._loop_due: float | None = None  # when the event loop's next watch turn is due
        self._loop_watch: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._left = False  # removed itself from the live set while stalled
        registry.liveness_checks.append(self.failure)

    @property
    def ready(self) -> bool:
        """Loaded and caught up: only then may this process answer with its parameters."""
        return self.registry.ready

    def failure(self) -> str | None:
        """Why liveness must fail (None: it need not): the task ended, or no tick completed
        for ``sync_stall_s``. A process in that state serves parameters nobody updates."""
        if self._closing:
            return None
        if self._task is not None and self._task.done():
            return (
                "the control-store sync task ended, so this process no longer applies "
                "parameter changes; restart it"
            )
        now = time.monotonic()
        idle = now - self._progress_at
        if idle <= self.settings.sync_stall_s:
            return None
        if self._loop_due is not None and now > self._loop_due + self.settings.heartbeat_s:
            return None  # the event loop itself is behind: it has not run the sync loop yet
        last = f"; last error: {self.tick_error}" if self.tick_error else ""
        return (
            f"the control-store sync loop has completed no tick for {idle:.1f} s "
            f"(TORCHGATE_SYNC_STALL_S={self.settings.sync_stall_s:g}){last}; "
            "this process no longer applies parameter changes: restart it"
        )

    # -- the background task -----------------------------------------------------------

    async def run(self) -> None:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self.store.watch(lambda: loop.call_soon_threadsafe(self._changed.fire))
        self._watch_the_loop(loop)
        try:
            while True:
                changed = self._changed.current()
                await self._supervised_tick()
                delay = max(0.0, self._last_heartbeat + self.settings.heartbeat_s - time.time())
                await wait_for(changed, max(delay, 0.01))
        finally:
            if self._loop_watch is not None:
                self._loop_watch.cancel()

    def _watch_the_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """A turn on the event loop every heartbeat. One that comes more than a heartbeat late
        means the loop itself was held up (blocked, starved of the GIL while models load,
        paused), whether the sync loop was asleep or in the middle of a tick: that time is not
        the sync loop's, so its stall clock moves on by as much."""
        now = time.monotonic()
        due = self._loop_due
        if due is not None and now - due > self.settings.heartbeat_s:
            self._progress_at += now - due
        self._loop_due = now + self.settings.heartbeat_s
        self._loop_watch = loop.call_later(self.settings.heartbeat_s, self._watch_the_loop, loop)

    async def _supervised_tick(self) -> None:
        """One tick; whatever it raises is logged and the next tick tries again. A tick that
        completes its heartbeat round is progress; ticks woken by a change between two
        rounds are not, so a round that keeps failing ends in a stall."""
        try:
            rounded = await self._tick()
            if self._on_tick is not None:
                self._on_tick()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != self.tick_error:  # once per distinct error, not every heartbeat
                logger.exception("control-store sync tick failed; retrying at the heartbeat pace")
            self.tick_error = error
            self._last_heartbeat = time.time()  # retry at the heartbeat pace, not in a spin
        else:
            if rounded:
                if self.tick_error is not None:
                    logger.info("control-store sync ticks complete again")
                self.tick_error = None
                self._progress_at = time.monotonic()

    async def _tick(self) -> bool:
        """One pass; True when it included the heartbeat round (or the store was down:
        waiting for it is this loop's job, not a reason to restart)."""
        rounded = time.time() - self._last_heartbeat >= self.settings.heartbeat_s
        try:
            if rounded:
                await self._beat()
            if self.registry.loaded and not self.caught_up:
                await self._catch_up()
            elif self.caught_up:
                await self._apply_new()
        except StoreUnavailable as exc:
            if self.store_error is None:
                logger.warning("%s", exc.detail)
            self.store_error = exc.detail
            self._last_heartbeat = time.time()  # retry at the heartbeat pace, not in a spin
            return True
        if self.store_error is not None:
            logger.info("the control store %s is reachable again", self.store.name)
        self.store_error = None
        return rounded

    async def _beat(self) -> None:
        """Heartbeat, expire dead processes' jobs, re-read the failed records. While stalled,
        leave the live set instead of heartbeating, so that admin calls stop waiting for this
        process; a round that completes then brings it back."""
        self._last_heartbeat = time.time()
        if self.failure() is None:
            self._left = False
            await self._heartbeat()
        elif not self._left:
            await asyncio.to_thread(self.store.remove_process, self.process_id)
            self._left = True
            logger.error("left the live set: %s", self.failure())
        await asyncio.to_thread(self.store.expire_jobs)
        names = list(self.registry.entries)
        failed = await asyncio.to_thread(lambda: {n: self.store.failed_records(n) for n in names})
        self.failed_records.update(failed)

    async def _heartbeat(self) -> None:
        info = ProcessInfo(
            process_id=self.process_id,
            models=tuple(self.registry.entries),
            ready=self.ready,
            started_at=self.started_at,
        )
        await asyncio.to_thread(self.store.heartbeat, info)
        self._last_heartbeat = time.time()

    # -- admin fan-out -----------------------------------------------------------------

    async def change(self, model: str, op: Operation, args: dict[str, Any]) -> FanOut:
        """Record a parameter change and wait (``admin_wait_s`` at most) until every live
        process serving ``model`` has applied it; the answer lists each one."""
        record = await asyncio.to_thread(
            self.store.append_record, model, op, args, self.process_id, self.version_of(model)
        )
        self._changed.fire()  # apply it here at once
        me = ProcessInfo(self.process_id, tuple(self.registry.entries), True, self.started_at)
        return await await_fan_out(
            self.store, record, me, self._changed, self.settings.admin_wait_s
        )

    async def close(self) -> None:
        """Leave the live set at once (a clean stop need not wait for the timeout)."""
        self._closing = True
        with contextlib.suppress(StoreUnavailable):
            await asyncio.to_thread(self.store.remove_process, self.process_id)
