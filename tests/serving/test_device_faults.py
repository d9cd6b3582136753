"""Device faults are survived: an allocation failure is retried in halves, else a clean 503;
a sticky CUDA error takes the process out of service (503, /readyz failed) with the reason.

There is no GPU here, so the fault is injected into the forward; the recovery path (classify,
empty the cache, split the batch, answer 503, mark the device lost) is the same code."""

import asyncio
from collections.abc import Callable

import pytest
import torch

from app.config import Settings
from app.serving.forward import ModelForward
from tests.helpers.apps import running_app
from tests.helpers.images import image_bytes

pytestmark = pytest.mark.anyio


async def _predict_many(client, count: int) -> list:
    data = image_bytes((96, 96))
    return await asyncio.gather(
        *(
            client.post(
                "/v1/models/alexnet/predict", content=data, headers={"content-type": "image/jpeg"}
            )
            for _ in range(count)
        )
    )


async def test_out_of_memory_batches_are_retried_in_halves(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = ModelForward.run
    sizes: list[int] = []

    def run_small_only(self, columns, postprocess=True):  # type: ignore[no-untyped-def]
        sizes.append(columns[0].shape[0])
        if columns[0].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_run(self, columns, postprocess)

    async with running_app(settings_factory(max_batch_delay_ms={"*": 50.0})) as client:
        monkeypatch.setattr(ModelForward, "run", run_small_only)
        responses = await _predict_many(client, 8)
        assert [r.status_code for r in responses] == [200] * 8
        assert max(sizes) > 2  # a big batch was tried, failed and was split
        monkeypatch.setattr(ModelForward, "run", real_run)
        assert (await _predict_many(client, 1))[0].status_code == 200


async def test_an_item_that_still_fails_gets_503_and_the_server_survives(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = ModelForward.run

    def always_oom(self, columns, postprocess=True):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    async with running_app(settings_factory()) as client:
        monkeypatch.setattr(ModelForward, "run", always_oom)
        responses = await _predict_many(client, 3)
        assert [r.status_code for r in responses] == [503] * 3
        assert "out of memory" in responses[0].json()["detail"]
        assert responses[0].headers["Retry-After"] == "1"
        monkeypatch.setattr(ModelForward, "run", real_run)
        assert (await _predict_many(client, 2))[0].status_code == 200


async def test_library_allocation_failures_are_503_not_422(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """cuDNN and cuBLAS report a failed allocation as a RuntimeError, like a bad input would."""
    real_run = ModelForward._run
    messages = iter(["cuDNN error: CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED"] * 99)

    def alloc_failure(self, columns, postprocess):  # type: ignore[no-untyped-def]
        raise RuntimeError(next(messages))

    async with running_app(settings_factory(max_batch_delay_ms={"*": 50.0})) as client:
        monkeypatch.setattr(ModelForward, "_run", alloc_failure)
        responses = await _predict_many(client, 4)
        assert [r.status_code for r in responses] == [503] * 4
        assert "ran out of memory" in responses[0].json()["detail"]
        assert "ALLOC_FAILED" in responses[0].json()["detail"]
        monkeypatch.setattr(ModelForward, "_run", real_run)
        assert (await _predict_many(client, 1))[0].status_code == 200
        assert (await client.get("/readyz")).status_code == 200  # transient: still ready


async def test_a_sticky_cuda_error_takes_the_process_out_of_service(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def illegal_access(self, columns, postprocess):  # type: ignore[no-untyped-def]
        calls.append(columns[0].shape[0])
        raise RuntimeError(
            "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
            "asynchronously reported at some other API call"
        )

    async with running_app(settings_factory(max_batch_delay_ms={"*": 50.0})) as client:
        monkeypatch.setattr(ModelForward, "_run", illegal_access)
        responses = await _predict_many(client, 3)
        assert [r.status_code for r in responses] == [503] * 3
        assert "illegal memory access" in responses[0].json()["detail"]
        assert len(calls) < 3 or calls == [1, 1, 1]  # a lost device is not retried in halves
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed"
        assert "illegal memory access" in ready.json()["detail"]
        assert "restarted" in ready.json()["detail"]
        assert (await client.get("/v2/health/ready")).status_code == 503
        model = (await client.get("/v1/models/alexnet")).json()
        assert model["status"] == "error" and "illegal memory access" in model["reason"]
        calls.clear()
        again = await _predict_many(client, 1)
        assert again[0].status_code == 503  # refused before reaching the device
        assert "illegal memory access" in again[0].json()["detail"]
        assert calls == []
        # only a restart brings the device back: the liveness probes ask for one
        live = await client.get("/healthz")
        assert live.status_code == 503 and live.json()["status"] == "failed"
        assert "illegal memory access" in live.json()["detail"]
        v2_live = await client.get("/v2/health/live")
        assert v2_live.status_code == 503 and v2_live.json() == {"live": False}
