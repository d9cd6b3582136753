"""How the stores write their entries (JSON), and what a damaged one becomes when read.

One entry that does not decode (a bug, a hand edit, a newer version's field) must never stop
the processes that read it: a parameter record becomes one that says why it cannot be applied
(so it is applied as failed, and later records go on), and the other entries raise
``Malformed``, which the stores turn into a skipped entry (``ControlStore.skip``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from app.serving.store.base import (
    AppliedReport,
    FailedRecord,
    JobRecord,
    ParameterRecord,
    ProcessInfo,
)

T = TypeVar("T")


class Malformed(ValueError):
    """A stored entry that does not decode into what it should be."""


def dump(item: AppliedReport | FailedRecord | JobRecord | ProcessInfo) -> str:
    return json.dumps(asdict(item))


def fields_of(body: str | bytes | None) -> dict[str, Any]:
    """The JSON object ``body`` holds; ``Malformed`` (saying why) for anything else."""
    try:
        fields = json.loads(body or "")
    except (TypeError, ValueError) as exc:
        raise Malformed(f"not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(fields, dict):
        raise Malformed(f"a JSON {type(fields).__name__}, not an object")
    return fields


def _build(kind: Callable[..., T], fields: dict[str, Any]) -> T:
    try:
        return kind(**fields)
    except TypeError as exc:
        raise Malformed(f"not a {getattr(kind, '__name__', kind)} ({exc})") from None


def decode_process(body: str | None) -> ProcessInfo:
    fields = fields_of(body)
    if not isinstance(fields.get("models"), list | tuple):
        raise Malformed("its 'models' is not a list")
    return _build(ProcessInfo, {**fields, "models": tuple(fields["models"])})


def decode_report(body: str | None) -> AppliedReport:
    return _build(AppliedReport, fields_of(body))


def decode_job(body: str | None) -> JobRecord:
    return _build(JobRecord, fields_of(body))


def decode_failed(body: str | None) -> FailedRecord:
    return _build(FailedRecord, fields_of(body))


def decode_record(
    model: str, version: int, read: Callable[[], dict[str, Any]], op: str = "unknown"
) -> ParameterRecord:
    """The record ``read()`` gives, or one whose ``problem`` says why it cannot be read
    (``op``: the operation as far as it is known without decoding)."""
    try:
        fields = read()
        args = fields["args"]
        if not isinstance(args, dict):
            raise Malformed(f"its args are a JSON {type(args).__name__}, not an object")
        return ParameterRecord(
            model=model,
            version=version,
            op=str(fields["op"]),
            args=args,
            origin=str(fields.get("origin", "")),
            created_at=float(fields.get("created_at", 0.0)),
        )
    except Exception as exc:  # any damage: the record is applied as failed, never raised
        error = str(exc) if isinstance(exc, Malformed) else f"{type(exc).__name__}: {exc}"
        problem = f"the stored record cannot be read: {error}"
        return ParameterRecord(model, version, op, {}, "", 0.0, problem=problem)


def unreadable_job(
    job_id: str, error: str, kind: str = "unknown", model: str = "unknown"
) -> JobRecord:
    """What a job whose stored entry does not decode is shown (and ended) as."""
    now = time.time()
    return JobRecord(
        id=job_id,
        kind=kind,
        model=model,
        owner="unknown",
        status="failed",
        error=f"the stored entry of job {job_id} cannot be read ({error}); it was ended "
        "so that its model's slot is free. Start the job again.",
        created_at=now,
        finished_at=now,
    )
