"""inference.proto and the modules generated from it (``python -m app.api.grpc.proto.generate``)."""
