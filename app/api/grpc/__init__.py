"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``, KServe v2 / Triton).

``tensors`` translates protobuf messages, ``servicer`` answers the six methods through the same
``api/open_inference`` as the REST adapter, and ``server`` runs them on TORCHGATE_GRPC_PORT in
the app's event loop.
"""
