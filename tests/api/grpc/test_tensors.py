"""Protobuf tensors and parameters to and from the protocol's own: raw and typed contents."""

from __future__ import annotations

import numpy as np
import pytest

from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.tensors import parameters_of, read_inputs, write_outputs, write_parameters
from app.api.v2_tensors import OutputTensor
from app.errors import BadRequest


def test_parameters_round_trip_with_their_types() -> None:
    response = pb.ModelInferResponse()
    values = {"flag": True, "count": 3, "ratio": 0.5, "sha": "ab12"}
    write_parameters(response.parameters, values)
    assert parameters_of(response.parameters) == values
    assert response.parameters["count"].WhichOneof("parameter_choice") == "int64_param"


def test_raw_and_typed_contents_decode_to_the_same_tensors() -> None:
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    raw = pb.ModelInferRequest()
    raw.inputs.add(name="input", datatype="FP32", shape=x.shape)
    raw.inputs.add(name="image", datatype="BYTES", shape=[2])
    raw.raw_input_contents.append(x.tobytes())
    raw.raw_input_contents.append(b"\x01\0\0\0a\x02\0\0\0bc")
    typed = pb.ModelInferRequest()
    typed.inputs.add(name="input", datatype="FP32", shape=x.shape).contents.fp32_contents.extend(
        x.reshape(-1).tolist()
    )
    typed.inputs.add(name="image", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
        [b"a", b"bc"]
    )
    for request in (raw, typed):
        tensor, image = read_inputs(request)
        np.testing.assert_array_equal(tensor.data, x)
        assert image.data == [b"a", b"bc"] and image.binary  # raw bytes, never base64


@pytest.mark.parametrize(
    ("datatype", "field", "values", "message"),
    [
        ("INT8", "int_contents", [300], "do not fit INT8"),
        ("FP32", "int64_contents", [1], "contents.fp32_contents"),
        ("FP16", "fp32_contents", [1.0], "raw_input_contents"),
        ("FP32", "fp32_contents", [1.0, 2.0], "needs 1 elements"),
        ("NOPE", "fp32_contents", [1.0], "unknown datatype"),
    ],
)
def test_typed_contents_must_fit_their_datatype(
    datatype: str, field: str, values: list, message: str
) -> None:
    request = pb.ModelInferRequest()
    item = request.inputs.add(name="x", datatype=datatype, shape=[1])
    getattr(item.contents, field).extend(values)
    with pytest.raises(BadRequest, match=message):
        read_inputs(request)


def test_typed_contents_and_raw_contents_do_not_mix() -> None:
    request = pb.ModelInferRequest()
    request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    request.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(BadRequest, match="send one of the two"):
        read_inputs(request)


def test_outputs_go_back_as_raw_contents() -> None:
    response = pb.ModelInferResponse()
    probabilities = np.array([[0.25, 0.75]], np.float32)
    write_outputs(
        response,
        [
            OutputTensor("probabilities", "FP32", (1, 2), probabilities),
            OutputTensor("labels", "BYTES", (1, 1), ["Bag"]),
        ],
    )
    assert [list(o.shape) for o in response.outputs] == [[1, 2], [1, 1]]
    assert response.raw_output_contents[0] == probabilities.tobytes()
    assert response.raw_output_contents[1] == b"\x03\0\0\0Bag"
