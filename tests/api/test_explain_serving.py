"""Explanations never disturb serving: predictions byte-identical around a burst of them, no
parameter starts requiring gradients, no predict fails beside them, and an explanation that
meets a reinitialize matches exactly one parameter version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from app.config import Settings
from tests.helpers.apps import ADMIN_TOKEN, admin_headers, graphs_settled, running_app
from tests.helpers.images import garment_png
from tests.helpers.weights import fashion_checkpoints

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        models=("cnn", "lstm"),
        checkpoint_dir=fashion_checkpoints(tmp_path_factory.mktemp("explain-serving")),
        admin_token=ADMIN_TOKEN,
        device="cpu",
        grpc_port=0,
    )
    async with running_app(settings) as running:
        yield running


def _parameters_state(client: httpx.AsyncClient, name: str) -> list[tuple[str, bool, bool]]:
    module = client.app_state.registry.runtime(name).module  # type: ignore[attr-defined]
    state = [(n, p.requires_grad, p.grad is None) for n, p in module.named_parameters()]
    return [*state, ("training", module.training, True)]


async def _predict(client: httpx.AsyncClient, name: str, shade: int) -> httpx.Response:
    return await client.post(
        f"/v1/models/{name}/predict",
        files=[("file", ("g.png", garment_png(shade), "image/png"))],
        params={"top_k": 10},
    )


async def _explain(client: httpx.AsyncClient, name: str, **params: object) -> httpx.Response:
    return await client.post(
        f"/v1/models/{name}/explain",
        files=[("file", ("g.png", garment_png(7), "image/png"))],
        params=params,
    )


async def test_predictions_are_byte_identical_around_a_burst_of_explanations(
    client: httpx.AsyncClient,
) -> None:
    shades = (10, 90, 200)
    await graphs_settled(client, "cnn", "lstm")
    before = {
        (m, s): (await _predict(client, m, s)).content for m in ("cnn", "lstm") for s in shades
    }
    state = {m: _parameters_state(client, m) for m in ("cnn", "lstm")}
    assert not any(requires for _, requires, _ in state["cnn"][:-1])
    burst = [
        _explain(client, name, method=method, steps=24, baseline=baseline)
        for name in ("cnn", "lstm")
        for method in ("integrated_gradients", "saliency", "gradcam")
        for baseline in ("zeros", "blur")
        if not (name == "lstm" and method == "gradcam")
    ]
    answers = await asyncio.gather(*burst)
    assert [a.status_code for a in answers] == [200] * len(burst)
    after = {
        (m, s): (await _predict(client, m, s)).content for m in ("cnn", "lstm") for s in shades
    }
    assert after == before
    assert {m: _parameters_state(client, m) for m in ("cnn", "lstm")} == state


async def test_no_predict_fails_while_explanations_run(client: httpx.AsyncClient) -> None:
    async def predicting(shade: int) -> list[int]:
        return [(await _predict(client, "cnn", (shade + i) % 256)).status_code for i in range(10)]

    explaining = [_explain(client, "cnn", steps=128) for _ in range(4)]
    explaining += [_explain(client, "lstm", steps=64) for _ in range(2)]
    results = await asyncio.gather(*explaining, *(predicting(s) for s in range(8)))
    explained, predicted = results[: len(explaining)], results[len(explaining) :]
    assert [a.status_code for a in explained] == [200] * len(explaining)
    assert all(codes == [200] * 10 for codes in predicted)


async def _reinitialize(client: httpx.AsyncClient, seed: int) -> dict:
    response = await client.post(
        "/admin/models/lstm/reinitialize",
        json={"scheme": "normal", "std": 0.1, "seed": seed},
        headers=admin_headers(),
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_an_explanation_meeting_a_reinitialize_matches_one_version(
    client: httpx.AsyncClient,
) -> None:
    """Both orders: the swap waits in the device's queue when the explanation is queued, and
    the swap arrives while the explanation is under way (it restarts behind the swap)."""
    runtime = client.app_state.registry.runtime("lstm")  # type: ignore[attr-defined]
    params = {"steps": 256, "baseline": "blur"}
    by_version = {runtime.state.version: (await _explain(client, "lstm", **params)).json()}
    for seed in (1, 2, 3):
        explaining = asyncio.ensure_future(_explain(client, "lstm", **params))
        await asyncio.sleep(0.05 * seed)  # queued, or under way
        swapped = await _reinitialize(client, seed)
        answer = await explaining
        assert answer.status_code == 200
        body = answer.json()
        # the version it names is one that existed, and its checksum is that version's
        assert body["parameters_version"] in (
            swapped["parameters_version"] - 1,
            swapped["parameters_version"],
        )
        if body["parameters_version"] == swapped["parameters_version"]:
            assert body["parameters_sha256"] == swapped["parameters_sha256"]
        assert answer.headers["X-Model-Version"] == str(body["parameters_version"])
        # and what it says is what that version alone says about this input
        expected = by_version.get(body["parameters_version"])
        if expected is None:
            expected = (await _explain(client, "lstm", **params)).json()
            assert expected["parameters_version"] == body["parameters_version"]
        np.testing.assert_allclose(
            body["explanations"][0]["attributions"],
            expected["explanations"][0]["attributions"],
            rtol=1e-5,
            atol=1e-6,
        )
        assert body["explanations"][0]["target"] == expected["explanations"][0]["target"]
        by_version[swapped["parameters_version"]] = (
            await _explain(client, "lstm", **params)
        ).json()
    assert _parameters_state(client, "lstm")[-1] == ("training", False, True)
    assert not any(requires for _, requires, _ in _parameters_state(client, "lstm")[:-1])
