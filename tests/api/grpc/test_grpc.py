"""A real ``python -m app serve`` on its gRPC port, driven by tritonclient.grpc (and, where a
request must be one the client would never build, by the raw stub of Triton's own .proto):
every test runs against each gRPC server (zttp's HTTP/2 on the event loop, the default, and
grpcio's)."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
import torch
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tests.helpers.images import assert_same_images_as_v1, image_bytes
from tests.helpers.metrics import metric_total
from tests.helpers.servers import REAL_SERVER_MAX_UPLOAD_BYTES, RealServer, real_server_process

pytestmark = pytest.mark.integration

FASHION_INPUTS = {"cnn": (1, 28, 28), "lstm": (28, 28)}


@pytest.fixture(scope="module", params=["zttp", "grpcio"])
def real_server(
    request: pytest.FixtureRequest, weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealServer]:
    directory = tmp_path_factory.mktemp(f"grpc-{request.param}")
    with real_server_process(weights_dir, directory, grpc_server=request.param) as server:
        yield server


@pytest.fixture(scope="module")
def client(real_server: RealServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(real_server.grpc)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def stub(real_server: RealServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(real_server.grpc) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def http(real_server: RealServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_server.http, timeout=60) as client:
        yield client


# -- requests through each protocol -------------------------------------------------------------


def _grpc_input(name: str, array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    return tensor.set_data_from_numpy(array)


def _grpc_images(name: str, blobs: list[bytes]) -> triton.InferInput:
    return _grpc_input(name, np.array(blobs, dtype=np.object_))


def _typed_request(model: str, name: str, array: np.ndarray) -> pb.ModelInferRequest:
    """Typed contents (tritonclient only sends raw ones): fp32_contents, or bytes_contents."""
    request = pb.ModelInferRequest(model_name=model)
    if array.dtype == np.object_:
        item = request.inputs.add(name=name, datatype="BYTES", shape=array.shape)
        item.contents.bytes_contents.extend(array.tolist())
    else:
        item = request.inputs.add(name=name, datatype="FP32", shape=array.shape)
        item.contents.fp32_contents.extend(array.reshape(-1).tolist())
    return request


def _raw_output(response: pb.ModelInferResponse, name: str) -> np.ndarray:
    for position, output in enumerate(response.outputs):
        if output.name == name:
            array = np.frombuffer(response.raw_output_contents[position], dtype="<f4")
            return array.reshape(list(output.shape))
    raise AssertionError(f"no output {name}")


def _version(parameters: Any) -> tuple[int, str]:
    """(parameters_version, parameters_sha256) from a gRPC response's parameters."""
    version, sha256 = parameters["parameters_version"], parameters["parameters_sha256"]
    return version.int64_param, sha256.string_param


def _v1_probabilities(body: dict, classes: int) -> np.ndarray:
    rows = np.zeros((len(body["predictions"]), classes), np.float32)
    for row, predictions in zip(rows, body["predictions"], strict=True):
        for p in predictions:
            row[p["index"]] = p["probability"]
    return rows


def _v2_binary(inputs: list[tuple[str, np.ndarray, str]]) -> tuple[bytes, dict]:
    """The binary tensor data extension (BYTES elements: 4-byte length + bytes)."""
    entries, chunks = [], []
    for name, array, datatype in inputs:
        if datatype == "BYTES":
            raw = b"".join(len(b).to_bytes(4, "little") + b for b in array.tolist())
        else:
            raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        chunks.append(raw)
    header = orjson.dumps({"inputs": entries, "parameters": {"binary_data_output": True}})
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + b"".join(chunks), headers


def _v2_outputs(response: httpx.Response, name: str) -> tuple[np.ndarray, dict]:
    assert response.status_code == 200, response.text
    length = int(response.headers.get("Inference-Header-Content-Length", len(response.content)))
    head = orjson.loads(response.content[:length])
    offset = length
    for output in head["outputs"]:
        if "data" in output:
            array = np.array(output["data"], dtype=np.float32)
        else:
            size = output["parameters"]["binary_data_size"]
            array = np.frombuffer(response.content[offset : offset + size], dtype="<f4")
            offset += size
        if output["name"] == name:
            return array.reshape(output["shape"]), head["parameters"]
    raise AssertionError(f"no output {name}")


def _assert_still_serving(client: triton.InferenceServerClient) -> None:
    x = np.zeros((1, 1, 28, 28), np.float32)
    probabilities = client.infer("cnn", [_grpc_input("input", x)]).as_numpy("probabilities")
    assert probabilities.shape == (1, 10)


def _png(side: int = 28, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


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
    raw = client.infer(model, [_grpc_input("input", x)])
    typed = stub.ModelInfer(_typed_request(model, "input", x))
    v1 = http.post(f"/v1/models/{model}/predict", json={"inputs": x.tolist(), "top_k": 10})
    content, headers = _v2_binary([("input", x, "FP32")])
    v2, parameters = _v2_outputs(
        http.post(f"/v2/models/{model}/infer", content=content, headers=headers), "probabilities"
    )
    expected = _v1_probabilities(v1.json(), 10)
    np.testing.assert_array_equal(raw.as_numpy("probabilities"), expected)
    np.testing.assert_array_equal(_raw_output(typed, "probabilities"), expected)
    np.testing.assert_array_equal(v2, expected)
    response = raw.get_response()
    assert response.model_name == model and response.model_version == "1"
    version = (v1.json()["parameters_version"], v1.headers["X-Model-Parameters-SHA256"])
    assert _version(response.parameters) == _version(typed.parameters) == version
    assert (parameters["parameters_version"], parameters["parameters_sha256"]) == version


def test_alexnet_classifies_image_bytes_with_class_count(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    jpegs = [image_bytes(), image_bytes(color=(20, 160, 90))]
    outputs = [triton.InferRequestedOutput("probabilities", class_count=3)]
    result = client.infer("alexnet", [_grpc_images("image", jpegs)], outputs=outputs)
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
            [_grpc_input(name, array) for name, array in inputs],
            model_version=version,
            outputs=outputs,
        )
    assert raised.value.status() == f"StatusCode.{code}"
    assert message in raised.value.message()
    _assert_still_serving(client)


def test_a_message_over_the_upload_limit_is_refused(client: triton.InferenceServerClient) -> None:
    big = np.zeros((REAL_SERVER_MAX_UPLOAD_BYTES // 3136 + 1, 1, 28, 28), np.float32)
    with pytest.raises(InferenceServerException) as raised:
        client.infer("cnn", [_grpc_input("input", big)])
    assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    _assert_still_serving(client)


def test_request_ids_are_echoed_logged_and_calls_counted(
    client: triton.InferenceServerClient, stub, real_server: RealServer, http: httpx.Client
) -> None:
    def counted() -> float:
        text = http.get("/metrics").text
        labels = {"model": "cnn", "method": "ModelInfer", "code": "OK"}
        return metric_total(text, "torchgate_grpc_requests", **labels)

    before = counted()
    x = np.zeros((1, 1, 28, 28), np.float32)
    result = client.infer("cnn", [_grpc_input("input", x)], headers={"x-request-id": "grpc-7"})
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


# -- hostile requests: each refused cleanly, the server serving on --------------------------------


def _hostile(name: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="cnn")
    x = np.zeros((1, 1, 28, 28), "<f4")
    if name == "truncated-raw":
        request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
        request.raw_input_contents.append(x.tobytes()[:-4])
    elif name == "longer-raw":
        request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
        request.raw_input_contents.append(x.tobytes() + b"\0" * 4)
    elif name == "truncated-bytes-element":
        request.inputs.add(name="image", datatype="BYTES", shape=[1])
        request.raw_input_contents.append((100).to_bytes(4, "little") + b"\x89PNG")
    elif name == "wrong-datatype":
        request.inputs.add(name="input", datatype="INT8", shape=[1, 1, 28, 28])
        request.raw_input_contents.append(bytes(784))
    elif name == "unknown-datatype":
        request.inputs.add(name="input", datatype="FP8", shape=[1, 1, 28, 28])
        request.raw_input_contents.append(bytes(784))
    elif name == "typed-in-the-wrong-field":
        item = request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
        item.contents.int64_contents.extend([0] * 784)
    elif name == "fp16-typed":
        item = request.inputs.add(name="input", datatype="FP16", shape=[1, 1, 28, 28])
        item.contents.fp32_contents.extend([0.0] * 784)
    elif name == "raw-count-mismatch":
        request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
        request.raw_input_contents.extend([x.tobytes(), x.tobytes()])
    elif name == "negative-dimension":
        request.inputs.add(name="input", datatype="FP32", shape=[-1, 1, 28, 28])
        request.raw_input_contents.append(x.tobytes())
    elif name == "10^12-elements":
        request.inputs.add(name="input", datatype="FP32", shape=[1_000_000, 1_000_000])
        request.raw_input_contents.append(x.tobytes())
    elif name == "unknown-model":
        request.model_name = "bert"
    elif name == "unknown-version":
        request.model_version = "7"
    elif name == "10000-input-tensors":
        for i in range(10_000):
            request.inputs.add(name=f"input{i}", datatype="FP32", shape=[1])
            request.raw_input_contents.append(bytes(4))
    elif name == "10000-images":
        request.inputs.add(name="image", datatype="BYTES", shape=[10_000])
        request.raw_input_contents.append(((1).to_bytes(4, "little") + b"x") * 10_000)
    return request


HOSTILE = {
    "truncated-raw": "INVALID_ARGUMENT",
    "longer-raw": "INVALID_ARGUMENT",
    "truncated-bytes-element": "INVALID_ARGUMENT",
    "wrong-datatype": "INVALID_ARGUMENT",
    "unknown-datatype": "INVALID_ARGUMENT",
    "typed-in-the-wrong-field": "INVALID_ARGUMENT",
    "fp16-typed": "INVALID_ARGUMENT",
    "raw-count-mismatch": "INVALID_ARGUMENT",
    "negative-dimension": "INVALID_ARGUMENT",
    "10^12-elements": "RESOURCE_EXHAUSTED",
    "unknown-model": "NOT_FOUND",
    "unknown-version": "NOT_FOUND",
    "10000-input-tensors": "INVALID_ARGUMENT",
    "10000-images": "INVALID_ARGUMENT",
}


@pytest.mark.parametrize(("case", "code"), HOSTILE.items(), ids=list(HOSTILE))
def test_hostile_requests_are_refused_and_the_server_serves_on(
    case: str, code: str, stub, client: triton.InferenceServerClient
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(_hostile(case), timeout=30)
    assert raised.value.code().name == code, raised.value.details()
    assert raised.value.details() and "internal" not in raised.value.details()
    _assert_still_serving(client)


# -- the same input, every protocol ---------------------------------------------------------------


def _classifier_answers(
    model: str, client, stub, http: httpx.Client, image: bytes, tensor: np.ndarray
) -> dict[str, dict[str, tuple[np.ndarray, int]]]:
    """Probabilities and parameter version from every protocol, for the image file and for
    the tensor: {"image": {variant: answer}, "tensor": {variant: answer}}."""
    classes = 1000 if model == "alexnet" else 10
    media = "image/jpeg" if model == "alexnet" else "image/png"
    url, v2_url = f"/v1/models/{model}/predict", f"/v2/models/{model}/infer"
    encoded = base64.b64encode(image).decode()
    top_k = {"top_k": classes}
    v1_requests = {
        ("image", "v1 multipart"): {"files": [("file", ("x", image, media))], "params": top_k},
        ("image", "v1 json"): {"json": {"images": [encoded], **top_k}},
        ("image", "v1 raw body"): {
            "content": image,
            "headers": {"content-type": media},
            "params": top_k,
        },
        ("tensor", "v1 json"): {"json": {"inputs": tensor.tolist(), **top_k}},
    }
    answers: dict[str, dict[str, tuple[np.ndarray, int]]] = {"image": {}, "tensor": {}}
    for (form, variant), arguments in v1_requests.items():
        response = http.post(url, **arguments)
        assert response.status_code == 200, response.text
        body = response.json()
        answers[form][variant] = (_v1_probabilities(body, classes), body["parameters_version"])
    blobs = np.array([image], dtype=np.object_)
    for form, name, array, datatype, data in (
        ("image", "image", blobs, "BYTES", [encoded]),
        ("tensor", "input", tensor, "FP32", tensor.tolist()),
    ):
        content, headers = _v2_binary([(name, array, datatype)])
        response = http.post(v2_url, content=content, headers=headers)
        probabilities, parameters = _v2_outputs(response, "probabilities")
        answers[form]["v2 binary"] = (probabilities, parameters["parameters_version"])
        entry = {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}
        response = http.post(v2_url, json={"inputs": [entry]})
        probabilities, parameters = _v2_outputs(response, "probabilities")
        answers[form]["v2 json"] = (probabilities, parameters["parameters_version"])
        raw = client.infer(model, [_grpc_input(name, array)])
        version = _version(raw.get_response().parameters)[0]
        answers[form]["grpc raw"] = (raw.as_numpy("probabilities"), version)
        typed = stub.ModelInfer(_typed_request(model, name, array))
        version = _version(typed.parameters)[0]
        answers[form]["grpc typed"] = (_raw_output(typed, "probabilities"), version)
    return answers


@pytest.mark.parametrize("model", ["cnn", "lstm", "alexnet"])
def test_every_protocol_gives_identical_probabilities(
    model: str, client: triton.InferenceServerClient, stub, http: httpx.Client
) -> None:
    rng = np.random.default_rng(7)
    if model == "alexnet":
        image, shape = image_bytes(size=(224, 224)), (1, 3, 224, 224)
    else:
        image, shape = _png(), (1, *FASHION_INPUTS[model])
    tensor = rng.normal(size=shape).astype(np.float32)
    answers = _classifier_answers(model, client, stub, http, image, tensor)
    versions = {version for form in answers.values() for _, version in form.values()}
    assert len(versions) == 1, versions
    for variants in answers.values():
        (reference, (expected, _)), *others = variants.items()
        for variant, (probabilities, _) in others:
            np.testing.assert_array_equal(
                probabilities, expected, err_msg=f"{model}: {variant} vs {reference}"
            )


def test_gan_latent_and_labels_draw_the_same_images_everywhere(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    seed, n, label = 11, 2, 3
    latent = torch.randn(n, 100, generator=torch.Generator().manual_seed(seed)).numpy()
    labels = np.full(n, label, dtype=np.int64)
    inputs = [("latent", latent, "FP32"), ("label", labels, "INT64")]
    content, headers = _v2_binary(inputs)
    binary, binary_parameters = _v2_outputs(
        http.post("/v2/models/gan/infer", content=content, headers=headers), "image"
    )
    entries = [
        {"name": name, "shape": list(a.shape), "datatype": dt, "data": a.tolist()}
        for name, a, dt in inputs
    ]
    as_json, json_parameters = _v2_outputs(
        http.post("/v2/models/gan/infer", json={"inputs": entries}), "image"
    )
    result = client.infer("gan", [_grpc_input(name, a) for name, a, _ in inputs])
    over_grpc = result.as_numpy("image")
    np.testing.assert_array_equal(binary, over_grpc)
    np.testing.assert_array_equal(as_json, over_grpc)
    v1 = http.post(
        "/v1/models/gan/generate", json={"n": n, "label": label, "seed": seed, "format": "json"}
    ).json()
    assert_same_images_as_v1(over_grpc, v1["images"])
    version = _version(result.get_response().parameters)[0]
    assert (
        version
        == v1["parameters_version"]
        == binary_parameters["parameters_version"]
        == json_parameters["parameters_version"]
    )
