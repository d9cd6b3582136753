"""The control store on Redis, for a service spread over several hosts (the client and its
subscription are ``redis_base``; jobs and accuracy ``redis_jobs``).

The next version of a model is decided inside one Lua script, so Redis runs it atomically; a
process is alive while its key has not expired.
"""

from __future__ import annotations

import json
import time
from typing import Any

from app.serving.store.base import (
    FAILED_RECORDS_SHOWN,
    INITIAL_VERSION,
    AppliedReport,
    FailedRecord,
    Operation,
    ParameterRecord,
    ProcessInfo,
)
from app.serving.store.entries import (
    Malformed,
    decode_failed,
    decode_process,
    decode_record,
    decode_report,
    dump,
    fields_of,
)
from app.serving.store.redis_base import ms, reachable
from app.serving.store.redis_jobs import RedisJobs

# KEYS: counter, records, last reload; ARGV: lowest used version, body, op, channel, event
_APPEND = """
local v = redis.call('INCR', KEYS[1])
local low = tonumber(ARGV[1])
if v <= low then v = low + 1; redis.call('SET', KEYS[1], v) end
redis.call('HSET', KEYS[2], v, ARGV[2])
if ARGV[3] == 'reload' then redis.call('SET', KEYS[3], v) end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. v)
return v
"""
# KEYS: process set, then each process key; ARGV: channel, then each process id
_FORGET_PROCESSES = """
local gone = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', KEYS[i]) == 0 then gone = gone + redis.call('SREM', KEYS[1], ARGV[i]) end
end
if gone > 0 then redis.call('PUBLISH', ARGV[1], 'processes') end
"""


def _record(model: str, version: int, body: str) -> ParameterRecord:
    return decode_record(model, version, lambda: fields_of(body))


class RedisStore(RedisJobs):
    """``redis[s]://[user[:password]@]host:6379/0``; every key lives under ``{prefix}:``."""

    def __init__(
        self,
        url: str,
        process_timeout_s: float,
        job_lease_s: float,
        prefix: str = "torchgate",
        **connection: Any,
    ) -> None:
        super().__init__(url, process_timeout_s, job_lease_s, prefix, **connection)
        self._append = self._client.register_script(_APPEND)
        self._forget = self._client.register_script(_FORGET_PROCESSES)

    def _counter(self, key: str) -> int:
        try:
            value = self._client.get(key)
            return int(value) if value is not None else 0
        except ValueError as exc:
            self.skip(key, exc)
            return 0

    # -- parameter records -------------------------------------------------------------

    @reachable
    def append_record(
        self, model: str, op: Operation, args: dict[str, Any], origin: str, floor: int
    ) -> ParameterRecord:
        # the version is only known inside the script: the body leaves it out
        body = json.dumps(
            {"model": model, "op": op, "args": args, "origin": origin, "created_at": time.time()}
        )
        keys = [self._key("version", model), self._key("records", model)]
        version = self._append(
            keys=[*keys, self._key("reload", model)],
            args=[max(floor, INITIAL_VERSION), body, op, self._events, f"record:{model}:"],
        )
        return _record(model, int(version), body)  # what every other process reads back

    @reachable
    def records_after(self, model: str, version: int) -> list[ParameterRecord]:
        records = self._key("records", model)
        latest, count = self._counter(self._key("version", model)), self._client.hlen(records)
        first = version + 1
        if first > latest or not count:
            return []
        if latest - first < count:
            wanted = list(range(first, latest + 1))
            found = list(zip(wanted, self._client.hmget(records, wanted), strict=True))
        else:  # a floor moved the counter far past the records: fewer to read them all
            found = []
            for field, body in self._client.hgetall(records).items():
                try:
                    found.append((int(field), body))
                except ValueError as exc:
                    self.skip(f"{records}[{field}]", exc)
        kept = sorted((v, body) for v, body in found if body is not None and v >= first)
        return [_record(model, v, body) for v, body in kept]

    @reachable
    def catch_up_records(self, model: str) -> list[ParameterRecord]:
        reload = self._counter(self._key("reload", model))
        return self.records_after(model, reload - 1 if reload else 0)

    @reachable
    def mark_record_failed(self, failed: FailedRecord) -> None:
        self._client.hsetnx(self._key("failed", failed.model), str(failed.version), dump(failed))

    @reachable
    def failed_records(self, model: str) -> list[FailedRecord]:
        key = self._key("failed", model)
        found = []
        for field, body in self._client.hgetall(key).items():
            try:
                found.append(decode_failed(body))
            except Malformed as exc:
                self.skip(f"{key}[{field}]", exc)
        return sorted(found, key=lambda failed: failed.version)[-FAILED_RECORDS_SHOWN:]

    # -- processes ---------------------------------------------------------------------

    @reachable
    def heartbeat(self, info: ProcessInfo) -> None:
        key = self._key("process", info.process_id)
        pipe = self._client.pipeline()
        pipe.set(key, dump(info), px=ms(self.process_timeout_s), get=True)
        pipe.sadd(self._key("processes"), info.process_id)
        before, _ = pipe.execute()
        try:
            changed = before is None or fields_of(before).get("ready") != info.ready
        except Malformed:
            changed = True  # damaged before this write: whoever watches should look again
        # a heartbeat a second per process would wake every watcher: tell only what changed
        if changed:
            self._client.publish(self._events, f"process:{info.process_id}")

    @reachable
    def live_processes(self) -> list[ProcessInfo]:
        ids = sorted(self._client.smembers(self._key("processes")))
        keys = [self._key("process", process_id) for process_id in ids]
        bodies = self._client.mget(keys) if keys else []
        gone = [process_id for process_id, body in zip(ids, bodies, strict=True) if not body]
        if gone:  # the script checks again: one that heartbeat meanwhile stays
            gone_keys = [self._key("process", process_id) for process_id in gone]
            self._forget(keys=[self._key("processes"), *gone_keys], args=[self._events, *gone])
        live = []
        for key, body in zip(keys, bodies, strict=True):
            if body:
                try:
                    live.append(decode_process(body))
                except Malformed as exc:
                    self.skip(key, exc)
        return live

    @reachable
    def remove_process(self, process_id: str) -> None:
        models = self._client.smembers(self._key("applied-models"))
        pipe = self._client.pipeline()
        pipe.delete(self._key("process", process_id))
        pipe.srem(self._key("processes"), process_id)
        for model in models:  # its reports would otherwise count forever
            pipe.hdel(self._key("applied", model), process_id)
        pipe.publish(self._events, f"process:{process_id}")
        pipe.execute()

    @reachable
    def report_applied(self, report: AppliedReport) -> None:
        pipe = self._client.pipeline()
        pipe.hset(self._key("applied", report.model), report.process_id, dump(report))
        pipe.sadd(self._key("applied-models"), report.model)
        pipe.publish(self._events, f"applied:{report.model}")
        pipe.execute()

    @reachable
    def applied(self, model: str) -> dict[str, AppliedReport]:
        key = self._key("applied", model)
        reports = {}
        for process_id, body in self._client.hgetall(key).items():
            try:
                reports[process_id] = decode_report(body)
            except Malformed as exc:
                self.skip(f"{key}[{process_id}]", exc)
        return reports
