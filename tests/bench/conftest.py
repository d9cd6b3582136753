"""Toy servers for the load generators, on loopback: a Starlette app under a real uvicorn, a
gRPC echo, a /metrics stand-in (their state types are in tests/helpers/toy_servers.py)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import uvicorn

from tests.helpers.toy_servers import EchoServer, MetricsServer, ToyServer, toy_app
from torchgate_bench.server import free_port


@pytest.fixture
def toy_server() -> Iterator[ToyServer]:
    state = ToyServer()
    port = free_port()
    config = uvicorn.Config(
        toy_app(state), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the toy server did not start"
        time.sleep(0.02)
    state.base_url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    state = EchoServer()

    def infer(request: bytes, context: grpc.ServicerContext) -> bytes:
        state.received[request] += 1
        if request == b"fail":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no")
        return b""

    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)},
    )
    server = grpc.server(ThreadPoolExecutor(4), handlers=[handler])
    state.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield state
    finally:
        server.stop(0)


@pytest.fixture
def metrics_server() -> Iterator[MetricsServer]:
    state = MetricsServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.text.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
