"""The control store: what every serving process of one service shares.

Parameter changes are ordered records per model (the store assigns their versions), each
process reports what it applied and heartbeats, and evaluation jobs with their leases live
here too. Only admin calls and the background sync touch it, never the request path.
Implementations are synchronous (sqlite3, redis-py); async code calls them in a thread.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import Conflict, Unavailable

Operation = Literal["reinitialize", "reload"]
INITIAL_VERSION = 1  # the parameters as loaded from their source, before any record


class StoreUnavailable(Unavailable):
    """The control store cannot be reached: parameter changes and jobs wait for it."""

    retry_after_s = 2


class JobConflict(Conflict):
    """A job of this kind already runs for the model."""


@dataclass(frozen=True)
class ParameterRecord:
    """One parameter change, applied by every process in version order.

    ``args`` holds everything needed to repeat it byte for byte: a reinitialize's scheme,
    its numbers and its seed (picked by the accepting process when the client gave none)."""

    model: str
    version: int
    op: Operation
    args: dict[str, Any]
    origin: str
    created_at: float


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
    status: str = "queued"  # queued | running | succeeded | failed
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
    def update_job(self, job: JobRecord) -> None:
        """Write the owner's view of the job (progress, status, result) and renew its lease
        for ``job_lease_s``; a finished job releases the kind/model slot."""

    @abstractmethod
    def get_job(self, job_id: str) -> JobRecord | None: ...

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


def expired_reason(job: JobRecord) -> str:
    return (
        f"the process that ran this job ({job.owner}) stopped renewing its lease; "
        "it probably died. Start the evaluation again."
    )
