"""Requests and answers of the Open Inference Protocol through each of its adapters (tritonclient's
gRPC inputs, raw protobuf, v2 REST binary bodies), for the tests that compare them."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import orjson
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import np_to_triton_dtype

FASHION_INPUTS = {"cnn": (1, 28, 28), "lstm": (28, 28)}


def grpc_input(name: str, array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    return tensor.set_data_from_numpy(array)


def grpc_images(name: str, blobs: list[bytes]) -> triton.InferInput:
    return grpc_input(name, np.array(blobs, dtype=np.object_))


def typed_request(model: str, name: str, array: np.ndarray) -> pb.ModelInferRequest:
    """Typed contents (tritonclient only sends raw ones): fp32_contents, or bytes_contents."""
    request = pb.ModelInferRequest(model_name=model)
    if array.dtype == np.object_:
        item = request.inputs.add(name=name, datatype="BYTES", shape=array.shape)
        item.contents.bytes_contents.extend(array.tolist())
    else:
        item = request.inputs.add(name=name, datatype="FP32", shape=array.shape)
        item.contents.fp32_contents.extend(array.reshape(-1).tolist())
    return request


def raw_output(response: pb.ModelInferResponse, name: str) -> np.ndarray:
    for position, output in enumerate(response.outputs):
        if output.name == name:
            array = np.frombuffer(response.raw_output_contents[position], dtype="<f4")
            return array.reshape(list(output.shape))
    raise AssertionError(f"no output {name}")


def parameters_version(parameters: Any) -> tuple[int, str]:
    """(parameters_version, parameters_sha256) from a gRPC response's parameters."""
    version, sha256 = parameters["parameters_version"], parameters["parameters_sha256"]
    return version.int64_param, sha256.string_param


def v1_probabilities(body: dict, classes: int) -> np.ndarray:
    rows = np.zeros((len(body["predictions"]), classes), np.float32)
    for row, predictions in zip(rows, body["predictions"], strict=True):
        for p in predictions:
            row[p["index"]] = p["probability"]
    return rows


def v2_binary(inputs: list[tuple[str, np.ndarray, str]]) -> tuple[bytes, dict]:
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


def v2_outputs(response: httpx.Response, name: str) -> tuple[np.ndarray, dict]:
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


def assert_still_serving(client: triton.InferenceServerClient) -> None:
    x = np.zeros((1, 1, 28, 28), np.float32)
    probabilities = client.infer("cnn", [grpc_input("input", x)]).as_numpy("probabilities")
    assert probabilities.shape == (1, 10)


def png(side: int = 28, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
