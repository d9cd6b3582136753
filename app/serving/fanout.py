"""An admin change as the whole service took it: append the record, then wait (bounded) until
every live process serving the model has applied it, and list each one.

The request path never comes here; ``ParameterSync.change`` does, for reinitialize and reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from app.serving.store import (
    AppliedReport,
    ControlStore,
    FailedRecord,
    ParameterRecord,
    ProcessInfo,
    SkippedEntry,
)

_FALLBACK_POLL_S = 0.25  # a waiting admin call re-reads the store at least this often


@dataclass(frozen=True)
class FanOut:
    """An admin change as every live process serving the model took it, with the model's
    records that could not be applied and the damaged entries left out while waiting."""

    record: ParameterRecord
    reports: list[AppliedReport]
    converged: bool
    failed_records: list[FailedRecord]
    skipped: list[SkippedEntry]


async def wait_for(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds``. Not ``asyncio.wait_for``: on Python 3.11 it can
    swallow a cancellation that arrives as the event fires, and the sync task then never ends
    (a worker hung in its shutdown that way)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class Signal:
    """Wakes every waiter at once; each waiter takes the current one before re-checking."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


async def await_fan_out(
    store: ControlStore, record: ParameterRecord, me: ProcessInfo, changed: Signal, wait_s: float
) -> FanOut:
    """Wait until every live process serving the record's model (``me`` included) reported
    its version, or ``wait_s`` ran out; what each one holds then."""
    started, deadline = time.time(), time.monotonic() + wait_s
    while True:
        event = changed.current()
        live, reports = await asyncio.gather(
            asyncio.to_thread(store.live_processes),
            asyncio.to_thread(store.applied, record.model),
        )
        serving = [p for p in live if p.ready and record.model in p.models]
        if me.process_id not in {p.process_id for p in serving}:
            serving.append(me)
        pending = {
            p.process_id
            for p in serving
            if p.process_id not in reports or reports[p.process_id].version < record.version
        }
        if not pending or time.monotonic() >= deadline:
            break
        await wait_for(event, min(_FALLBACK_POLL_S, deadline - time.monotonic()))
    failed = await asyncio.to_thread(store.failed_records, record.model)
    listed = [
        _late(record, reports.get(info.process_id), info.process_id, wait_s)
        if info.process_id in pending
        else reports[info.process_id]
        for info in sorted(serving, key=lambda p: p.process_id)
    ]
    exact = {(r.version, r.sha256) for r in listed if r.version == record.version}
    converged = all(r.ok for r in listed) and len(exact) <= 1
    return FanOut(record, listed, converged, failed, store.skipped_since(started))


def _late(
    record: ParameterRecord, report: AppliedReport | None, process_id: str, wait_s: float
) -> AppliedReport:
    """A process that did not report the version in time, as it stands."""
    return AppliedReport(
        process_id,
        record.model,
        report.version if report is not None else 0,
        report.sha256 if report is not None else "",
        ok=False,
        error=f"did not apply version {record.version} within {wait_s:g} s "
        "(TORCHGATE_ADMIN_WAIT_S)",
        applied_at=0.0,
    )
