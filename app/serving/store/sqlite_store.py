"""The embedded control store: one SQLite file in WAL mode, shared by the processes of a host
(the connection and its watcher are ``sqlite_base``; jobs and accuracy ``sqlite_jobs``)."""

from __future__ import annotations

import json
import sqlite3
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
)
from app.serving.store.sqlite_jobs import SqliteJobs


def _record(row: sqlite3.Row) -> ParameterRecord:
    return decode_record(
        row["model"],
        row["version"],
        lambda: {**dict(row), "args": json.loads(row["args"])},
        op=str(row["op"]),
    )


class SqliteStore(SqliteJobs):
    """``sqlite:///path/to/file`` (shared), or ``sqlite://`` in memory (one process only)."""

    # -- parameter records -------------------------------------------------------------

    def append_record(
        self, model: str, op: Operation, args: dict[str, Any], origin: str, floor: int
    ) -> ParameterRecord:
        with self._transaction() as db:
            row = db.execute("SELECT version FROM counters WHERE model = ?", (model,)).fetchone()
            current = row["version"] if row else INITIAL_VERSION
            version = max(current, floor, INITIAL_VERSION) + 1
            db.execute(
                "INSERT INTO counters (model, version) VALUES (?, ?) "
                "ON CONFLICT (model) DO UPDATE SET version = excluded.version",
                (model, version),
            )
            record = ParameterRecord(model, version, op, args, origin, time.time())
            db.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                (model, version, op, json.dumps(args), origin, record.created_at),
            )
        return record

    def records_after(self, model: str, version: int) -> list[ParameterRecord]:
        rows = self._query(
            "SELECT * FROM records WHERE model = ? AND version > ? ORDER BY version",
            (model, version),
        )
        return [_record(row) for row in rows]

    def catch_up_records(self, model: str) -> list[ParameterRecord]:
        rows = self._query(
            "SELECT * FROM records WHERE model = ? AND version >= COALESCE((SELECT MAX(version)"
            " FROM records WHERE model = ? AND op = 'reload'), 0) ORDER BY version",
            (model, model),
        )
        return [_record(row) for row in rows]

    def mark_record_failed(self, failed: FailedRecord) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO failed_records VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (failed.model, failed.version, dump(failed)),
            )

    def failed_records(self, model: str) -> list[FailedRecord]:
        rows = self._query(
            "SELECT version, body FROM failed_records WHERE model = ? "
            "ORDER BY version DESC LIMIT ?",
            (model, FAILED_RECORDS_SHOWN),
        )
        found = []
        for row in reversed(rows):
            try:
                found.append(decode_failed(row["body"]))
            except Malformed as exc:
                self.skip(f"failed_records/{model}/{row['version']}", exc)
        return found

    # -- processes ---------------------------------------------------------------------

    def heartbeat(self, info: ProcessInfo) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO processes VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "info = excluded.info, heartbeat_at = excluded.heartbeat_at",
                (info.process_id, dump(info), info.heartbeat_at),
            )

    def live_processes(self) -> list[ProcessInfo]:
        since = time.time() - self.process_timeout_s
        rows = self._query(
            "SELECT id, info FROM processes WHERE heartbeat_at >= ? ORDER BY id", (since,)
        )
        live = []
        for row in rows:
            try:
                live.append(decode_process(row["info"]))
            except Malformed as exc:
                self.skip(f"processes/{row['id']}", exc)
        return live

    def remove_process(self, process_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM processes WHERE id = ?", (process_id,))
            db.execute("DELETE FROM applied WHERE process_id = ?", (process_id,))

    def report_applied(self, report: AppliedReport) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO applied VALUES (?, ?, ?) ON CONFLICT (model, process_id) "
                "DO UPDATE SET report = excluded.report",
                (report.model, report.process_id, dump(report)),
            )

    def applied(self, model: str) -> dict[str, AppliedReport]:
        rows = self._query("SELECT process_id, report FROM applied WHERE model = ?", (model,))
        reports = {}
        for row in rows:
            try:
                reports[row["process_id"]] = decode_report(row["report"])
            except Malformed as exc:
                self.skip(f"applied/{model}/{row['process_id']}", exc)
        return reports
