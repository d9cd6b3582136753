"""One parameter record applied to one model's runtime, or refused when no process could
apply it (so every process reports the same failure, and later records go on)."""

from __future__ import annotations

from typing import Any

from app.serving.precision import PRECISIONS
from app.serving.reinit import SCHEMES, InitPlan
from app.serving.runtime import ModelRuntime
from app.serving.store import ParameterRecord


class UnusableRecord(ValueError):
    """A record no process can apply: unreadable, an unknown operation, or bad arguments."""


async def apply_record(runtime: ModelRuntime, record: ParameterRecord) -> None:
    """Apply ``record`` to ``runtime``; ``UnusableRecord`` when no process could."""
    if record.problem is not None:
        raise UnusableRecord(record.problem)
    if record.op == "reinitialize":
        await runtime.reinitialize(_plan(record), record.version)
    elif record.op == "reload":
        await runtime.reload(record.version)
    elif record.op == "precision":
        dtype, measured = _precision(record)
        await runtime.set_precision(dtype, measured, record.version)
    else:
        raise UnusableRecord(
            f"unknown operation {record.op!r} (known: reinitialize, reload, precision)"
        )


def _precision(record: ParameterRecord) -> tuple[str, dict[str, Any] | None]:
    """The promoted dtype and what it was measured at (a promotion judged by one process is
    applied as is by every other: the measurement is not repeated)."""
    dtype, measured = record.args.get("dtype"), record.args.get("measured")
    if dtype not in PRECISIONS:
        raise UnusableRecord(f"unknown dtype {dtype!r} (known: {', '.join(PRECISIONS)})")
    if measured is not None and not isinstance(measured, dict):
        raise UnusableRecord(f"its measurement {measured!r} is not an object")
    return dtype, measured


def latest_precision(records: list[ParameterRecord], before: int) -> ParameterRecord | None:
    """The newest readable precision record below version ``before``: a precision outlives
    reloads, so a process catching up from a reload applies it first."""
    found = [r for r in records if r.op == "precision" and r.version < before and r.problem is None]
    return found[-1] if found else None


def _plan(record: ParameterRecord) -> InitPlan:
    """The record's plan; it must name a known scheme and an integer seed (without one, each
    process would draw parameters of its own)."""
    try:
        plan = InitPlan(**record.args)
    except (TypeError, ValueError) as exc:
        raise UnusableRecord(f"its arguments are not a reinitialize plan ({exc})") from None
    if plan.scheme not in SCHEMES:
        raise UnusableRecord(f"unknown scheme {plan.scheme!r} (known: {', '.join(SCHEMES)})")
    if not isinstance(plan.seed, int) or isinstance(plan.seed, bool):
        raise UnusableRecord(f"its seed {plan.seed!r} is not an integer")
    return plan
