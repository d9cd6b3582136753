"""Device faults (CUDA out-of-memory) are survived: retried in halves, else a clean 503.

There is no GPU here, so the fault is injected into the forward; the recovery path (empty the
cache, split the batch, answer 503 for an item that still fails) is the same code."""

import asyncio
from collections.abc import Callable

import pytest
import torch

from app.config import Settings
from app.serving.forward import ModelForward
from tests.conftest import image_bytes, running_app

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
