"""POST /v2/models/{name}/infer: JSON and binary tensors, each model, the same answers as v1."""

import base64
import json

import numpy as np
import orjson
import pytest
import torch

from tests.helpers.apps import admin_headers
from tests.helpers.images import assert_same_images_as_v1, image_bytes

pytestmark = pytest.mark.anyio


def _tensor(name: str, array: np.ndarray, datatype: str = "FP32") -> dict:
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.tolist()}


def _binary_request(inputs: list[tuple[str, np.ndarray, str]], **extra: object) -> tuple:
    """The binary tensor data extension, as tritonclient lays it out."""
    raws = [array.tobytes() for _, array, _ in inputs]
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
                for (name, array, datatype), raw in zip(inputs, raws, strict=True)
            ],
            **extra,
        }
    )
    headers = {"Inference-Header-Content-Length": str(len(header))}
    return header + b"".join(raws), headers


def _output(body: dict, name: str) -> np.ndarray:
    (output,) = [o for o in body["outputs"] if o["name"] == name]
    return np.array(output["data"]).reshape(output["shape"])


def _assert_matches_v1(probabilities: np.ndarray, v1: dict) -> None:
    for row, predictions in zip(probabilities, v1["predictions"], strict=True):
        assert [p["index"] for p in predictions] == np.argsort(-row)[: len(predictions)].tolist()
        for p in predictions:
            assert row[p["index"]] == pytest.approx(p["probability"], rel=1e-5, abs=1e-6)


async def test_cnn_json_tensor_matches_v1_and_names_its_parameters(v2_client) -> None:
    x = np.random.default_rng(0).normal(size=(3, 1, 28, 28)).astype(np.float32)
    response = await v2_client.post(
        "/v2/models/cnn/infer",
        json={"id": "req-1", "inputs": [_tensor("input", x)], "parameters": {"top_k": 2}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "cnn" and body["model_version"] == "1" and body["id"] == "req-1"
    probabilities = _output(body, "probabilities")
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    v1 = await v2_client.post("/v1/models/cnn/predict", json={"inputs": x.tolist(), "top_k": 2})
    _assert_matches_v1(probabilities, v1.json())
    labels = _output(body, "labels")
    assert labels.tolist() == [[p["label"] for p in row] for row in v1.json()["predictions"]]
    parameters = body["parameters"]
    assert parameters["parameters_version"] == v1.json()["parameters_version"]
    assert parameters["parameters_sha256"] == v1.headers["X-Model-Parameters-SHA256"]
    assert response.headers["X-Model-Parameters-SHA256"] == parameters["parameters_sha256"]


async def test_lstm_binary_sequences_match_v1(v2_client) -> None:
    x = np.random.default_rng(1).normal(size=(2, 20, 28)).astype(np.float32)
    content, headers = _binary_request(
        [("input", x, "FP32")], parameters={"binary_data_output": True}
    )
    response = await v2_client.post("/v2/models/lstm/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    head = orjson.loads(response.content[:length])
    (output,) = head["outputs"]
    assert output["shape"] == [2, 10] and output["parameters"]["binary_data_size"] == 80
    probabilities = np.frombuffer(response.content[length:], dtype="<f4").reshape(2, 10)
    v1 = await v2_client.post("/v1/models/lstm/predict", json={"inputs": x.tolist(), "top_k": 10})
    _assert_matches_v1(probabilities, v1.json())


async def test_alexnet_image_files_and_tensors_match_v1(v2_client) -> None:
    jpeg = image_bytes()
    raw = len(jpeg).to_bytes(4, "little") + jpeg
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
        }
    )
    binary = await v2_client.post(
        "/v2/models/alexnet/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert binary.status_code == 200, binary.text
    v1 = await v2_client.post(
        "/v1/models/alexnet/predict",
        files=[("file", ("a.jpg", jpeg, "image/jpeg"))],
        params={"top_k": 3},
    )
    expected = [
        f"{p['probability']:.6f}:{p['index']}:{p['label']}" for p in v1.json()["predictions"][0]
    ]
    assert _output(binary.json(), "probabilities").tolist() == [expected]
    encoded = base64.b64encode(jpeg).decode()
    as_json = await v2_client.post(
        "/v2/models/alexnet/infer",
        json={"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [encoded]}]},
    )
    assert as_json.status_code == 200, as_json.text
    _assert_matches_v1(_output(as_json.json(), "probabilities"), v1.json())
    tensor = np.random.default_rng(2).normal(size=(1, 3, 224, 224)).astype(np.float32)
    v2 = await v2_client.post(
        "/v2/models/alexnet/infer", json={"inputs": [_tensor("input", tensor)]}
    )
    v1_tensor = await v2_client.post("/v1/models/alexnet/predict", json={"inputs": tensor.tolist()})
    _assert_matches_v1(_output(v2.json(), "probabilities"), v1_tensor.json())


async def test_gan_latent_and_labels_draw_the_same_images_as_v1(v2_client) -> None:
    seed, n, label = 11, 3, 4
    z_dim = (await v2_client.get("/v2/models/gan")).json()["inputs"][0]["shape"][1]
    latent = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    labels = np.full(n, label, dtype=np.int64)
    content, headers = _binary_request([("latent", latent, "FP32"), ("label", labels, "INT64")])
    response = await v2_client.post("/v2/models/gan/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    images = _output(response.json(), "image")
    assert images.shape == (n, 1, 28, 28) and np.abs(images).max() <= 1.0
    v1 = await v2_client.post(
        "/v1/models/gan/generate",
        json={"n": n, "label": label, "seed": seed, "format": "json"},
    )
    assert_same_images_as_v1(images, v1.json()["images"])


async def test_gzip_requests_are_accepted(v2_client) -> None:
    import gzip

    x = np.zeros((1, 1, 28, 28), np.float32)
    body = gzip.compress(orjson.dumps({"inputs": [_tensor("input", x)]}))
    response = await v2_client.post(
        "/v2/models/cnn/infer", content=body, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text


async def test_a_reinitialized_model_reports_new_parameters(v2_client) -> None:
    x = np.zeros((1, 28, 28), np.float32)
    request = {"inputs": [_tensor("input", x[None].reshape(1, 28, 28))]}
    before = (await v2_client.post("/v2/models/lstm/infer", json=request)).json()["parameters"]
    reinit = await v2_client.post(
        "/admin/models/lstm/reinitialize", json={"seed": 1}, headers=admin_headers()
    )
    assert reinit.status_code == 200
    after = await v2_client.post("/v2/models/lstm/infer", json=request)
    parameters = after.json()["parameters"]
    assert parameters["parameters_version"] == before["parameters_version"] + 1
    assert parameters["parameters_sha256"] == reinit.json()["parameters_sha256"]
    assert parameters["parameters_sha256"] != before["parameters_sha256"]
    assert after.headers["X-Model-Version"] == str(parameters["parameters_version"])
    reload = await v2_client.post("/admin/models/lstm/reload", headers=admin_headers())
    assert reload.status_code == 200


async def test_the_response_id_defaults_to_the_request_id(v2_client) -> None:
    x = np.zeros((1, 1, 28, 28), np.float32)
    response = await v2_client.post(
        "/v2/models/cnn/infer",
        json={"inputs": [_tensor("input", x)]},
        headers={"X-Request-ID": "trace-42"},
    )
    assert response.headers["X-Request-ID"] == "trace-42"
    assert response.json()["id"] == "trace-42"


_CNN = {"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
_LATENT = {"name": "latent", "shape": [1, 100], "datatype": "FP32", "data": [0.0] * 100}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope/infer", {"inputs": [_CNN]}, 404, "no model named 'nope'"),
        ("/v2/models/vgg16/infer", {"inputs": [_CNN]}, 409, "vgg16-397923af.pth"),
        ("/v2/models/cnn/versions/2/infer", {"inputs": [_CNN]}, 404, "only version is 1"),
        ("/v2/models/cnn/infer", {"inputs": [{**_CNN, "datatype": "FP64"}]}, 400, "must be FP32"),
        ("/v2/models/cnn/infer", {"inputs": [{**_CNN, "shape": [1, 28, 28]}]}, 400, "[-1,1,28,28]"),
        ("/v2/models/cnn/infer", {"inputs": [{**_CNN, "shape": [2, 1, 28, 28]}]}, 400, "1568"),
        (
            "/v2/models/cnn/infer",
            {"inputs": [{**_CNN, "shape": [0, 1, 28, 28], "data": []}]},
            400,
            "empty batch",
        ),
        ("/v2/models/cnn/infer", {"inputs": [{**_CNN, "name": "pixels"}]}, 400, "no input(s)"),
        ("/v2/models/cnn/infer", {"inputs": []}, 400, "inputs"),
        ("/v2/models/cnn/infer", {"outputs": []}, 400, "inputs: Field required"),
        ("/v2/models/cnn/infer", {"inputs": [_CNN, {**_CNN, "name": "image"}]}, 400, "exactly one"),
        ("/v2/models/cnn/infer", {"inputs": [{**_CNN, "data": [float("nan")] * 784}]}, 422, "NaN"),
        (
            "/v2/models/cnn/infer",
            {"inputs": [_CNN], "outputs": [{"name": "logits"}]},
            400,
            "no output 'logits'",
        ),
        (
            "/v2/models/cnn/infer",
            {
                "inputs": [_CNN],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 11}}],
            },
            400,
            "between 1 and 10",
        ),
        (
            "/v2/models/cnn/infer",
            {"inputs": [_CNN], "parameters": {"binary_data_output": "yes"}},
            400,
            "true or false",
        ),
        (
            "/v2/models/lstm/infer",
            {"inputs": [{**_CNN, "shape": [1, 29, 28], "data": [0.0] * 812}]},
            422,
            "T must be 1..28",
        ),
        (
            "/v2/models/alexnet/infer",
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["bm90"]}]},
            415,
            "not an image",
        ),
        (
            "/v2/models/alexnet/infer",
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["!!"]}]},
            400,
            "base64",
        ),
        ("/v2/models/gan/infer", {"inputs": [_LATENT]}, 400, "missing ['label']"),
        (
            "/v2/models/gan/infer",
            {
                "inputs": [
                    _LATENT,
                    {"name": "label", "shape": [1], "datatype": "INT64", "data": [10]},
                ]
            },
            400,
            "0..9",
        ),
        (
            "/v2/models/gan/infer",
            {
                "inputs": [
                    _LATENT,
                    {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 2]},
                ]
            },
            400,
            "same batch size",
        ),
    ],
)
async def test_bad_requests_are_4xx_with_an_error_field(
    v2_client, path: str, body: dict, status: int, message: str
) -> None:
    response = await v2_client.post(path, content=json.dumps(body))
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("content", "headers", "message"),
    [
        (b"", {}, "Invalid JSON"),
        (b"[1, 2]", {}, "invalid inference request"),
        (b'{"inputs": [', {}, "Invalid JSON"),
        (b"{}", {"Inference-Header-Content-Length": "50"}, "Inference-Header-Content-Length"),
        (b"{}", {"Content-Encoding": "gzip"}, "cannot be decompressed"),
    ],
)
async def test_malformed_bodies_are_400(v2_client, content: bytes, headers: dict, message) -> None:
    response = await v2_client.post("/v2/models/cnn/infer", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


async def test_a_truncated_binary_payload_is_400(v2_client) -> None:
    x = np.zeros((2, 1, 28, 28), np.float32)
    content, headers = _binary_request([("input", x, "FP32")])
    response = await v2_client.post("/v2/models/cnn/infer", content=content[:-10], headers=headers)
    assert response.status_code == 400
    assert "truncated" in response.json()["error"]


async def test_binary_data_without_the_header_length_is_400(v2_client) -> None:
    x = np.zeros((1, 1, 28, 28), np.float32)
    content, _ = _binary_request([("input", x, "FP32")])
    response = await v2_client.post("/v2/models/cnn/infer", content=content)
    assert response.status_code == 400
    assert "error" in response.json()


async def test_v1_errors_keep_their_detail_field(v2_client) -> None:
    response = await v2_client.post("/v1/models/nope/predict", json={"inputs": [[0.0]]})
    assert response.status_code == 404
    assert set(response.json()) == {"detail"}
