"""The same real server: hostile requests refused cleanly, and the same input giving the same
answer through every protocol and request form."""

from __future__ import annotations

import base64

import grpc
import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb

from tests.helpers.images import assert_same_images_as_v1, image_bytes
from tests.helpers.oip import (
    FASHION_INPUTS,
    assert_still_serving,
    grpc_input,
    parameters_version,
    png,
    raw_output,
    typed_request,
    v1_probabilities,
    v2_binary,
    v2_outputs,
)

pytestmark = pytest.mark.integration  # a real server

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
    assert_still_serving(client)


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
        answers[form][variant] = (v1_probabilities(body, classes), body["parameters_version"])
    blobs = np.array([image], dtype=np.object_)
    for form, name, array, datatype, data in (
        ("image", "image", blobs, "BYTES", [encoded]),
        ("tensor", "input", tensor, "FP32", tensor.tolist()),
    ):
        content, headers = v2_binary([(name, array, datatype)])
        response = http.post(v2_url, content=content, headers=headers)
        probabilities, parameters = v2_outputs(response, "probabilities")
        answers[form]["v2 binary"] = (probabilities, parameters["parameters_version"])
        entry = {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}
        response = http.post(v2_url, json={"inputs": [entry]})
        probabilities, parameters = v2_outputs(response, "probabilities")
        answers[form]["v2 json"] = (probabilities, parameters["parameters_version"])
        raw = client.infer(model, [grpc_input(name, array)])
        version = parameters_version(raw.get_response().parameters)[0]
        answers[form]["grpc raw"] = (raw.as_numpy("probabilities"), version)
        typed = stub.ModelInfer(typed_request(model, name, array))
        version = parameters_version(typed.parameters)[0]
        answers[form]["grpc typed"] = (raw_output(typed, "probabilities"), version)
    return answers


@pytest.mark.parametrize("model", ["cnn", "lstm", "alexnet"])
def test_every_protocol_gives_identical_probabilities(
    model: str, client: triton.InferenceServerClient, stub, http: httpx.Client
) -> None:
    rng = np.random.default_rng(7)
    if model == "alexnet":
        image, shape = image_bytes(size=(224, 224)), (1, 3, 224, 224)
    else:
        image, shape = png(), (1, *FASHION_INPUTS[model])
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
    content, headers = v2_binary(inputs)
    binary, binary_parameters = v2_outputs(
        http.post("/v2/models/gan/infer", content=content, headers=headers), "image"
    )
    entries = [
        {"name": name, "shape": list(a.shape), "datatype": dt, "data": a.tolist()}
        for name, a, dt in inputs
    ]
    as_json, json_parameters = v2_outputs(
        http.post("/v2/models/gan/infer", json={"inputs": entries}), "image"
    )
    result = client.infer("gan", [grpc_input(name, a) for name, a, _ in inputs])
    over_grpc = result.as_numpy("image")
    np.testing.assert_array_equal(binary, over_grpc)
    np.testing.assert_array_equal(as_json, over_grpc)
    v1 = http.post(
        "/v1/models/gan/generate", json={"n": n, "label": label, "seed": seed, "format": "json"}
    ).json()
    assert_same_images_as_v1(over_grpc, v1["images"])
    version = parameters_version(result.get_response().parameters)[0]
    assert (
        version
        == v1["parameters_version"]
        == binary_parameters["parameters_version"]
        == json_parameters["parameters_version"]
    )
