"""The six methods of ``inference.GRPCInferenceService``, answered by ``api/open_inference``.

Every call runs through ``_call``: it adopts the client's ``x-request-id`` metadata (or makes
one) so log lines carry it, echoes it in the trailing metadata, maps domain errors to status
codes with app/errors.py's table, and counts and times the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

import grpc
from prometheus_client import Counter, Histogram

from app.api import open_inference as oip
from app.api.grpc.proto import inference_pb2 as pb
from app.api.grpc.proto.inference_pb2_grpc import GRPCInferenceServiceServicer
from app.api.grpc.status import grpc_status
from app.api.grpc.tensors import parameters_of, read_inputs, write_outputs, write_parameters
from app.config import Settings
from app.errors import TorchgateError
from app.metrics import Metrics
from app.serving.registry import ModelRegistry
from app.tracing import (
    GRPC_ACCESS_LOGGER,
    GRPC_METADATA_KEY,
    adopt_request_id,
    current_request_id,
)
from app.zoo import SPECS

SERVICE = "inference.GRPCInferenceService"
T = TypeVar("T")
logger = logging.getLogger(__name__)
access_logger = logging.getLogger(GRPC_ACCESS_LOGGER)


def _request_id(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == GRPC_METADATA_KEY and isinstance(value, str):
            return value
    return None


def _ended_early(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status grpcio gives a call whose method it cancelled."""
    remaining = context.time_remaining()
    past_deadline = remaining is not None and remaining <= 0
    return grpc.StatusCode.DEADLINE_EXCEEDED if past_deadline else grpc.StatusCode.CANCELLED


class InferenceServicer(GRPCInferenceServiceServicer):
    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: Metrics) -> None:
        self._registry = registry
        self._settings = settings
        self._metrics = metrics
        # label children looked up once per (model, method, code), as the HTTP middleware does
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def _observe(self, model: str, method: str, code: grpc.StatusCode, seconds: float) -> None:
        label = model if model in SPECS or not model else "unknown"
        key = (label, method, code.name)
        children = self._children.get(key)
        if children is None:
            children = (
                self._metrics.grpc_requests.labels(label, method, code.name),
                self._metrics.latency.labels(label, f"/{SERVICE}/{method}"),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def _call(
        self, method: str, model: str, context: grpc.aio.ServicerContext, work: Awaitable[T]
    ) -> T:
        started = time.perf_counter()
        request_id = adopt_request_id(_request_id(context))
        context.set_trailing_metadata(((GRPC_METADATA_KEY, request_id),))
        try:
            response = await work
        except asyncio.CancelledError:  # the client cancelled, or the deadline passed
            if not getattr(context, "app_counts_cancelled_calls", False):
                self.finish(method, model, context, _ended_early(context), started)
            raise
        except TorchgateError as exc:
            code, details = grpc_status(exc), exc.detail
        except Exception:
            logger.exception("unhandled error in gRPC %s", method)
            code, details = grpc.StatusCode.INTERNAL, "internal server error"
        else:
            self.finish(method, model, context, grpc.StatusCode.OK, started)
            return response
        self.finish(method, model, context, code, started)
        await context.abort(code, details)  # raises: the status goes out with the trailers

    def finish(
        self,
        method: str,
        model: str,
        context: grpc.aio.ServicerContext,
        code: grpc.StatusCode,
        started: float,
    ) -> None:
        """Count, time and log one call (also one refused before its method ran)."""
        self._observe(model, method, code, time.perf_counter() - started)
        if self._settings.access_log:
            access_logger.info('%s - "gRPC %s %s" %s', context.peer(), method, model, code.name)

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return await self._call("ServerLive", "", context, self._live())

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return await self._call("ServerReady", "", context, self._ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return await self._call("ModelReady", request.name, context, self._model_ready(request))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return await self._call("ServerMetadata", "", context, self._server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        work = self._model_metadata(request)
        return await self._call("ModelMetadata", request.name, context, work)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        return await self._call("ModelInfer", request.model_name, context, self._infer(request))

    async def _live(self) -> pb.ServerLiveResponse:
        # not live once the device failed beyond repair: only a restart helps (as /healthz)
        return pb.ServerLiveResponse(live=self._registry.device_failure is None)

    async def _ready(self) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._registry.ready)

    async def _model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        _, ready = oip.model_ready(self._registry, request.name, request.version)
        return pb.ModelReadyResponse(ready=ready)

    async def _server_metadata(self) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def _model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        metadata = oip.model_metadata(self._registry, request.name, request.version)
        response = pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
        )
        for field in ("inputs", "outputs"):
            for tensor in metadata[field]:
                getattr(response, field).add(**tensor)
        return response

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        registry, settings = self._registry, self._settings
        runtime = oip.model_runtime(registry, request.model_name, request.model_version)
        oip.check_declared(runtime, [item.shape for item in request.inputs], settings)
        tensors = read_inputs(request)
        outputs = [
            oip.output_request(output.name, parameters_of(output.parameters))
            for output in request.outputs
        ]
        top_k = oip.integer_parameter(parameters_of(request.parameters), "top_k", "the request")
        result = await oip.infer(runtime, tensors, outputs, top_k, settings)
        response = pb.ModelInferResponse(
            model_name=result.model_name,
            model_version=oip.MODEL_VERSION,
            id=request.id or current_request_id(),
        )
        write_parameters(response.parameters, result.parameters)
        write_outputs(response, result.outputs)
        return response
