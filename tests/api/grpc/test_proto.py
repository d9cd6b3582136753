"""inference.proto against Triton's grpc_service.proto (tritonclient's generated modules): the
same messages, fields and numbers, so tritonclient.grpc talks to torchgate unchanged; and the
committed modules are what the pinned grpcio-tools generates from the .proto now."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc import service_pb2 as triton

from app.api.grpc.proto import inference_pb2 as ours
from app.api.grpc.proto import inference_pb2_grpc

SERVICE = "GRPCInferenceService"


def _fields(message: Descriptor) -> dict[str, tuple]:
    """Every field of the message and its nested messages: number, type, repeated, oneof."""
    fields: dict[str, tuple] = {}
    for field in message.fields:
        oneof = field.containing_oneof.name if field.containing_oneof else None
        nested = field.message_type.full_name if field.message_type else None
        fields[f"{message.full_name}.{field.name}"] = (
            field.number,
            field.type,
            field.is_repeated,
            oneof,
            nested,
        )
    for nested_type in message.nested_types:
        fields.update(_fields(nested_type))
    return fields


@pytest.mark.parametrize("name", sorted(ours.DESCRIPTOR.message_types_by_name))
def test_every_message_matches_tritons(name: str) -> None:
    assert ours.DESCRIPTOR.package == triton.DESCRIPTOR.package == "inference"
    mine = _fields(ours.DESCRIPTOR.message_types_by_name[name])
    theirs = _fields(triton.DESCRIPTOR.message_types_by_name[name])
    assert mine == theirs


def test_the_service_is_tritons_first_six_methods() -> None:
    mine = ours.DESCRIPTOR.services_by_name[SERVICE]
    theirs = triton.DESCRIPTOR.services_by_name[SERVICE]
    signatures = {
        method.name: (method.input_type.full_name, method.output_type.full_name)
        for method in theirs.methods
    }
    assert [m.name for m in mine.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
    for method in mine.methods:
        assert signatures[method.name] == (
            method.input_type.full_name,
            method.output_type.full_name,
        )
    assert hasattr(inference_pb2_grpc, f"add_{SERVICE}Servicer_to_server")


def test_messages_cross_between_the_two_definitions() -> None:
    request = triton.ModelInferRequest(model_name="cnn", id="x")
    request.parameters["top_k"].int64_param = 3
    item = request.inputs.add(name="input", datatype="FP32", shape=[1, 2])
    item.contents.fp32_contents.extend([0.5, 1.5])
    request.raw_input_contents.append(b"\0" * 8)
    mine = ours.ModelInferRequest.FromString(request.SerializeToString())
    assert mine.SerializeToString(deterministic=True) == request.SerializeToString(
        deterministic=True
    )
    assert list(mine.inputs[0].contents.fp32_contents) == [0.5, 1.5]


def test_the_committed_modules_are_generated_from_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    from app.api.grpc.proto import generate

    for generated in generate.generate(tmp_path):
        committed = Path(generate.__file__).with_name(generated.name)
        assert generated.read_text() == committed.read_text(), (
            f"{committed.name} is stale: run python -m app.api.grpc.proto.generate"
        )
