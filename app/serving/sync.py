"""Keeps this process's parameters in step with the control store, and says it is alive.

One background task per process: it heartbeats, replays the records a fresh process missed
(before ``/readyz`` turns 200), applies new records in version order on the device worker
(between batches, like any swap), reports what it applied, and expires the jobs of dead
processes. Admin calls append a record and wait, bounded, until every live process that
serves the model has reported it. The request path never comes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.serving.registry import ModelRegistry, ModelStatus
from app.serving.reinit import InitPlan
from app.serving.store import (
    AppliedReport,
    ControlStore,
    ParameterRecord,
    ProcessInfo,
    StoreUnavailable,
)
from app.serving.store.base import INITIAL_VERSION, Operation

logger = logging.getLogger(__name__)
_FALLBACK_POLL_S = 0.25  # a waiting admin call re-reads the store at least this often


def default_process_id() -> str:
    """``host:pid``: a pod's hostname is its name, and pids tell workers of one host apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class FanOut:
    """An admin change as every live process serving the model took it."""

    record: ParameterRecord
    reports: list[AppliedReport]
    converged: bool


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds``. Not ``asyncio.wait_for``: on Python 3.11 it can
    swallow a cancellation that arrives as the event fires, and the sync task then never ends
    (a worker hung in its shutdown that way)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class _Signal:
    """Wakes every waiter at once; each waiter takes the current one before re-checking."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


class ParameterSync:
    """This process's side of the control store."""

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
        self._applied: dict[str, int] = {}  # per model: the newest record taken (ok or not)
        self._changed = _Signal()
        self._on_tick = on_tick
        self._last_heartbeat = 0.0

    @property
    def ready(self) -> bool:
        """Loaded and caught up: only then may this process answer with its parameters."""
        return self.registry.ready

    def version_of(self, model: str) -> int:
        return self._applied.get(model, INITIAL_VERSION)

    # -- the background task -----------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.watch(lambda: loop.call_soon_threadsafe(self._changed.fire))
        while True:
            changed = self._changed.current()
            await self._tick()
            if self._on_tick is not None:
                self._on_tick()
            delay = max(0.0, self._last_heartbeat + self.settings.heartbeat_s - time.time())
            await _wait(changed, max(delay, 0.01))

    async def _tick(self) -> None:
        try:
            if time.time() - self._last_heartbeat >= self.settings.heartbeat_s:
                await self._heartbeat()
                await asyncio.to_thread(self.store.expire_jobs)
            if self.registry.loaded and not self.caught_up:
                await self._catch_up()
            elif self.caught_up:
                await self._apply_new()
        except StoreUnavailable as exc:
            if self.store_error is None:
                logger.warning("%s", exc.detail)
            self.store_error = exc.detail
            self._last_heartbeat = time.time()  # retry at the heartbeat pace, not in a spin
        else:
            if self.store_error is not None:
                logger.info("the control store %s is reachable again", self.store.name)
            self.store_error = None

    async def _heartbeat(self) -> None:
        info = ProcessInfo(
            process_id=self.process_id,
            models=tuple(self.registry.entries),
            ready=self.ready,
            started_at=self.started_at,
        )
        await asyncio.to_thread(self.store.heartbeat, info)
        self._last_heartbeat = time.time()

    async def _catch_up(self) -> None:
        """Replay what happened while this process was away: from the latest reload on.
        The weights were just read from their source, so that reload needs no second read."""
        for name, entry in self.registry.entries.items():
            records = await asyncio.to_thread(self.store.catch_up_records, name)
            if records and records[0].op == "reload":
                if entry.runtime is not None:
                    await entry.runtime.adopt_version(records[0].version)
                await self._report(name, records[0].version, None)
                records = records[1:]
            elif not records:
                await self._report(name, INITIAL_VERSION, None)
            for record in records:
                await self._apply(record)
        self.caught_up = self.registry.in_sync = True
        logger.info("caught up with the control store %s", self.store.name)
        await self._heartbeat()

    async def _apply_new(self) -> None:
        for name in self.registry.entries:
            records = await asyncio.to_thread(self.store.records_after, name, self.version_of(name))
            for record in records:
                await self._apply(record)

    async def _apply(self, record: ParameterRecord) -> None:
        """Apply one record; a failure moves the version too, with the checksum of whatever
        the model holds then, so every process's report stays truthful."""
        runtime = self.registry.entries[record.model].runtime
        error: str | None = None
        if runtime is not None:
            try:
                if record.op == "reinitialize":
                    await runtime.reinitialize(InitPlan(**record.args), record.version)
                else:
                    await runtime.reload(record.version)
            except Exception as exc:  # reported to the admin caller, never hidden
                logger.warning("applying %s v%d failed: %s", record.op, record.version, exc)
                error = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
                if runtime.state.version != record.version:
                    await runtime.adopt_version(record.version)
        await self._report(record.model, record.version, error)

    async def _report(self, name: str, version: int, error: str | None) -> None:
        self._applied[name] = version
        entry = self.registry.entries[name]
        runtime = entry.runtime
        if runtime is None or entry.status is not ModelStatus.READY:
            error = f"model {name!r} is {entry.status.value} here: {entry.reason}"
        report = AppliedReport(
            process_id=self.process_id,
            model=name,
            version=runtime.state.version if runtime is not None else version,
            sha256=runtime.state.sha256 if runtime is not None else "",
            ok=error is None,
            error=error,
            applied_at=time.time(),
        )
        await asyncio.to_thread(self.store.report_applied, report)

    # -- admin fan-out -----------------------------------------------------------------

    async def change(self, model: str, op: Operation, args: dict[str, Any]) -> FanOut:
        """Record a parameter change and wait (``admin_wait_s`` at most) until every live
        process serving ``model`` has applied it; the answer lists each one."""
        record = await asyncio.to_thread(
            self.store.append_record, model, op, args, self.process_id, self.version_of(model)
        )
        self._changed.fire()  # apply it here at once
        deadline = time.monotonic() + self.settings.admin_wait_s
        while True:
            changed = self._changed.current()
            live, reports = await asyncio.gather(
                asyncio.to_thread(self.store.live_processes),
                asyncio.to_thread(self.store.applied, model),
            )
            serving = [p for p in live if p.ready and model in p.models]
            if self.process_id not in {p.process_id for p in serving}:
                serving.append(self._self_info())
            pending = [
                p.process_id
                for p in serving
                if p.process_id not in reports or reports[p.process_id].version < record.version
            ]
            if not pending or time.monotonic() >= deadline:
                break
            remaining = deadline - time.monotonic()
            await _wait(changed, min(_FALLBACK_POLL_S, remaining))
        return self._fan_out(record, serving, reports, pending)

    def _self_info(self) -> ProcessInfo:
        return ProcessInfo(self.process_id, tuple(self.registry.entries), True, self.started_at)

    def _fan_out(
        self,
        record: ParameterRecord,
        serving: list[ProcessInfo],
        reports: dict[str, AppliedReport],
        pending: list[str],
    ) -> FanOut:
        listed = []
        for info in sorted(serving, key=lambda p: p.process_id):
            if info.process_id in pending:
                listed.append(
                    AppliedReport(
                        info.process_id,
                        record.model,
                        reports[info.process_id].version if info.process_id in reports else 0,
                        reports[info.process_id].sha256 if info.process_id in reports else "",
                        ok=False,
                        error=f"did not apply version {record.version} within "
                        f"{self.settings.admin_wait_s:g} s (TORCHGATE_ADMIN_WAIT_S)",
                        applied_at=0.0,
                    )
                )
            else:
                listed.append(reports[info.process_id])
        exact = {(r.version, r.sha256) for r in listed if r.version == record.version}
        converged = all(r.ok for r in listed) and len(exact) <= 1
        return FanOut(record, listed, converged)

    async def close(self) -> None:
        """Leave the live set at once (a clean stop need not wait for the timeout)."""
        with contextlib.suppress(StoreUnavailable):
            await asyncio.to_thread(self.store.remove_process, self.process_id)
