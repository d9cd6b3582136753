"""Jobs and accuracy in the SQLite control store: one row per job, ``active`` holding its
model's slot until it ends, ``lease_until`` renewed by its owner while it progresses."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from app.serving.store.base import (
    JobConflict,
    JobRecord,
    cancelled_reason,
    expired_reason,
)
from app.serving.store.entries import Malformed, decode_job, dump, fields_of, unreadable_job
from app.serving.store.sqlite_base import SqliteBase

_JOB_HISTORY = 1000


class SqliteJobs(SqliteBase):
    """The job and accuracy half of ``SqliteStore``."""

    def _job(self, row: sqlite3.Row) -> JobRecord:
        """The row's job; a body that does not decode is shown failed, saying why."""
        try:
            return decode_job(row["body"])
        except Malformed as exc:
            self.skip(f"jobs/{row['id']}", exc)
            return unreadable_job(row["id"], str(exc), row["kind"], row["model"])

    def create_job(self, job: JobRecord) -> None:
        with self._transaction() as db:
            other = db.execute(
                "SELECT id FROM jobs WHERE active = 1 AND kind = ? AND model = ?",
                (job.kind, job.model),
            ).fetchone()
            if other is not None:
                raise JobConflict(
                    f"a {job.kind} job for {job.model!r} is already running (job {other['id']}); "
                    f"poll GET /admin/jobs/{other['id']}, or cancel it with "
                    f"DELETE /admin/jobs/{other['id']}."
                )
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, 1, ?, ?)",
                (job.id, job.kind, job.model, time.time() + self.job_lease_s, dump(job)),
            )
            db.execute(
                "DELETE FROM jobs WHERE active = 0 AND id NOT IN "
                "(SELECT id FROM jobs WHERE active = 0 ORDER BY rowid DESC LIMIT ?)",
                (_JOB_HISTORY,),
            )

    def update_job(self, job: JobRecord) -> bool:
        lease = time.time() + self.job_lease_s if job.active else None
        with self._transaction() as db:
            written = db.execute(
                "UPDATE jobs SET active = ?, lease_until = ?, body = ? WHERE id = ? AND active = 1",
                (int(job.active), lease, dump(job), job.id),
            ).rowcount
        return written > 0

    def cancel_job(self, job_id: str) -> JobRecord | None:
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = self._job(row)
            if not row["active"]:
                return job
            job.status, job.error = "cancelled", cancelled_reason(job_id)
            job.finished_at = time.time()
            db.execute(
                "UPDATE jobs SET active = 0, lease_until = NULL, body = ? WHERE id = ?",
                (dump(job), job_id),
            )
        return job

    def get_job(self, job_id: str) -> JobRecord | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._job(rows[0]) if rows else None

    def expire_jobs(self) -> list[JobRecord]:
        now = time.time()
        if not self._query("SELECT 1 FROM jobs WHERE active = 1 AND lease_until < ?", (now,)):
            return []  # the common case stays a read: no write lock taken every heartbeat
        expired = []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE active = 1 AND lease_until < ?", (time.time(),)
            ).fetchall()
            for row in rows:
                job = self._job(row)
                if job.active:  # a readable job: its owner died; an unreadable one says so
                    job.status, job.error = "failed", expired_reason(job)
                    job.finished_at = time.time()
                db.execute(
                    "UPDATE jobs SET active = 0, lease_until = NULL, body = ? WHERE id = ?",
                    (dump(job), job.id),
                )
                expired.append(job)
        return expired

    def set_accuracy(self, model: str, result: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO accuracy VALUES (?, ?) ON CONFLICT (model) "
                "DO UPDATE SET result = excluded.result",
                (model, json.dumps(result)),
            )

    def get_accuracy(self, model: str) -> dict[str, Any] | None:
        rows = self._query("SELECT result FROM accuracy WHERE model = ?", (model,))
        if not rows:
            return None
        try:
            return fields_of(rows[0]["result"])
        except Malformed as exc:
            self.skip(f"accuracy/{model}", exc)
            return None
