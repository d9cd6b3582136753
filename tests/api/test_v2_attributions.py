"""The Open Inference Protocol's ``attributions`` output (v2 REST): declared in the model
metadata, sent only on request, the same numbers as v1's explain, and refused clearly when
misused."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.helpers.images import garment_png

pytestmark = pytest.mark.anyio


def _request(x: np.ndarray, outputs: list[dict]) -> dict:
    tensor = {
        "name": "input",
        "shape": list(x.shape),
        "datatype": "FP32",
        "data": x.ravel().tolist(),
    }
    return {"inputs": [tensor], "outputs": outputs}


def _output(body: dict, name: str) -> np.ndarray:
    (output,) = [o for o in body["outputs"] if o["name"] == name]
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])


async def test_metadata_declares_attributions_for_classifiers_only(
    v2_client: httpx.AsyncClient,
) -> None:
    shapes = {}
    for name in ("cnn", "lstm", "alexnet", "gan"):
        metadata = (await v2_client.get(f"/v2/models/{name}")).json()
        outputs = {o["name"]: o for o in metadata["outputs"]}
        shapes[name] = outputs.get("attributions", {}).get("shape")
        if "attributions" in outputs:
            assert outputs["attributions"]["datatype"] == "FP32"
    assert shapes == {
        "cnn": [-1, 1, 28, 28],
        "lstm": [-1, -1, 28],
        "alexnet": [-1, 3, -1, -1],
        "gan": None,
    }


async def test_attributions_come_on_request_with_the_explanations_numbers(
    v2_client: httpx.AsyncClient,
) -> None:
    x = np.random.default_rng(3).normal(size=(2, 1, 28, 28)).astype(np.float32)
    plain = (await v2_client.post("/v2/models/cnn/infer", json=_request(x, []))).json()
    assert [o["name"] for o in plain["outputs"]] == ["probabilities"]  # not unless asked
    outputs = [
        {"name": "probabilities"},
        {"name": "attributions", "parameters": {"method": "integrated_gradients", "steps": 16}},
        {"name": "labels", "parameters": {"top_k": 1}},
    ]
    response = await v2_client.post("/v2/models/cnn/infer", json=_request(x, outputs))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [o["name"] for o in body["outputs"]] == ["probabilities", "attributions", "labels"]
    attributions = _output(body, "attributions")
    assert attributions.shape == x.shape
    np.testing.assert_allclose(
        _output(body, "probabilities"), _output(plain, "probabilities"), atol=1e-5
    )
    v1 = (
        await v2_client.post(
            "/v1/models/cnn/explain", json={"inputs": x.tolist()}, params={"steps": 16}
        )
    ).json()
    expected = np.array([item["attributions"] for item in v1["explanations"]], dtype=np.float32)
    np.testing.assert_allclose(attributions, expected, rtol=1e-5, atol=1e-6)
    assert body["parameters"]["parameters_version"] == v1["parameters_version"]
    assert body["parameters"]["parameters_sha256"] == v1["parameters_sha256"]


async def test_a_target_and_an_image_input_work_too(v2_client: httpx.AsyncClient) -> None:
    image = {
        "name": "image",
        "shape": [1],
        "datatype": "BYTES",
        "data": [base64.b64encode(garment_png()).decode()],
    }
    outputs = [{"name": "attributions", "parameters": {"method": "saliency", "target": 3}}]
    response = await v2_client.post(
        "/v2/models/lstm/infer", json={"inputs": [image], "outputs": outputs}
    )
    assert response.status_code == 200, response.text
    attributions = _output(response.json(), "attributions")
    assert attributions.shape == (1, 28, 28)
    v1 = await v2_client.post(
        "/v1/models/lstm/explain",
        content=garment_png(),
        headers={"Content-Type": "image/png"},
        params={"method": "saliency", "target": 3},
    )
    (item,) = v1.json()["explanations"]
    assert item["target"] == 3
    np.testing.assert_allclose(attributions[0], item["attributions"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("model", "outputs", "message"),
    [
        ("cnn", [{"name": "attributions", "parameters": {"steps": 300}}], "steps must be between"),
        ("cnn", [{"name": "attributions", "parameters": {"method": "lime"}}], "method must be"),
        ("lstm", [{"name": "attributions", "parameters": {"method": "gradcam"}}], "gradcam"),
        ("cnn", [{"name": "probabilities", "parameters": {"steps": 8}}], "apply to output"),
        ("gan", [{"name": "attributions"}], "no output 'attributions'"),
    ],
)
async def test_misused_attributions_are_400(
    v2_client: httpx.AsyncClient, model: str, outputs: list, message: str
) -> None:
    if model == "gan":
        body = {
            "inputs": [
                {"name": "latent", "shape": [1, 100], "datatype": "FP32", "data": [0.0] * 100},
                {"name": "label", "shape": [1], "datatype": "INT64", "data": [1]},
            ],
            "outputs": outputs,
        }
    else:
        shape = (1, 1, 28, 28) if model == "cnn" else (1, 28, 28)
        body = _request(np.zeros(shape, np.float32), outputs)
    response = await v2_client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_request_parameters_need_the_attributions_output(
    v2_client: httpx.AsyncClient,
) -> None:
    body = {**_request(np.zeros((1, 1, 28, 28), np.float32), []), "parameters": {"steps": 8}}
    response = await v2_client.post("/v2/models/cnn/infer", json=body)
    assert response.status_code == 400
    assert "apply to the 'attributions' output" in response.json()["error"]
