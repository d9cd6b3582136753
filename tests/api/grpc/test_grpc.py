"""A real ``python -m app serve`` on its gRPC port, driven by tritonclient.grpc (and, where a
request must be one the client would never build, by the raw stub of Triton's own .proto):
metadata, answers equal to v1 and v2 REST, errors, request ids and metrics."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from tests.helpers.images import image_bytes
from tests.helpers.metrics import metric_total
from tests.helpers.oip import (
    FASHION_INPUTS,
    assert_still_serving,
    grpc_images,
    grpc_input,
    parameters_version,
    raw_output,
    typed_request,
    v1_probabilities,
    v2_binary,
    v2_outputs,
)
from tests.helpers.servers import REAL_SERVER_MAX_UPLOAD_BYTES, RealServer

pytestmark = pytest.mark.integration  # a real server

# -- health and metadata ------------------------------------------------------------------------


def test_live_ready_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "torchgate"
    assert {"binary_tensor_data", "classification"} <= set(metadata["extensions"])
    assert client.is_model_ready("cnn") and client.is_model_ready("gan", "1")
    cnn = client.get_model_metadata("cnn", as_json=True)
    assert cnn["versions"] == ["1"] and cnn["platform"] == "pytorch"
    assert cnn["inputs"][0] == {
        "name": "input",
        "datatype": "FP32",
        "shape": ["-1", "1", "28", "28"],
    }
    assert cnn["inputs"][1] == {"name": "image", "datatype": "BYTES", "shape": ["-1"]}
    assert cnn["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": ["-1", "10"]}
    gan = client.get_model_metadata("gan")
    assert [(t.name, t.datatype, list(t.shape)) for t in gan.inputs] == [
        ("latent", "FP32", [-1, 100]),
        ("label", "INT64", [-1]),
    ]


# -- answers equal to v1 and v2 REST ------------------------------------------------------------


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_raw_and_typed_tensors_answer_as_v1_and_v2(
    model: str, client: triton.InferenceServerClient, stub, http: httpx.Client
) -> None:
    x = np.random.default_rng(3).normal(size=(3, *FASHION_INPUTS[model])).astype(np.float32)
    raw = client.infer(model, [grpc_input("input", x)])
    typed = stub.ModelInfer(typed_request(model, "input", x))
    v1 = http.post(f"/v1/models/{model}/predict", json={"inputs": x.tolist(), "top_k": 10})
    content, headers = v2_binary([("input", x, "FP32")])
    v2, parameters = v2_outputs(
        http.post(f"/v2/models/{model}/infer", content=content, headers=headers), "probabilities"
    )
    expected = v1_probabilities(v1.json(), 10)
    np.testing.assert_array_equal(raw.as_numpy("probabilities"), expected)
    np.testing.assert_array_equal(raw_output(typed, "probabilities"), expected)
    np.testing.assert_array_equal(v2, expected)
    response = raw.get_response()
    assert response.model_name == model and response.model_version == "1"
    expected = (v1.json()["parameters_version"], v1.headers["X-Model-Parameters-SHA256"])
    assert parameters_version(response.parameters) == expected
    assert parameters_version(typed.parameters) == expected
    assert (parameters["parameters_version"], parameters["parameters_sha256"]) == expected


def test_alexnet_classifies_image_bytes_with_class_count(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    jpegs = [image_bytes(), image_bytes(color=(20, 160, 90))]
    outputs = [triton.InferRequestedOutput("probabilities", class_count=3)]
    result = client.infer("alexnet", [grpc_images("image", jpegs)], outputs=outputs)
    top3 = [[item.decode() for item in row] for row in result.as_numpy("probabilities")]
    files = [("file", (f"{i}.jpg", jpeg, "image/jpeg")) for i, jpeg in enumerate(jpegs)]
    v1 = http.post("/v1/models/alexnet/predict", files=files, params={"top_k": 3}).json()
    expected = [
        [f"{p['probability']:.6f}:{p['index']}:{p['label']}" for p in row]
        for row in v1["predictions"]
    ]
    assert top3 == expected


# -- errors, request ids, metrics -----------------------------------------------------------------


ZEROS = np.zeros((1, 1, 28, 28), np.float32)  # one valid cnn input
LATENT = np.zeros((1, 100), np.float32)
CLASS_COUNT_11 = [triton.InferRequestedOutput("probabilities", class_count=11)]


@pytest.mark.parametrize(
    ("model", "version", "inputs", "outputs", "code", "message"),
    [
        ("nope", "", [("input", ZEROS)], None, "NOT_FOUND", "no model named 'nope'"),
        ("cnn", "2", [("input", ZEROS)], None, "NOT_FOUND", "no version '2'"),
        ("cnn", "", [("input", ZEROS.astype(np.float64))], None, "INVALID_ARGUMENT", "FP32"),
        ("cnn", "", [("input", ZEROS[0])], None, "INVALID_ARGUMENT", "[-1,1,28,28]"),
        ("gan", "", [("latent", LATENT)], None, "INVALID_ARGUMENT", "missing ['label']"),
        ("cnn", "", [("input", ZEROS)], CLASS_COUNT_11, "INVALID_ARGUMENT", "between 1 and 10"),
    ],
    ids=["unknown-model", "unknown-version", "fp64", "shape", "missing-input", "class-count"],
)
def test_errors_carry_status_codes_and_the_servers_message(
    client: triton.InferenceServerClient,
    model: str,
    version: str,
    inputs: list,
    outputs: list,
    code: str,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer(
            model,
            [grpc_input(name, array) for name, array in inputs],
            model_version=version,
            outputs=outputs,
        )
    assert raised.value.status() == f"StatusCode.{code}"
    assert message in raised.value.message()
    assert_still_serving(client)


def test_a_message_over_the_upload_limit_is_refused(client: triton.InferenceServerClient) -> None:
    big = np.zeros((REAL_SERVER_MAX_UPLOAD_BYTES // 3136 + 1, 1, 28, 28), np.float32)
    with pytest.raises(InferenceServerException) as raised:
        client.infer("cnn", [grpc_input("input", big)])
    assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert_still_serving(client)


def test_request_ids_are_echoed_logged_and_calls_counted(
    client: triton.InferenceServerClient, stub, real_server: RealServer, http: httpx.Client
) -> None:
    def counted() -> float:
        text = http.get("/metrics").text
        labels = {"model": "cnn", "method": "ModelInfer", "code": "OK"}
        return metric_total(text, "torchgate_grpc_requests", **labels)

    before = counted()
    x = np.zeros((1, 1, 28, 28), np.float32)
    result = client.infer("cnn", [grpc_input("input", x)], headers={"x-request-id": "grpc-7"})
    assert result.get_response().id == "grpc-7"
    assert counted() == before + 1
    _, call = stub.ServerLive.with_call(pb.ServerLiveRequest(), metadata=[("x-request-id", "g8")])
    assert ("x-request-id", "g8") in [(m.key, m.value) for m in call.trailing_metadata()]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in real_server.log.read_text().splitlines() if line]
        access = [line for line in lines if line.get("request_id") == "grpc-7"]
        if access:
            break
        time.sleep(0.1)
    assert access[0]["logger"] == "app.grpc.access" and "ModelInfer cnn" in access[0]["message"]
