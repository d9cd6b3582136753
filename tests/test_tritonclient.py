"""A real ``python -m app serve`` driven by tritonclient.http with its default settings."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.helpers.images import assert_same_images_as_v1, image_bytes
from tests.helpers.metrics import metric_total
from tests.helpers.servers import RealServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(real_server: RealServer) -> tuple[str, Path]:
    """The server's host:port and its log file (JSON lines)."""
    return real_server.http.removeprefix("http://"), real_server.log


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server[0], network_timeout=120)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def http(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{server[0]}", timeout=60) as client:
        yield client


def _infer_input(name: str, array: np.ndarray, binary: bool = True) -> triton.InferInput:
    from tritonclient.utils import np_to_triton_dtype

    tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _v1_probabilities(http: httpx.Client, name: str, x: np.ndarray) -> np.ndarray:
    response = http.post(f"/v1/models/{name}/predict", json={"inputs": x.tolist(), "top_k": 10})
    assert response.status_code == 200, response.text
    rows = np.zeros((len(x), 10), np.float32)
    for row, predictions in zip(rows, response.json()["predictions"], strict=True):
        for p in predictions:
            row[p["index"]] = p["probability"]
    return rows


def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "torchgate"
    assert {"binary_tensor_data", "classification"} <= set(metadata["extensions"])
    assert client.is_model_ready("cnn") and client.is_model_ready("gan", "1")
    assert not client.is_model_ready("cnn", "2")
    cnn = client.get_model_metadata("cnn")
    assert cnn["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    assert cnn["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_cnn_and_lstm_answer_as_v1(client, http: httpx.Client, binary: bool) -> None:
    rng = np.random.default_rng(int(binary))
    for name, x in (
        ("cnn", rng.normal(size=(3, 1, 28, 28)).astype(np.float32)),
        ("lstm", rng.normal(size=(2, 28, 28)).astype(np.float32)),
    ):
        outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
        result = client.infer(name, [_infer_input("input", x, binary)], outputs=outputs)
        probabilities = result.as_numpy("probabilities")
        assert probabilities.dtype == np.float32 and probabilities.shape == (len(x), 10)
        np.testing.assert_allclose(probabilities, _v1_probabilities(http, name, x), atol=1e-6)
        response = result.get_response()
        assert response["model_name"] == name and response["model_version"] == "1"
        assert response["parameters"]["parameters_version"] >= 1


def test_gan_draws_what_v1_draws(client, http: httpx.Client) -> None:
    seed, n, label = 5, 3, 4
    z_dim = client.get_model_metadata("gan")["inputs"][0]["shape"][1]
    latent = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    labels = np.full(n, label, dtype=np.int64)
    result = client.infer("gan", [_infer_input("latent", latent), _infer_input("label", labels)])
    images = result.as_numpy("image")
    assert images.dtype == np.float32 and images.shape == (n, 1, 28, 28)
    body = {"n": n, "label": label, "seed": seed, "format": "json"}
    v1 = http.post("/v1/models/gan/generate", json=body).json()
    assert_same_images_as_v1(images, v1["images"])


def test_alexnet_classifies_encoded_images(client, http: httpx.Client) -> None:
    jpeg = image_bytes()
    images = triton.InferInput("image", [1], "BYTES")
    images.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
    outputs = [triton.InferRequestedOutput("probabilities", class_count=3)]
    result = client.infer("alexnet", [images], outputs=outputs)
    top3 = [item.decode() for item in result.as_numpy("probabilities")[0]]
    v1 = http.post(
        "/v1/models/alexnet/predict",
        files=[("file", ("a.jpg", jpeg, "image/jpeg"))],
        params={"top_k": 3},
    ).json()["predictions"][0]
    assert top3 == [f"{p['probability']:.6f}:{p['index']}:{p['label']}" for p in v1]


def test_compressed_requests_and_request_ids(client, server: tuple[str, Path]) -> None:
    x = np.zeros((1, 1, 28, 28), np.float32)
    result = client.infer(
        "cnn",
        [_infer_input("input", x)],
        headers={"X-Request-ID": "triton-trace-1"},
        request_compression_algorithm="gzip",
    )
    assert result.get_response()["id"] == "triton-trace-1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in server[1].read_text().splitlines() if line]
        access = [line for line in lines if line.get("request_id") == "triton-trace-1"]
        if access:
            break
        time.sleep(0.1)
    assert access[0]["logger"] == "uvicorn.access"
    assert access[0]["path"] == "/v2/models/cnn/infer" and access[0]["status"] == 200


@pytest.mark.parametrize(
    ("model", "inputs", "status", "message"),
    [
        ("nope", [("input", np.zeros((1, 1, 28, 28), np.float32))], "404", "no model named"),
        ("cnn", [("input", np.zeros((1, 1, 28, 28), np.float64))], "400", "must be FP32"),
        ("cnn", [("input", np.zeros((1, 28, 28), np.float32))], "400", "[-1,1,28,28]"),
        ("gan", [("latent", np.zeros((1, 100), np.float32))], "400", "missing ['label']"),
    ],
)
def test_bad_requests_raise_with_the_servers_message(
    client, model: str, inputs: list, status: str, message: str
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer(model, [_infer_input(name, array) for name, array in inputs])
    assert raised.value.status() == status
    assert message in raised.value.message()


def test_metrics_parse_and_count_the_traffic(client, http: httpx.Client) -> None:
    def infer_count() -> float:
        text = http.get("/metrics").text
        route = "/v2/models/{name}/infer"
        return metric_total(text, "torchgate_http_requests", route=route, code="200")

    before = infer_count()
    client.infer("cnn", [_infer_input("input", np.zeros((1, 1, 28, 28), np.float32))])
    # The server counts a request just after sending its last byte: allow it a moment.
    counts = [infer_count()]
    while counts[-1] == before and len(counts) < 50:
        time.sleep(0.05)
        counts.append(infer_count())
    assert counts[-1] == before + 1
