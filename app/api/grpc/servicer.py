"""The six methods of ``inference.GRPCInferenceService``: protobuf to and from
``api/open_inference``, the data plane the REST adapter shares.

Nothing else happens here: the message was read and decoded by ``messages.py``, and request
ids, metrics, logging and status codes are the interceptors' (``interceptors.py``).
"""

from __future__ import annotations

import grpc

from app.api import open_inference as oip
from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto.inference_pb2_grpc import GRPCInferenceServiceServicer
from app.api.grpc.tensors import parameters_of, read_inputs, write_outputs, write_parameters
from app.config import Settings
from app.serving.registry import ModelRegistry
from app.tracing import current_request_id

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
Context = grpc.aio.ServicerContext


class InferenceServicer(GRPCInferenceServiceServicer):
    """Each method: its decoded request to open_inference, the answer back to protobuf."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        # not live once the device failed beyond repair or the parameter sync stalled: only a
        # restart helps (as /healthz)
        return pb.ServerLiveResponse(live=self._registry.liveness_failure is None)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._registry.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        _, ready = oip.model_ready(self._registry, request.name, request.version)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        metadata = oip.model_metadata(self._registry, request.name, request.version)
        response = pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
        )
        for field in ("inputs", "outputs"):
            for tensor in metadata[field]:
                getattr(response, field).add(**tensor)
        return response

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        registry, settings = self._registry, self._settings
        runtime = oip.model_runtime(registry, request.model_name, request.model_version)
        oip.check_declared(runtime, [item.shape for item in request.inputs], settings)
        tensors = read_inputs(request)
        outputs = [
            oip.output_request(output.name, parameters_of(output.parameters))
            for output in request.outputs
        ]
        parameters = parameters_of(request.parameters)
        top_k = oip.integer_parameter(parameters, "top_k", "the request")
        result = await oip.infer(runtime, tensors, outputs, top_k, settings, parameters)
        response = pb.ModelInferResponse(
            model_name=result.model_name,
            model_version=oip.MODEL_VERSION,
            id=request.id or current_request_id(),
        )
        write_parameters(response.parameters, result.parameters)
        write_outputs(response, result.outputs)
        return response
