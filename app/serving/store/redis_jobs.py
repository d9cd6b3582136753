"""Jobs and accuracy in the Redis control store.

Whatever two hosts could race on (a job slot, ending a job that an owner may still be writing)
is decided inside one Lua script, so Redis runs it atomically: a job is active while its id is
in one set, its lease is a key with an expiry that its owner renews while it progresses.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from app.serving.store.base import (
    JobConflict,
    JobRecord,
    cancelled_reason,
    expired_reason,
)
from app.serving.store.entries import Malformed, decode_job, dump, fields_of, unreadable_job
from app.serving.store.redis_base import RedisBase, ms, reachable

logger = logging.getLogger(__name__)
FINISHED_JOB_TTL_S = 7 * 24 * 3600  # finished jobs stay readable this long
_RACES = 10  # a cancel retries this often when a progress write lands between read and write

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
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then return 0 end
if ARGV[4] == '1' then
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
# Ends an active job whose body is still the one read (expiry: only once its lease ran out).
# KEYS: active set, lease, job, slot; ARGV: id, body read, final body, channel, keep s, expiry
_FINISH_JOB = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0
   or (redis.call('GET', KEYS[3]) or '') ~= ARGV[2]
   or (ARGV[6] == '1' and redis.call('EXISTS', KEYS[2]) == 1) then return 0 end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[5])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
redis.call('PUBLISH', ARGV[4], 'job:' .. ARGV[1])
return 1
"""


class RedisJobs(RedisBase):
    """The job and accuracy half of ``RedisStore``."""

    def __init__(
        self,
        url: str,
        process_timeout_s: float,
        job_lease_s: float,
        prefix: str = "torchgate",
        **connection: Any,
    ) -> None:
        super().__init__(url, process_timeout_s, job_lease_s, prefix, **connection)
        self._create_job = self._client.register_script(_CREATE_JOB)
        self._update_job = self._client.register_script(_UPDATE_JOB)
        self._finish_job = self._client.register_script(_FINISH_JOB)
        self._active = self._key("jobs", "active")

    def _slot(self, kind: str, model: str) -> str:
        """The one slot per kind and model: it holds the id of the job that runs there."""
        return self._key("active", kind, model)

    def _decode(self, job_id: str, body: str | None) -> JobRecord:
        """The stored job; one that does not decode (or is gone) is shown failed, saying why."""
        try:
            return decode_job(body)
        except Malformed as exc:
            self.skip(self._key("job", job_id), exc)
            try:
                partial = fields_of(body)
            except Malformed:
                partial = {}
            kind, model = str(partial.get("kind", "unknown")), str(partial.get("model", "unknown"))
            return unreadable_job(job_id, str(exc), kind, model)

    def _finish(self, job: JobRecord, read: str | None, final: JobRecord, expiry: bool) -> bool:
        keys = [self._active, self._key("lease", job.id), self._key("job", job.id)]
        args = [job.id, read or "", dump(final), self._events, FINISHED_JOB_TTL_S, int(expiry)]
        return bool(self._finish_job(keys=[*keys, self._slot(job.kind, job.model)], args=args))

    @reachable
    def create_job(self, job: JobRecord) -> None:
        other = self._create_job(
            keys=[
                self._slot(job.kind, job.model),
                self._key("job", job.id),
                self._key("lease", job.id),
                self._active,
            ],
            args=[job.id, dump(job), ms(self.job_lease_s), self._events],
        )
        if other is not None:
            raise JobConflict(
                f"a {job.kind} job for {job.model!r} is already running (job {other}); "
                f"poll GET /admin/jobs/{other}, or cancel it with DELETE /admin/jobs/{other}."
            )

    @reachable
    def update_job(self, job: JobRecord) -> bool:
        keys = [self._key("job", job.id), self._key("lease", job.id), self._active]
        lease, keep = ms(self.job_lease_s), FINISHED_JOB_TTL_S
        written = self._update_job(
            keys=[*keys, self._slot(job.kind, job.model)],
            args=[job.id, dump(job), lease, int(job.active), self._events, keep],
        )
        if not written:  # ended (cancelled, expired) meanwhile: it is not brought back
            logger.debug("job %s is no longer active in %s; update dropped", job.id, self.name)
        return bool(written)

    @reachable
    def cancel_job(self, job_id: str) -> JobRecord | None:
        for _ in range(_RACES):
            pipe = self._client.pipeline().get(self._key("job", job_id))
            body, active = pipe.sismember(self._active, job_id).execute()
            if body is None and not active:
                return None
            job = self._decode(job_id, body)
            if not active:
                return job
            cancelled = replace(
                job, status="cancelled", error=cancelled_reason(job_id), finished_at=time.time()
            )
            if self._finish(job, body, cancelled, expiry=False):
                return cancelled
        return self.get_job(job_id)

    @reachable
    def get_job(self, job_id: str) -> JobRecord | None:
        body = self._client.get(self._key("job", job_id))
        return self._decode(job_id, body) if body is not None else None

    @reachable
    def expire_jobs(self) -> list[JobRecord]:
        ids = sorted(self._client.smembers(self._active))
        pipe = self._client.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(self._key("lease", job_id))
            pipe.get(self._key("job", job_id))
        answers = pipe.execute() if ids else []
        expired = []
        for job_id, leased, body in zip(ids, answers[::2], answers[1::2], strict=True):
            if leased:
                continue
            job = self._decode(job_id, body)
            final = job
            if job.active:  # a readable job: its owner died; an unreadable one says so
                final = replace(
                    job, status="failed", error=expired_reason(job), finished_at=time.time()
                )
            if self._finish(job, body, final, expiry=True):
                expired.append(final)  # only the process whose script won reports it
        return expired

    @reachable
    def set_accuracy(self, model: str, result: dict[str, Any]) -> None:
        pipe = self._client.pipeline()
        pipe.set(self._key("accuracy", model), json.dumps(result))
        pipe.publish(self._events, f"accuracy:{model}")
        pipe.execute()

    @reachable
    def get_accuracy(self, model: str) -> dict[str, Any] | None:
        body = self._client.get(self._key("accuracy", model))
        if body is None:
            return None
        try:
            return fields_of(body)
        except Malformed as exc:
            self.skip(self._key("accuracy", model), exc)
            return None
