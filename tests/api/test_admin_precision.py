"""POST /admin/models/{name}/precision: a candidate measured against float32 on the model's
evaluation set, promoted (every process switches, the job says converged) only when its accuracy
holds; 400 at submit for what the device cannot run or the request gets wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.helpers.apps import admin_headers, running_app

pytestmark = pytest.mark.anyio


def _url(name: str) -> str:
    return f"/admin/models/{name}/precision"


async def _finished(client: httpx.AsyncClient, started: httpx.Response) -> dict[str, Any]:
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    for _ in range(2400):
        job = (await client.get(f"/admin/jobs/{job_id}", headers=admin_headers())).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return job["result"]
        await asyncio.sleep(0.05)
    raise AssertionError("the precision trial did not finish in time")


async def _trial(client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    return await _finished(
        client, await client.post(_url(name), json=body, headers=admin_headers())
    )


async def _model(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    answer = await client.get(f"/v1/models/{name}")
    assert answer.status_code == 200
    return answer.json()


async def test_cnn_bf16_within_tolerance_is_promoted_and_a_drop_at_zero_is_refused(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(models=("cnn",))) as client:
        refused = await _trial(client, "cnn", dtype="bfloat16", max_accuracy_drop=0.0)
        assert refused["metric"] == "accuracy" and refused["n"] == 10_000
        base, cand = refused["baseline"], refused["candidate"]
        assert cand["accuracy"] < base["accuracy"]  # bf16 really drops on the full split
        assert refused["promoted"] is False and "more than 0" in refused["reason"]
        assert len(cand["per_class_accuracy"]) == 10 and 0.99 < refused["agreement"] < 1
        assert base["images_per_second"] > 0 and cand["images_per_second"] > 0
        assert (await _model(client, "cnn"))["dtype"] == "float32"

        passed = await _trial(client, "cnn", dtype="bfloat16", max_accuracy_drop=0.005)
        assert passed["promoted"] is True and passed["promotion"]["converged"] is True
        described = await _model(client, "cnn")
        assert described["dtype"] == "bfloat16"
        assert described["precision_accuracy"]["accuracy"] == passed["candidate"]["accuracy"]
        assert described["parameters_version"] == passed["promotion"]["parameters_version"]
