"""Which records no process can apply: refused with the same sentence everywhere, before the
model is touched."""

from __future__ import annotations

from typing import Any

import pytest

from app.serving.records import UnusableRecord, apply_record
from app.serving.store import ParameterRecord

pytestmark = pytest.mark.anyio


class _Runtime:
    """Remembers what it was asked to apply."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, Any]] = []

    async def reinitialize(self, plan: Any, version: int) -> None:
        self.applied.append(("reinitialize", plan))

    async def reload(self, version: int) -> None:
        self.applied.append(("reload", version))


def _record(op: str = "reinitialize", problem: str | None = None, **args: Any) -> ParameterRecord:
    return ParameterRecord("cnn", 3, op, args, "p1", 0.0, problem=problem)


@pytest.mark.parametrize(
    ("record", "says"),
    [
        (_record(problem="the stored record cannot be read: not JSON"), "cannot be read"),
        (_record("explode"), "unknown operation 'explode'"),
        (_record(seed=1, colour="red"), "not a reinitialize plan"),
        (_record(scheme="normal", std=-1.0, seed=1), "std must be greater than 0"),
        (_record(scheme="sideways", seed=1), "unknown scheme 'sideways'"),
        (_record(scheme="normal"), "seed None is not an integer"),
        (_record(scheme="normal", seed="1"), "seed '1' is not an integer"),
    ],
)
async def test_records_no_process_can_apply_are_refused_untouched(
    record: ParameterRecord, says: str
) -> None:
    runtime = _Runtime()
    with pytest.raises(UnusableRecord, match=says):
        await apply_record(runtime, record)  # type: ignore[arg-type]
    assert runtime.applied == []


async def test_valid_records_are_applied() -> None:
    runtime = _Runtime()
    await apply_record(runtime, _record(scheme="normal", seed=4))  # type: ignore[arg-type]
    await apply_record(runtime, _record("reload"))  # type: ignore[arg-type]
    assert [op for op, _ in runtime.applied] == ["reinitialize", "reload"]
    assert runtime.applied[0][1].seed == 4
