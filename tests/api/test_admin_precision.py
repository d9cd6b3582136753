"""POST /admin/models/{name}/precision: a candidate measured against float32 on the model's
evaluation set, promoted (every process switches, the job says converged) only when its accuracy
holds; 400 at submit for what the device cannot run or the request gets wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import torch

from app.config import Settings
from app.serving import precision
from tests.helpers.apps import admin_headers, running_app
from tests.helpers.weights import fashion_checkpoints

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


async def test_lstm_int8_is_judged_on_the_test_split_and_held_to_its_tolerance(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(models=("lstm",))) as client:
        # on the whole test split int8 gets four more images wrong than float32 (0.9220 against
        # 0.9224 with the committed checkpoint): refused at zero tolerance, kept at float32
        refused = await _trial(client, "lstm", dtype="int8_dynamic", max_accuracy_drop=0.0)
        assert refused["n"] == 10_000 and refused["promoted"] is False
        assert refused["candidate"]["accuracy"] < refused["baseline"]["accuracy"]
        assert (await _model(client, "lstm"))["dtype"] == "float32"
        passed = await _trial(client, "lstm", dtype="int8_dynamic", limit=1000)
        assert passed["promoted"] is True and passed["drop"] <= 0.005
        assert passed["promotion"]["converged"] is True
        assert [p["ok"] for p in passed["promotion"]["processes"]] == [True]
        assert (await _model(client, "lstm"))["dtype"] == "int8_dynamic"
        runtime = client.app_state.registry.runtime("lstm")  # type: ignore[attr-defined]
        assert type(runtime.forward._reduced.lstm).__module__.startswith("torch.ao.nn.quantized")
        rows = {"inputs": [[[0.1] * 28] * 28], "top_k": 3}
        answer = await client.post("/v1/models/lstm/predict", json=rows)
        assert answer.status_code == 200 and len(answer.json()["predictions"][0]) == 3
        metrics = (await client.get("/metrics")).text
        assert 'torchgate_inferences_total{model="lstm",precision="int8_dynamic"} 1.0' in metrics


async def test_the_gan_is_judged_by_the_cnns_consistency_on_its_samples(
    settings_factory: Callable[..., Settings], tmp_path_factory: pytest.TempPathFactory
) -> None:
    checkpoints = fashion_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    settings = settings_factory(models=("cnn", "gan"), checkpoint_dir=checkpoints)
    async with running_app(settings) as client:
        # 200 images per class: the cnn judges six more int8 images wrong than float32's (with
        # the committed checkpoints; bfloat16 holds on 500, so it shows the pass)
        refused = await _trial(
            client, "gan", dtype="int8_dynamic", max_accuracy_drop=0.0, limit=2000
        )
        assert refused["metric"] == "consistency" and refused["n"] == 2000
        assert refused["judge"]["model"] == "cnn" and "judged by cnn" in refused["dataset"]
        assert refused["candidate"]["consistency"] < refused["baseline"]["consistency"]
        assert len(refused["candidate"]["per_class_consistency"]) == 10
        assert refused["promoted"] is False
        passed = await _trial(client, "gan", dtype="bfloat16", max_accuracy_drop=0.01, limit=500)
        assert passed["promoted"] is True and passed["promotion"]["converged"] is True
        described = await _model(client, "gan")
        assert described["dtype"] == "bfloat16"
        assert described["precision_accuracy"]["metric"] == "consistency"
        generated = await client.post(
            "/v1/models/gan/generate", json={"n": 2, "seed": 1, "format": "json"}
        )
        assert generated.status_code == 200 and len(generated.json()["images"]) == 2
        assert (await _model(client, "cnn"))["dtype"] == "float32"  # the judge is untouched


async def test_reinitialize_draws_in_float32_then_converts_and_reload_keeps_the_precision(
    settings_factory: Callable[..., Settings],
) -> None:
    plan = {"scheme": "normal", "std": 0.05, "seed": 7}
    async with running_app(settings_factory(models=("cnn",))) as client:
        float32 = await client.post(
            "/admin/models/cnn/reinitialize", json=plan, headers=admin_headers()
        )
        original = await client.post("/admin/models/cnn/reload", headers=admin_headers())
        promoted = await _trial(client, "cnn", dtype="bfloat16", max_accuracy_drop=1.0, limit=100)
        assert promoted["promoted"] is True
        again = await client.post(
            "/admin/models/cnn/reinitialize", json=plan, headers=admin_headers()
        )
        assert again.status_code == 200 and again.json()["converged"] is True
        # the same seed gives the same float32 draw, whatever precision serves it
        assert again.json()["parameters_sha256"] == float32.json()["parameters_sha256"]
        assert (await _model(client, "cnn"))["dtype"] == "bfloat16"
        runtime = client.app_state.registry.runtime("cnn")  # type: ignore[attr-defined]
        reduced = runtime.forward._reduced
        master = dict(runtime.module.named_parameters())
        for name, parameter in reduced.named_parameters():
            assert parameter.dtype.is_floating_point and str(parameter.dtype) == "torch.bfloat16"
            assert torch.equal(parameter, master[name].to(parameter.dtype))
        reloaded = await client.post("/admin/models/cnn/reload", headers=admin_headers())
        assert reloaded.json()["parameters_sha256"] == original.json()["parameters_sha256"]
        assert (await _model(client, "cnn"))["dtype"] == "bfloat16"
        back = await _trial(client, "cnn", dtype="float32", max_accuracy_drop=0.0, limit=100)
        assert back["promoted"] is True and back["agreement"] == 1.0
        assert (await _model(client, "cnn"))["dtype"] == "float32"
        assert runtime.forward._reduced is None


async def test_what_cannot_run_is_refused_at_submit(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_app(settings_factory(models=("cnn",))) as client:
        url = _url("cnn")
        assert (await client.post(url, json={"dtype": "bfloat16"})).status_code == 401
        for body in (
            {"dtype": "float64"},
            {"dtype": "bfloat16", "max_accuracy_drop": -0.1},
            {"dtype": "bfloat16", "max_accuracy_drop": "a lot"},
            {"dtype": "bfloat16", "surprise": 1},
            {},
        ):
            answer = await client.post(url, json=body, headers=admin_headers())
            assert answer.status_code == 422, body
            assert answer.headers["content-type"] == "application/json"
            assert "detail" in answer.json()
        missing = await client.post(
            _url("nope"), json={"dtype": "bfloat16"}, headers=admin_headers()
        )
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]

        precision._runs.cache_clear()  # a CPU without AVX512-BF16/FP16: the probe says so
        monkeypatch.setattr(precision, "_native_cpu", lambda dtype: False)
        for dtype in ("bfloat16", "float16"):
            answer = await client.post(url, json={"dtype": dtype}, headers=admin_headers())
            assert answer.status_code == 400
            assert f"no native {dtype} instructions" in answer.json()["detail"]
        assert (
            await client.post(
                url, json={"dtype": "int8_dynamic", "limit": 100}, headers=admin_headers()
            )
        ).status_code == 202
        precision._runs.cache_clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
async def test_a_gpu_promotes_half_precisions_and_refuses_int8(
    settings_factory: Callable[..., Settings], dtype: str
) -> None:
    if precision.unsupported(torch.device("cuda"), dtype) is not None:
        pytest.skip(f"this GPU cannot run {dtype}")
    async with running_app(settings_factory(models=("cnn",), device="cuda")) as client:
        result = await _trial(client, "cnn", dtype=dtype, max_accuracy_drop=0.005)
        assert result["promoted"] is True and result["agreement"] > 0.99
        assert (await _model(client, "cnn"))["dtype"] == dtype
        answer = await client.post("/v1/models/cnn/predict", json={"inputs": [[[[0.0] * 28] * 28]]})
        assert answer.status_code == 200
        refused = await client.post(
            _url("cnn"), json={"dtype": "int8_dynamic"}, headers=admin_headers()
        )
        assert refused.status_code == 400 and "CPU only" in refused.json()["detail"]
