"""Protobuf <-> Open Inference Protocol tensors: raw and typed contents, and parameters.

Raw contents use the binary tensor data extension's layout (little-endian, row-major; a BYTES
element is a 4-byte length and its bytes), so both are decoded by ``api/v2_tensors``.
Outputs always go back as ``raw_output_contents``, as Triton sends them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.api.grpc.proto import inference_pb2 as pb
from app.api.v2_outputs import raw_bytes
from app.api.v2_tensors import (
    BYTES,
    OutputTensor,
    Tensor,
    bytes_tensor,
    check_datatype,
    check_unique_names,
    decode_tensor,
)
from app.errors import BadRequest

# The typed field that carries each datatype's values (FP16 has none: raw contents only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}


def parameters_of(entries: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """A parameters map as plain values (whichever of the oneof is set)."""
    values = {}
    for key, parameter in entries.items():
        kind = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, kind) if kind is not None else None
    return values


def write_parameters(target: Any, values: Mapping[str, object]) -> None:
    """Fill a parameters map field from plain values."""
    for key, value in values.items():
        parameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        else:
            parameter.string_param = str(value)


def _typed(item: pb.ModelInferRequest.InferInputTensor) -> Tensor:
    name, datatype = item.name, item.datatype
    check_datatype(name, datatype)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise BadRequest(
            f"input '{name}': {datatype} has no typed contents; send it in raw_input_contents."
        )
    used = [descriptor.name for descriptor, _ in item.contents.ListFields()]
    if used and used != [field]:
        raise BadRequest(
            f"input '{name}' is {datatype}: its values go in contents.{field} (or in "
            f"raw_input_contents); got {', '.join(used)}."
        )
    values = getattr(item.contents, field)
    if datatype == BYTES:
        return bytes_tensor(name, item.shape, list(values))
    return decode_tensor(name, datatype, item.shape, data=list(values))


def read_inputs(request: pb.ModelInferRequest) -> list[Tensor]:
    """Every input, from its raw contents (one entry per input, in order) or typed contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "send one per input, in the inputs' order."
        )
    check_unique_names([item.name for item in request.inputs])
    tensors = []
    for position, item in enumerate(request.inputs):
        if not raw:
            tensors.append(_typed(item))
            continue
        if item.contents.ListFields():
            raise BadRequest(
                f"input '{item.name}' has typed contents and the request raw_input_contents; "
                "send one of the two."
            )
        chunk = memoryview(raw[position])
        tensors.append(decode_tensor(item.name, item.datatype, item.shape, chunk))
    return tensors


def write_outputs(response: pb.ModelInferResponse, outputs: Sequence[OutputTensor]) -> None:
    for output in outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        response.raw_output_contents.append(raw_bytes(output))
