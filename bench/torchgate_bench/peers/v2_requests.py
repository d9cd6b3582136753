"""One Open Inference Protocol request per model, as bytes every server is sent unchanged.

REST: the binary tensor data extension (a JSON header naming input ``input`` FP32 with its
``binary_data_size``, the raw little-endian floats after it, ``Inference-Header-Content-Length``
saying where the JSON ends), asking for the ``probabilities`` output in binary too. gRPC: a
``ModelInferRequest`` built with torchgate's own protobuf module, the floats in
``raw_input_contents``. The same tensor goes into both, so torchgate, Triton and KServe all
compute on the very same numbers; the decoders read any of their answers back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchgate_bench.load import LoadTarget
from torchgate_bench.peers.cnn_files import CnnFiles
from torchgate_bench.protocols import MODEL_INFER

INPUT, OUTPUT = "input", "probabilities"  # torchgate's v2 names, which the peers declare too
HEADER_LENGTH = "Inference-Header-Content-Length"
OCTETS = "application/octet-stream"


def cnn_tensor(image: bytes, files: CnnFiles) -> np.ndarray:
    """The image as torchgate's v1 path preprocesses it (``fashion.py``): [1, 1, 28, 28]."""
    from torchgate_bench.peers.fashion import FashionModel

    sample = FashionModel(files.model_file, files.manifest).preprocess(image)
    return np.ascontiguousarray(sample.numpy()[np.newaxis], dtype="<f4")


def imagenet_tensor(seed: int = 0) -> np.ndarray:
    """An already-normalized [1, 3, 224, 224] input: the ImageNet models' compute does not
    depend on the values, and a fixed seed makes every run send the same bytes."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 3, 224, 224), dtype=np.float32).astype("<f4")


def rest_body(tensor: np.ndarray) -> tuple[bytes, int]:
    """The binary-extension body and its JSON header's length."""
    raw = np.ascontiguousarray(tensor, dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": INPUT,
                "shape": list(tensor.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": OUTPUT, "parameters": {"binary_data": True}}],
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return encoded + raw, len(encoded)


def grpc_message(model: str, tensor: np.ndarray) -> bytes:
    """A serialized ``ModelInferRequest``: the FP32 tensor in ``raw_input_contents``."""
    from app.api.grpc.proto import inference_pb2 as pb

    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name=INPUT, datatype="FP32", shape=list(tensor.shape))
    message.outputs.add(name=OUTPUT)
    message.raw_input_contents.append(np.ascontiguousarray(tensor, dtype="<f4").tobytes())
    return message.SerializeToString()


def decode_grpc_request(message: bytes) -> tuple[str, np.ndarray]:
    """The model and the input tensor of a serialized ``ModelInferRequest``."""
    from app.api.grpc.proto import inference_pb2 as pb

    request = pb.ModelInferRequest.FromString(message)
    (entry,) = request.inputs
    (raw,) = request.raw_input_contents
    return request.model_name, np.frombuffer(raw, dtype="<f4").reshape(tuple(entry.shape))


def rest_probabilities(body: bytes, header_length: int | None) -> np.ndarray:
    """The ``probabilities`` output of a v2 REST answer, JSON or binary extension."""
    end = header_length if header_length is not None else len(body)
    header = json.loads(body[:end])
    offset = end
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        shape = tuple(output["shape"])
        if output["name"] == OUTPUT:
            if size is None:
                return np.asarray(output["data"], dtype=np.float32).reshape(shape)
            return np.frombuffer(body[offset : offset + size], dtype="<f4").reshape(shape)
        offset += size or 0
    raise ValueError(f"the answer has no {OUTPUT!r} output: {header['outputs']}")


def grpc_probabilities(message: bytes) -> np.ndarray:
    """The ``probabilities`` output of a serialized ``ModelInferResponse``."""
    from app.api.grpc.proto import inference_pb2 as pb

    response = pb.ModelInferResponse.FromString(message)
    for index, output in enumerate(response.outputs):
        if output.name != OUTPUT:
            continue
        shape = tuple(output.shape)
        if response.raw_output_contents:
            raw = response.raw_output_contents[index]
            return np.frombuffer(raw, dtype="<f4").reshape(shape)
        return np.asarray(output.contents.fp32_contents, dtype=np.float32).reshape(shape)
    raise ValueError(f"the answer has no {OUTPUT!r} output")


@dataclass(frozen=True)
class V2Request:
    """One model's request as files (what wrk and h2load replay) and as bytes (the checks)."""

    model: str
    rest: LoadTarget  # without its url (``for_rest`` adds it)
    grpc: LoadTarget  # without its address (``for_grpc`` adds it)
    body: bytes
    header_length: int
    message: bytes


def write_request(model: str, tensor: np.ndarray, workdir: Path) -> V2Request:
    """Both protocols' request for ``model`` written under ``workdir``."""
    body, header_length = rest_body(tensor)
    message = grpc_message(model, tensor)
    rest_path, grpc_path = workdir / f"{model}-v2.bin", workdir / f"{model}-grpc.bin"
    rest_path.write_bytes(body)
    grpc_path.write_bytes(message)
    headers = ((HEADER_LENGTH, str(header_length)),)
    return V2Request(
        model=model,
        rest=LoadTarget("", "POST", rest_path, OCTETS, 1, headers),
        grpc=LoadTarget("", MODEL_INFER, grpc_path, None, 1),
        body=body,
        header_length=header_length,
        message=message,
    )
