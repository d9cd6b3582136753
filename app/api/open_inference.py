"""The Open Inference Protocol (KServe v2) itself, shared by its REST and gRPC adapters.

``api/v2.py`` (REST: JSON and binary bodies) and ``api/grpc`` (protobuf) only translate their
wire format: each turns its request into ``Tensor``s and ``OutputRequest``s and writes back the
``Inference`` that ``infer`` returns. Versions, metadata, readiness, limits and which
parameters answered are decided here, once, so both protocols answer alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app import __version__
from app.api.explain_options import EXPLAIN_KEYS
from app.api.payloads import check_tensor_elements
from app.api.v2_models import ATTRIBUTIONS, OutputRequest, infer_v2, signature_of
from app.api.v2_tensors import OutputTensor, Tensor
from app.config import Settings
from app.errors import BadRequest, NotFound
from app.serving.registry import ModelRegistry, ModelStatus
from app.serving.runtime import ModelRuntime

SERVER_NAME = "torchgate"
EXTENSIONS = ("binary_tensor_data", "classification")
PLATFORM = "pytorch"
MODEL_VERSION = "1"


@dataclass(frozen=True)
class Inference:
    """The outputs, in request order, and which parameters produced them."""

    model_name: str
    outputs: list[OutputTensor]
    parameters_version: int
    parameters_sha256: str

    @property
    def parameters(self) -> dict[str, Any]:
        """The response parameters both protocols send, to tell reloads apart."""
        return {
            "parameters_version": self.parameters_version,
            "parameters_sha256": self.parameters_sha256,
        }


def _check_version(name: str, version: str | None) -> None:
    if version and version != MODEL_VERSION:
        raise NotFound(f"model '{name}' has no version {version!r}; its only version is 1.")


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


def model_metadata(registry: ModelRegistry, name: str, version: str | None) -> dict[str, Any]:
    """Versions, platform, inputs and outputs (-1: a dimension that may vary)."""
    runtime = registry.runtime(name)
    _check_version(name, version)
    signature = signature_of(runtime)
    return {
        "name": runtime.spec.name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": [tensor.metadata() for tensor in signature.inputs],
        "outputs": [tensor.metadata() for tensor in signature.outputs],
        "parameters": precision_parameters(runtime),
    }


def precision_parameters(runtime: ModelRuntime) -> dict[str, Any]:
    """The precision served and, once one was promoted, what it measured against float32,
    flat (protocol parameters are scalars)."""
    parameters: dict[str, Any] = {"dtype": runtime.forward.precision}
    measured = runtime.precision_accuracy
    if measured is not None:  # as recorded by the promoting process: read defensively
        metric = measured.get("metric")
        parameters.update(
            precision_metric=metric,
            precision_accuracy=measured.get(metric) if isinstance(metric, str) else None,
            precision_float32=measured.get("float32"),
            precision_agreement=measured.get("agreement"),
            precision_measured_at=measured.get("measured_at"),
        )
    return parameters


def model_ready(registry: ModelRegistry, name: str, version: str | None) -> tuple[str, bool]:
    """The model's name and whether it serves now (an unknown model or version: 404)."""
    entry = registry.entry(name)
    _check_version(name, version)
    return entry.spec.name, entry.status is ModelStatus.READY


def model_runtime(registry: ModelRegistry, name: str, version: str | None) -> ModelRuntime:
    """The runtime that answers ``name`` (version ``None`` or empty: the only one)."""
    runtime = registry.runtime(name)
    _check_version(name, version)
    return runtime


def check_declared(
    runtime: ModelRuntime, shapes: Sequence[Sequence[int]], settings: Settings
) -> None:
    """The number of inputs and their declared shapes, checked before any data is decoded:
    10,000 inputs, or a shape of 10^12 elements, are refused without allocating anything."""
    known = len(signature_of(runtime).inputs)
    if len(shapes) > known:
        raise BadRequest(
            f"model '{runtime.spec.name}' takes at most {known} input tensors; the request "
            f"has {len(shapes)}."
        )
    for shape in shapes:
        if any(dimension < 0 for dimension in shape):
            raise BadRequest(f"shape {list(shape)} has a negative dimension.")
        check_tensor_elements(math.prod(shape), settings.max_tensor_elements)


def integer_parameter(parameters: Mapping[str, object], key: str, where: str) -> int | None:
    value = parameters.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"parameter '{key}' of {where} must be an integer; got {value!r}.")
    return value


def output_request(name: str, parameters: Mapping[str, object]) -> OutputRequest:
    """A requested output and its parameters (Triton's ``classification``, our ``top_k``,
    and an ``attributions`` output's method, steps, baseline and target)."""
    where = f"output '{name}'"
    return OutputRequest(
        name,
        classification=integer_parameter(parameters, "classification", where),
        top_k=integer_parameter(parameters, "top_k", where),
        explain=tuple((key, parameters[key]) for key in EXPLAIN_KEYS if key in parameters),
    )


def _explain_defaults(
    outputs: Sequence[OutputRequest], parameters: Mapping[str, object]
) -> list[OutputRequest]:
    """The request's own method, steps, baseline and target as the ``attributions`` output's
    defaults: clients such as tritonclient set request parameters, not an output's."""
    defaults = {key: parameters[key] for key in EXPLAIN_KEYS if key in parameters}
    if not defaults:
        return list(outputs)
    if not any(output.name == ATTRIBUTIONS for output in outputs):
        raise BadRequest(
            f"request parameters {', '.join(defaults)} apply to the '{ATTRIBUTIONS}' output; "
            "request that output, or leave them out."
        )
    return [
        replace(output, explain=tuple({**defaults, **dict(output.explain)}.items()))
        if output.name == ATTRIBUTIONS
        else output
        for output in outputs
    ]


async def infer(
    runtime: ModelRuntime,
    tensors: Sequence[Tensor],
    outputs: Sequence[OutputRequest],
    top_k: int | None,
    settings: Settings,
    parameters: Mapping[str, object] | None = None,
) -> Inference:
    """Run decoded input tensors through the model's runtime (the same queue as v1, or its
    explanation queue when ``attributions`` are asked for); ``parameters``: the request's."""
    outputs = _explain_defaults(outputs, parameters or {})
    results, version = await infer_v2(
        runtime, tensors, outputs, top_k, settings.max_images_per_request
    )
    return Inference(runtime.spec.name, results, version, runtime.sha256_of(version))
