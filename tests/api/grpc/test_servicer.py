"""The servicer's own decisions, without a server: what ServerLive says after a device loss
or a stalled parameter sync."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.servicer import InferenceServicer
from app.config import Settings

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("failure", "live"),
    [(None, True), ("CUDA error: lost", False), ("the control-store sync loop stalled", False)],
)
async def test_server_live_is_false_once_the_process_needs_a_restart(
    failure: str | None, live: bool
) -> None:
    registry = SimpleNamespace(liveness_failure=failure)
    servicer = InferenceServicer(registry, Settings())  # type: ignore[arg-type]
    assert (await servicer.ServerLive(pb.ServerLiveRequest(), None)).live is live  # type: ignore[arg-type]
