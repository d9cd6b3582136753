"""The control store: what every serving process of one service shares.

Parameter changes are ordered records per model (the store assigns their versions), each
process reports what it applied and heartbeats, and evaluation jobs with their leases live
here too. Only admin calls and the background sync touch it, never the request path.
Implementations are synchronous (sqlite3, redis-py); async code calls them in a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import Conflict, Unavailable

logger = logging.getLogger(__name__)
Operation = Literal["reinitialize", "reload", "precision"]
OPERATIONS: tuple[str, ...] = ("reinitialize", "reload", "precision")
INITIAL_VERSION = 1  # the parameters as loaded from their source, before any record
FAILED_RECORDS_SHOWN = 20  # the newest failed records of a model that answers list
_SKIPPED_KEPT = 100  # damaged entries remembered for admin answers


class StoreUnavailable(Unavailable):
    """The control store cannot be reached: parameter changes and jobs wait for it."""

    retry_after_s = 2


class JobConflict(Conflict):
    """A job of this kind already runs for the model."""


@dataclass(frozen=True)
class ParameterRecord:
    """One parameter change, applied by every process in version order.

    ``args`` holds everything needed to repeat it byte for byte: a reinitialize's scheme,
    its numbers and its seed (picked by the accepting process when the client gave none).
    ``problem`` says why a stored record cannot be read; it is then applied as failed."""

    model: str
    version: int
    op: str  # an Operation when written by this service; anything when the store was damaged
    args: dict[str, Any]
    origin: str
    created_at: float
    problem: str | None = None


@dataclass(frozen=True)
class FailedRecord:
    """A record that could not be applied (unreadable, unknown op, bad args, or applying it
    raised), as the first process that failed on it reported it; later records go on."""

    model: str
    version: int
    op: str
    error: str
    process_id: str
    failed_at: float


@dataclass(frozen=True)
class SkippedEntry:
    """A stored entry (a process, a report, a job) that does not decode and was left out."""

    key: str
    error: str
    seen_at: float


@dataclass(frozen=True)
class AppliedReport:
    """What one process serves for one model after applying a record (or failing to)."""

    process_id: str
    model: str
    version: int
    sha256: str
    ok: bool
    error: str | None
    applied_at: float


@dataclass(frozen=True)
class ProcessInfo:
    """A serving process, as its heartbeat describes it."""

    process_id: str
    models: tuple[str, ...]
    ready: bool
    started_at: float
    heartbeat_at: float = field(default_factory=time.time)


@dataclass
class JobRecord:
    """A background job (an evaluation) as every process sees it; ``owner`` runs it."""

    id: str
    kind: str
    model: str
    owner: str
    status: str = "queued"  # queued | running | succeeded | failed | cancelled
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class ControlStore(ABC):
    """One small interface over SQLite (one host) and Redis (a cluster).

    Every method raises ``StoreUnavailable`` (naming the store) when it cannot reach it."""

    def __init__(self, url: str, process_timeout_s: float, job_lease_s: float) -> None:
        self.url = url
        self.process_timeout_s = process_timeout_s
        self.job_lease_s = job_lease_s
        self._skipped: dict[str, SkippedEntry] = {}
        self._skipped_lock = threading.Lock()  # store calls run in several threads

    def skip(self, key: str, error: BaseException | str) -> None:
        """Leave a damaged entry out of an answer instead of failing the whole read: logged
        the first time (naming the key), and kept for admin answers (``skipped_since``)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._skipped_lock:
            first = self._skipped.pop(key, None) is None
            self._skipped[key] = SkippedEntry(key, text, time.time())
            while len(self._skipped) > _SKIPPED_KEPT:
                del self._skipped[next(iter(self._skipped))]
        if first:
            logger.warning("control store %s: skipping %s: %s", self.name, key, text)

    def skipped_since(self, since: float) -> list[SkippedEntry]:
        """Damaged entries this client left out of its answers since ``since`` (unix time)."""
        with self._skipped_lock:
            entries = [entry for entry in self._skipped.values() if entry.seen_at >= since]
        return sorted(entries, key=lambda entry: entry.key)

    @property
    def name(self) -> str:
        """The store as error messages name it (no password)."""
        return redact(self.url)

    # -- parameter records -------------------------------------------------------------

    @abstractmethod
    def append_record(
        self, model: str, op: Operation, args: dict[str, Any], origin: str, floor: int
    ) -> ParameterRecord:
        """Store a new record with the next version of ``model``, never at or below
        ``floor`` (the caller's current version: a store that lost its data must not hand
        out versions the processes already used)."""

    @abstractmethod
    def records_after(self, model: str, version: int) -> list[ParameterRecord]:
        """Records of ``model`` with a version above ``version``, oldest first."""

    @abstractmethod
    def catch_up_records(self, model: str) -> list[ParameterRecord]:
        """What a process that just loaded ``model`` from its source must replay: the
        latest reload record (if any) and every record after it, oldest first."""

    @abstractmethod
    def mark_record_failed(self, failed: FailedRecord) -> None:
        """Say that a record could not be applied; the first report of a version is kept."""

    @abstractmethod
    def failed_records(self, model: str) -> list[FailedRecord]:
        """The newest ``FAILED_RECORDS_SHOWN`` failed records of ``model``, oldest first."""

    # -- processes ---------------------------------------------------------------------

    @abstractmethod
    def heartbeat(self, info: ProcessInfo) -> None:
        """Say that this process is alive (it drops out after ``process_timeout_s``)."""

    @abstractmethod
    def live_processes(self) -> list[ProcessInfo]:
        """Processes that heartbeat within ``process_timeout_s``."""

    @abstractmethod
    def remove_process(self, process_id: str) -> None:
        """A process that stops cleanly leaves at once instead of timing out."""

    @abstractmethod
    def report_applied(self, report: AppliedReport) -> None:
        """Record what a process serves for a model now (one report per process and model)."""

    @abstractmethod
    def applied(self, model: str) -> dict[str, AppliedReport]:
        """The latest report of every process for ``model``, by process id."""

    # -- jobs and accuracy -------------------------------------------------------------

    @abstractmethod
    def create_job(self, job: JobRecord) -> None:
        """Add a job leased to ``job.owner``; ``JobConflict`` if one of the same kind and
        model is still active (on any process)."""

    @abstractmethod
    def update_job(self, job: JobRecord) -> bool:
        """Write the owner's view of the job (progress, status, result) and renew its lease
        for ``job_lease_s``; a finished job releases the kind/model slot. Only a job still
        active in the store is written: False when it ended meanwhile (cancelled, expired)."""

    @abstractmethod
    def cancel_job(self, job_id: str) -> JobRecord | None:
        """End an active job ``cancelled`` and free its slot at once; returns the job as it
        stands then (unchanged when it had already finished), None when there is none."""

    @abstractmethod
    def get_job(self, job_id: str) -> JobRecord | None:
        """The job; one whose stored entry does not decode comes back failed, saying so."""

    @abstractmethod
    def expire_jobs(self) -> list[JobRecord]:
        """Mark failed, with a reason, every active job whose lease ran out (its process
        died); returns them. Safe to call from every process at once."""

    @abstractmethod
    def set_accuracy(self, model: str, result: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_accuracy(self, model: str) -> dict[str, Any] | None: ...

    # -- notifications -----------------------------------------------------------------

    @abstractmethod
    def watch(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` (from a background thread) soon after anything is written by
        any process, and after a lost connection comes back."""

    @abstractmethod
    def close(self) -> None: ...


def redact(url: str) -> str:
    """``redis://:secret@host`` -> ``redis://***@host``."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def cancelled_reason(job_id: str) -> str:
    return f"cancelled by an admin (DELETE /admin/jobs/{job_id}); its model's slot is free."


def expired_reason(job: JobRecord) -> str:
    return (
        f"the process that ran this job ({job.owner}) stopped renewing its lease; "
        "it probably died. Start the evaluation again."
    )
