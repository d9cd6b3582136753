"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``, KServe v2 / Triton),
served by grpcio's grpc.aio server on TORCHGATE_GRPC_PORT in the app's event loop.

``server`` builds and runs it (``options``: its limits and TLS; ``health``: grpc.health.v1 over
the registry's readiness; server reflection), ``messages``, ``interceptors`` and ``status`` do
what every call needs (its message read and budgeted, request ids, metrics, logs, status
codes; ``handlers`` wraps each method once for them), and ``servicer`` (with ``tensors``)
only converts protobuf to and from ``api/open_inference``, which the REST adapter shares.
"""
