"""Open Inference Protocol (KServe v2) bodies; they are also the v2 OpenAPI documentation.

Tensor ``data`` is left unvalidated here (``Any``): checking a million floats one by one in
pydantic would cost more than the forward; v2_tensors checks it as one numpy array instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.open_inference import integer_parameter, output_request
from app.api.payloads import describe_validation_error
from app.api.v2_models import OutputRequest
from app.errors import BadRequest

Parameters = dict[str, Any]


MAX_TENSORS = 64  # inputs or outputs one request may name (the models have one or two)


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable dimension (the batch first).")


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="dtype: the precision served; precision_*: what it measured when promoted.",
    )


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ErrorV2Response(BaseModel):
    error: str = Field(description="What went wrong and how to fix it.")


class RequestInput(BaseModel):
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    parameters: Parameters = Field(default_factory=dict)
    data: Any = Field(default=None, description="Flat row-major or nested lists.")


class RequestOutput(BaseModel):
    name: str
    parameters: Parameters = Field(default_factory=dict)


class InferenceRequest(BaseModel):
    """``parameters.binary_data_output`` asks for binary outputs; ``top_k`` adds ``labels``."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: Parameters = Field(default_factory=dict)
    # bounded, so a header of a million items fails at the 65th, not with a million errors
    inputs: list[RequestInput] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[RequestOutput] = Field(default_factory=list, max_length=MAX_TENSORS)

    def top_k(self) -> int | None:
        return integer_parameter(self.parameters, "top_k", "the request")

    def output_requests(self) -> list[tuple[OutputRequest, bool]]:
        """Each requested output and whether it goes back as binary data (the extension's
        ``binary_data`` on the output, else ``binary_data_output`` on the request)."""
        default = self.binary_default()
        return [
            (
                output_request(output.name, output.parameters),
                _flag(output.parameters, "binary_data", f"output '{output.name}'", default),
            )
            for output in self.outputs
        ]

    def binary_default(self) -> bool:
        return _flag(self.parameters, "binary_data_output", "the request", False)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        default=None, description="binary_data_size when the data follows the JSON header."
    )
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str = Field(description="The request's id, or its X-Request-ID when it has none.")
    parameters: Parameters = Field(
        description="parameters_version and parameters_sha256 of the weights that answered."
    )
    outputs: list[ResponseOutput]


def _flag(parameters: Parameters, key: str, where: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"parameter '{key}' of {where} must be true or false; got {value!r}.")
    return value


def parse_inference_request(header: bytes) -> InferenceRequest:
    """Validate the JSON header of an inference request; any flaw is a 400 naming the field."""
    try:
        return InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        raise BadRequest(f"invalid inference request: {describe_validation_error(exc)}") from exc


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def inference_request_schema() -> dict[str, Any]:
    """The request's JSON schema with nested models inlined: the route reads the raw body
    (binary data may follow the JSON), so FastAPI cannot add the schema to components."""
    schema = InferenceRequest.model_json_schema()
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined
