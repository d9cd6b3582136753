"""The control store on Redis, for a service spread over several hosts.

Whatever two hosts could race on (the next version, a job slot, failing an expired job) is
decided inside one Lua script, so Redis runs it atomically. A process is alive while its key
has not expired, so no two hosts' clocks are compared. Every write publishes on one channel
that ``watch`` listens to.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.serving.store.base import (
    INITIAL_VERSION,
    AppliedReport,
    ControlStore,
    JobConflict,
    JobRecord,
    Operation,
    ParameterRecord,
    ProcessInfo,
    StoreUnavailable,
    expired_reason,
)
from app.serving.store.connection import refusal_hint

logger = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
FINISHED_JOB_TTL_S = 7 * 24 * 3600  # finished jobs stay readable this long
RETRY_S = 0.5  # the watcher's pause between reconnection attempts
# fail fast (an admin call answers 503 within seconds), notice dead idle connections
_CLIENT_OPTIONS = dict(
    socket_timeout=2, socket_connect_timeout=2, health_check_interval=10, decode_responses=True
)

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
# KEYS: slot, job, lease, active set; ARGV: id, body, lease ms, channel
_CREATE_JOB = """
local other = redis.call('GET', KEYS[1])
if other and other ~= ARGV[1] and redis.call('SISMEMBER', KEYS[4], other) == 1 then
  return other
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('PUBLISH', ARGV[4], 'job:' .. ARGV[1])
return false
"""
# KEYS: job, lease, active set, slot; ARGV: id, body, lease ms, active, channel, keep s
_UPDATE_JOB = """
if ARGV[4] == '1' then
  if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then return 0 end
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[6])
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
end
redis.call('PUBLISH', ARGV[5], 'job:' .. ARGV[1])
return 1
"""
# KEYS: active set, lease, job, slot; ARGV: id, body read, failed body, channel, keep s
_EXPIRE_JOB = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1
   or redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[5])
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
redis.call('PUBLISH', ARGV[4], 'job:' .. ARGV[1])
return 1
"""


def _reachable(
    method: Callable[Concatenate[RedisStore, P], R],
) -> Callable[Concatenate[RedisStore, P], R]:
    """Any Redis failure becomes the one error the API answers 503 to, naming the store."""

    @functools.wraps(method)
    def wrapper(self: RedisStore, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except RedisError as exc:
            raise self._unavailable(exc) from exc

    return wrapper


class RedisStore(ControlStore):
    """``redis[s]://[user[:password]@]host:6379/0``; every key lives under ``{prefix}:``.
    ``connection``: redis-py's options beyond the URL (connection.py: password, TLS files)."""

    def __init__(
        self,
        url: str,
        process_timeout_s: float,
        job_lease_s: float,
        prefix: str = "torchgate",
        **connection: Any,
    ) -> None:
        super().__init__(url, process_timeout_s, job_lease_s)
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, **_CLIENT_OPTIONS, **connection)
        self._events = self._key("events")
        self._append = self._client.register_script(_APPEND)
        self._forget = self._client.register_script(_FORGET_PROCESSES)
        self._create_job = self._client.register_script(_CREATE_JOB)
        self._update_job = self._client.register_script(_UPDATE_JOB)
        self._expire_job = self._client.register_script(_EXPIRE_JOB)
        self._listeners: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _unavailable(self, exc: RedisError) -> StoreUnavailable:
        reason = str(exc).rstrip(".") or type(exc).__name__
        broken = isinstance(exc, RedisConnectionError | RedisTimeoutError)
        state = f"is unreachable ({reason})" if broken else f"failed ({reason})"
        return StoreUnavailable(
            f"the control store {self.name} {state}{refusal_hint(exc)}; parameter changes and "
            "jobs are refused until it is back, inference goes on."
        )

    # -- parameter records -------------------------------------------------------------

    @_reachable
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
        return _record(int(version), body)  # what every other process will read back

    @_reachable
    def records_after(self, model: str, version: int) -> list[ParameterRecord]:
        records = self._key("records", model)
        pipe = self._client.pipeline().get(self._key("version", model)).hlen(records)
        latest, count = pipe.execute()
        first, last = version + 1, int(latest or 0)
        if first > last or not count:
            return []
        if last - first < count:
            wanted = list(range(first, last + 1))
            found = zip(wanted, self._client.hmget(records, wanted), strict=True)
        else:  # a floor moved the counter far past the records: fewer to read them all
            found = ((int(v), body) for v, body in self._client.hgetall(records).items())
        kept = sorted((v, body) for v, body in found if body and v >= first)
        return [_record(v, body) for v, body in kept]

    @_reachable
    def catch_up_records(self, model: str) -> list[ParameterRecord]:
        reload = self._client.get(self._key("reload", model))
        return self.records_after(model, int(reload) - 1 if reload else 0)

    # -- processes ---------------------------------------------------------------------

    @_reachable
    def heartbeat(self, info: ProcessInfo) -> None:
        ttl = _ms(self.process_timeout_s)
        pipe = self._client.pipeline()
        pipe.set(self._key("process", info.process_id), _dump(info), px=ttl, get=True)
        pipe.sadd(self._key("processes"), info.process_id)
        before, _ = pipe.execute()
        # a heartbeat a second per process would wake every watcher: tell only what changed
        if before is None or json.loads(before).get("ready") != info.ready:
            self._client.publish(self._events, f"process:{info.process_id}")

    @_reachable
    def live_processes(self) -> list[ProcessInfo]:
        ids = sorted(self._client.smembers(self._key("processes")))
        keys = [self._key("process", process_id) for process_id in ids]
        bodies = self._client.mget(keys) if keys else []
        gone = [process_id for process_id, body in zip(ids, bodies, strict=True) if not body]
        if gone:  # the script checks again: one that heartbeat meanwhile stays
            gone_keys = [self._key("process", process_id) for process_id in gone]
            self._forget(keys=[self._key("processes"), *gone_keys], args=[self._events, *gone])
        return [_process(body) for body in bodies if body]

    @_reachable
    def remove_process(self, process_id: str) -> None:
        models = self._client.smembers(self._key("applied-models"))
        pipe = self._client.pipeline()
        pipe.delete(self._key("process", process_id))
        pipe.srem(self._key("processes"), process_id)
        for model in models:  # its reports would otherwise count forever
            pipe.hdel(self._key("applied", model), process_id)
        pipe.publish(self._events, f"process:{process_id}")
        pipe.execute()

    @_reachable
    def report_applied(self, report: AppliedReport) -> None:
        pipe = self._client.pipeline()
        pipe.hset(self._key("applied", report.model), report.process_id, _dump(report))
        pipe.sadd(self._key("applied-models"), report.model)
        pipe.publish(self._events, f"applied:{report.model}")
        pipe.execute()

    @_reachable
    def applied(self, model: str) -> dict[str, AppliedReport]:
        reports = self._client.hgetall(self._key("applied", model))
        return {pid: AppliedReport(**json.loads(body)) for pid, body in reports.items()}

    # -- jobs and accuracy -------------------------------------------------------------

    def _job_keys(self, job: JobRecord) -> tuple[str, str, str]:
        """The job's body, its lease and the one slot per kind and model."""
        slot = self._key("active", job.kind, job.model)
        return self._key("job", job.id), self._key("lease", job.id), slot

    @_reachable
    def create_job(self, job: JobRecord) -> None:
        body_key, lease_key, slot = self._job_keys(job)
        other = self._create_job(
            keys=[slot, body_key, lease_key, self._key("jobs", "active")],
            args=[job.id, _dump(job), _ms(self.job_lease_s), self._events],
        )
        if other is not None:
            raise JobConflict(
                f"a {job.kind} job for {job.model!r} is already running (job {other}); "
                f"poll GET /admin/jobs/{other}."
            )

    @_reachable
    def update_job(self, job: JobRecord) -> None:
        body_key, lease_key, slot = self._job_keys(job)
        lease, keep = _ms(self.job_lease_s), FINISHED_JOB_TTL_S
        written = self._update_job(
            keys=[body_key, lease_key, self._key("jobs", "active"), slot],
            args=[job.id, _dump(job), lease, int(job.active), self._events, keep],
        )
        if not written:  # expired (or lost) meanwhile: a failed job is not brought back
            logger.debug("job %s is no longer active in %s; update dropped", job.id, self.name)

    @_reachable
    def get_job(self, job_id: str) -> JobRecord | None:
        body = self._client.get(self._key("job", job_id))
        return JobRecord(**json.loads(body)) if body else None

    @_reachable
    def expire_jobs(self) -> list[JobRecord]:
        active = self._key("jobs", "active")
        ids = sorted(self._client.smembers(active))
        pipe = self._client.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(self._key("lease", job_id))
            pipe.get(self._key("job", job_id))
        answers = pipe.execute() if ids else []
        expired = []
        for leased, body in zip(answers[::2], answers[1::2], strict=True):
            if leased or not body:
                continue
            job = JobRecord(**json.loads(body))
            failed = replace(
                job, status="failed", error=expired_reason(job), finished_at=time.time()
            )
            body_key, lease_key, slot = self._job_keys(job)
            args = [job.id, body, _dump(failed), self._events, FINISHED_JOB_TTL_S]
            if self._expire_job(keys=[active, lease_key, body_key, slot], args=args):
                expired.append(failed)  # only the process whose script won reports it
        return expired

    @_reachable
    def set_accuracy(self, model: str, result: dict[str, Any]) -> None:
        pipe = self._client.pipeline()
        pipe.set(self._key("accuracy", model), json.dumps(result))
        pipe.publish(self._events, f"accuracy:{model}")
        pipe.execute()

    @_reachable
    def get_accuracy(self, model: str) -> dict[str, Any] | None:
        body = self._client.get(self._key("accuracy", model))
        return json.loads(body) if body else None

    # -- notifications -----------------------------------------------------------------

    def watch(self, on_change: Callable[[], None]) -> None:
        self._listeners.append(on_change)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._listen, name="store-watch", daemon=True)
            self._watcher.start()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's bug must not end the subscription
                logger.exception("control store listener failed")

    def _listen(self) -> None:
        """One subscription, rebuilt after every lost connection. Listeners also hear the
        subscription being confirmed: whatever was written while it was down is read then."""
        down = False
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self._events)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] not in ("subscribe", "message"):
                        continue
                    if down and message["type"] == "subscribe":
                        down = False
                        logger.warning("control store %s is reachable again", self.name)
                    self._notify()
            except Exception as exc:  # Redis went away, or a bug: neither may end the thread
                if not down:
                    failure = f"{type(exc).__name__}: {exc}{refusal_hint(exc)}"
                    logger.warning("watching %s failed: %s", self.name, failure)
                down = True
                self._stop.wait(RETRY_S)
            finally:
                pubsub.close()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=3)
        self._listeners.clear()  # they hold the app (sync -> registry -> models)
        self._client.close()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _dump(item: AppliedReport | JobRecord | ProcessInfo) -> str:
    return json.dumps(asdict(item))


def _record(version: int, body: str) -> ParameterRecord:
    return ParameterRecord(version=version, **json.loads(body))


def _process(body: str) -> ProcessInfo:
    info = json.loads(body)
    return ProcessInfo(**{**info, "models": tuple(info["models"])})
