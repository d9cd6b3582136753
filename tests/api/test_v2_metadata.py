"""GET /v2, health, model metadata and readiness; v2 traffic in /metrics; v2 in OpenAPI."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import __version__

pytestmark = pytest.mark.anyio


async def test_server_metadata_and_health(v2_client) -> None:
    metadata = await v2_client.get("/v2")
    assert metadata.status_code == 200
    assert metadata.json() == {
        "name": "torchgate",
        "version": __version__,
        "extensions": ["binary_tensor_data", "classification"],
    }
    live = await v2_client.get("/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}
    ready = await v2_client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def _tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


@pytest.mark.parametrize(
    ("name", "inputs", "outputs"),
    [
        (
            "cnn",
            [_tensor("input", "FP32", [-1, 1, 28, 28]), _tensor("image", "BYTES", [-1])],
            [
                _tensor("probabilities", "FP32", [-1, 10]),
                _tensor("labels", "BYTES", [-1, -1]),
                _tensor("attributions", "FP32", [-1, 1, 28, 28]),
            ],
        ),
        (
            "lstm",
            [_tensor("input", "FP32", [-1, -1, 28]), _tensor("image", "BYTES", [-1])],
            [
                _tensor("probabilities", "FP32", [-1, 10]),
                _tensor("labels", "BYTES", [-1, -1]),
                _tensor("attributions", "FP32", [-1, -1, 28]),
            ],
        ),
        (
            "alexnet",
            [_tensor("input", "FP32", [-1, 3, 224, 224]), _tensor("image", "BYTES", [-1])],
            [
                _tensor("probabilities", "FP32", [-1, 1000]),
                _tensor("labels", "BYTES", [-1, -1]),
                _tensor("attributions", "FP32", [-1, 3, -1, -1]),
            ],
        ),
        (
            "gan",
            [_tensor("latent", "FP32", [-1, 100]), _tensor("label", "INT64", [-1])],
            [_tensor("image", "FP32", [-1, 1, 28, 28])],
        ),
    ],
)
async def test_model_metadata_describes_its_tensors(
    v2_client, name: str, inputs: list, outputs: list
) -> None:
    for path in (f"/v2/models/{name}", f"/v2/models/{name}/versions/1"):
        response = await v2_client.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "name": name,
            "versions": ["1"],
            "platform": "pytorch",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {"dtype": "float32"},
        }


async def test_model_readiness_follows_the_model_status(v2_client) -> None:
    for path in ("/v2/models/cnn/ready", "/v2/models/cnn/versions/1/ready"):
        response = await v2_client.get(path)
        assert response.status_code == 200 and response.json() == {"name": "cnn", "ready": True}
    unavailable = await v2_client.get("/v2/models/vgg16/ready")
    assert unavailable.status_code == 503
    assert unavailable.json() == {"name": "vgg16", "ready": False}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v2/models/nope", 404, "no model named 'nope'"),
        ("/v2/models/resnet101", 404, "not enabled"),
        ("/v2/models/vgg16", 409, "unavailable"),
        ("/v2/models/cnn/versions/7", 404, "no version '7'"),
        ("/v2/models/cnn/versions/7/ready", 404, "no version '7'"),
        ("/v2/models/nope/ready", 404, "no model named"),
        ("/v2/repository/index", 404, "Not Found"),
    ],
)
async def test_metadata_errors_have_an_error_field(
    v2_client, path: str, status: int, message: str
) -> None:
    response = await v2_client.get(path)
    assert response.status_code == status
    assert message in response.json()["error"]


def _requests(text: str, code: str) -> float:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return sum(
        s.value
        for s in families["torchgate_http_requests"].samples
        if s.name == "torchgate_http_requests_total"
        and s.labels
        == {
            "model": "cnn",
            "route": "/v2/models/{name}/infer",
            "method": "POST",
            "code": code,
        }
    )


async def test_metrics_count_v2_inference_by_status(v2_client) -> None:
    before = (await v2_client.get("/metrics")).text
    good = {
        "inputs": [
            {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
        ]
    }
    for _ in range(3):
        assert (await v2_client.post("/v2/models/cnn/infer", json=good)).status_code == 200
    bad = await v2_client.post("/v2/models/cnn/infer", json={"inputs": []})
    assert bad.status_code == 400
    after = (await v2_client.get("/metrics")).text
    assert _requests(after, "200") - _requests(before, "200") == 3
    assert _requests(after, "400") - _requests(before, "400") == 1
    families = {f.name: f for f in text_string_to_metric_families(after)}
    batches = [
        s.value
        for s in families["torchgate_batch_size"].samples
        if s.name == "torchgate_batch_size_count" and s.labels["model"] == "cnn"
    ]
    assert batches and batches[0] >= 3
    assert "torchgate_gpu_memory_allocated_bytes" not in families  # CPU: no GPU series


async def test_openapi_documents_the_v2_inference_body(v2_client) -> None:
    spec = (await v2_client.get("/openapi.json")).json()
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert "$ref" not in str(schema)
    assert schema["properties"]["inputs"]["items"]["properties"]["datatype"]["type"] == "string"
    assert "application/octet-stream" in infer["responses"]["200"]["content"]
