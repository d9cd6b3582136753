"""The records a process applies from the control store: the catch-up of a fresh process (from
the latest reload on), then every new record in version order, each reported with the checksum
of what the model holds afterwards. A record that fails is marked failed and never holds back
the records after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from app.serving.records import apply_record, latest_precision
from app.serving.registry import ModelRegistry, ModelStatus
from app.serving.store import AppliedReport, ControlStore, FailedRecord, ParameterRecord
from app.serving.store.base import INITIAL_VERSION

logger = logging.getLogger(__name__)


class RecordReplay:
    """ParameterSync's application of records, a base class of it: the attributes below are
    set by ParameterSync.__init__, and ``_heartbeat`` is its own."""

    store: ControlStore
    registry: ModelRegistry
    process_id: str
    caught_up: bool
    failed_records: dict[str, list[FailedRecord]]
    _applied: dict[str, int]
    _caught: set[str]
    _progress_at: float

    _heartbeat: Callable[[], Awaitable[None]]

    def version_of(self, model: str) -> int:
        return self._applied.get(model, INITIAL_VERSION)

    async def _catch_up(self) -> None:
        """Replay what happened while this process was away: from the latest reload on.
        The weights were just read from their source, so that reload needs no second read."""
        for name, entry in self.registry.entries.items():
            if name in self._caught:
                continue
            records = await asyncio.to_thread(self.store.catch_up_records, name)
            if records and records[0].op == "reload" and records[0].problem is None:
                await self._replay_precision(name, records[0].version)
                if entry.runtime is not None:
                    await entry.runtime.adopt_version(records[0].version)
                await self._report(name, records[0].version, None)
                records = records[1:]
            elif not records:
                await self._report(name, INITIAL_VERSION, None)
            for record in records:
                await self._apply(record)
            self._caught.add(name)
        self.caught_up = self.registry.in_sync = True
        logger.info("caught up with the control store %s", self.store.name)
        await self._heartbeat()

    async def _replay_precision(self, name: str, reload_version: int) -> None:
        """A precision promoted before the latest reload still holds: apply it first."""
        every = await asyncio.to_thread(self.store.records_after, name, INITIAL_VERSION - 1)
        record = latest_precision(every, reload_version)
        runtime = self.registry.entries[name].runtime
        if record is not None and runtime is not None:
            try:
                await apply_record(runtime, record)
            except Exception as exc:  # the reload after it is applied all the same
                logger.warning("cannot replay precision v%d of %s: %s", record.version, name, exc)

    async def _apply_new(self) -> None:
        for name in self.registry.entries:
            records = await asyncio.to_thread(self.store.records_after, name, self.version_of(name))
            for record in records:
                await self._apply(record)

    async def _apply(self, record: ParameterRecord) -> None:
        """Apply one record; a failure moves the version too, with the checksum of whatever
        the model holds then, so every process's report stays truthful, and the record is
        marked failed in the store: it never holds back the records after it."""
        runtime = self.registry.entries[record.model].runtime
        error: str | None = None
        if runtime is not None:
            try:
                await apply_record(runtime, record)
            except Exception as exc:  # reported to the admin caller, never hidden
                error = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
                logger.warning(
                    "cannot apply %s v%d of %s (from %s, args %s): %s; later records go on",
                    record.op, record.version, record.model, record.origin or "?",
                    record.args, error,
                )  # fmt: skip
                await self._mark_failed(record, error)
                if runtime.state.version != record.version:
                    await runtime.adopt_version(record.version)
        await self._report(record.model, record.version, error)
        self._progress_at = time.monotonic()  # a long replay is progress, not a stall

    async def _mark_failed(self, record: ParameterRecord, error: str) -> None:
        failed = FailedRecord(
            record.model, record.version, record.op, error, self.process_id, time.time()
        )
        await asyncio.to_thread(self.store.mark_record_failed, failed)
        known = self.failed_records.setdefault(record.model, [])
        if all(f.version != record.version for f in known):
            known.append(failed)

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
