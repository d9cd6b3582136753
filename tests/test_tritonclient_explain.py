"""The ``attributions`` output of a real ``python -m app serve``, asked for by tritonclient
over REST and over gRPC with the clients' own calls: the same numbers as v1's explain."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tests.helpers.servers import RealServer

pytestmark = pytest.mark.integration

PROTOCOLS = ("rest", "grpc")


@pytest.fixture(scope="module")
def clients(real_server: RealServer) -> Iterator[dict[str, Any]]:
    rest = triton_http.InferenceServerClient(
        url=real_server.http.removeprefix("http://"), network_timeout=120
    )
    grpc = triton_grpc.InferenceServerClient(real_server.grpc)
    try:
        yield {"rest": rest, "grpc": grpc}
    finally:
        rest.close()
        grpc.close()


@pytest.fixture(scope="module")
def http(real_server: RealServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=real_server.http, timeout=120) as client:
        yield client


def _infer(
    client: Any, protocol: str, model: str, x: np.ndarray, parameters: dict[str, Any]
) -> Any:
    module = triton_http if protocol == "rest" else triton_grpc
    tensor = module.InferInput("input", list(x.shape), np_to_triton_dtype(x.dtype))
    tensor.set_data_from_numpy(x)
    outputs = [
        module.InferRequestedOutput("probabilities"),
        module.InferRequestedOutput("attributions"),
    ]
    return client.infer(model, [tensor], outputs=outputs, parameters=parameters)


def _v1(http: httpx.Client, model: str, x: np.ndarray, params: dict[str, Any]) -> dict:
    response = http.post(f"/v1/models/{model}/explain", json={"inputs": x.tolist()}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metadata_declares_the_attributions_output(clients: dict, protocol: str) -> None:
    metadata = clients[protocol].get_model_metadata("cnn")
    if protocol == "grpc":
        outputs = {o.name: (o.datatype, list(o.shape)) for o in metadata.outputs}
    else:
        outputs = {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]}
    assert outputs["attributions"] == ("FP32", [-1, 1, 28, 28])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("model", "shape", "parameters"),
    [
        ("cnn", (2, 1, 28, 28), {"method": "integrated_gradients", "steps": 16}),
        ("cnn", (1, 1, 28, 28), {"method": "gradcam", "target": 4}),
        ("lstm", (1, 28, 28), {"method": "saliency"}),
    ],
)
def test_attributions_equal_v1s_explanation(
    clients: dict,
    http: httpx.Client,
    protocol: str,
    model: str,
    shape: tuple[int, ...],
    parameters: dict[str, Any],
) -> None:
    x = np.random.default_rng(len(shape)).normal(size=shape).astype(np.float32)
    result = _infer(clients[protocol], protocol, model, x, parameters)
    attributions = result.as_numpy("attributions")
    assert attributions.dtype == np.float32 and attributions.shape == shape
    v1 = _v1(http, model, x, parameters)
    expected = np.array([item["attributions"] for item in v1["explanations"]], np.float32)
    np.testing.assert_allclose(attributions, expected, rtol=1e-5, atol=1e-6)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (shape[0], 10)
    assert [int(row.argmax()) for row in probabilities] == [
        item["predictions"][0]["index"] for item in v1["explanations"]
    ]
    if "target" in parameters:
        assert [item["target"] for item in v1["explanations"]] == [parameters["target"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_too_many_steps_are_refused_clearly(clients: dict, protocol: str) -> None:
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(InferenceServerException) as raised:
        _infer(clients[protocol], protocol, "cnn", x, {"steps": 300})
    status = "400" if protocol == "rest" else "StatusCode.INVALID_ARGUMENT"
    assert raised.value.status() == status
    assert "steps must be between 1 and 256" in raised.value.message()
