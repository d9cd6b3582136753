"""The servicer's own decisions, without a server: what ServerLive says after a device loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.servicer import InferenceServicer
from app.config import Settings

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("failure", "live"), [(None, True), ("CUDA error: lost", False)])
async def test_server_live_is_false_once_the_device_failed_beyond_repair(
    failure: str | None, live: bool
) -> None:
    registry = SimpleNamespace(device_failure=failure)
    servicer = InferenceServicer(registry, Settings())  # type: ignore[arg-type]
    assert (await servicer.ServerLive(pb.ServerLiveRequest(), None)).live is live  # type: ignore[arg-type]
