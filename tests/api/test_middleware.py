"""The one HTTP middleware: an X-Request-ID on every response and on every log record of its
request, request metrics under bounded labels, and the body limit."""

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from app.api.http_errors import install_error_handlers
from app.api.middleware import ServingMiddleware
from app.api.upload_budget import UploadBudget
from app.metrics import Metrics
from app.tracing import RequestIdFilter, current_request_id

pytestmark = pytest.mark.anyio
logger = logging.getLogger("tests.middleware")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/work/{tag}")
    async def work(tag: str) -> dict[str, str]:
        logger.info("start %s", tag)
        await asyncio.sleep(0.01)
        logger.info("end %s", tag)
        return {"seen": current_request_id()}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    app.add_middleware(
        ServingMiddleware, metrics=Metrics(), max_body_bytes=1_000, budget=UploadBudget(10_000)
    )
    return app


def _client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_client_id_is_echoed_and_stamped_on_its_log_records(records) -> None:
    async with _client() as client:
        response = await client.get("/work/a", headers={"X-Request-ID": "trace-123"})
    assert response.headers["X-Request-ID"] == "trace-123"
    assert response.json() == {"seen": "trace-123"}
    assert [r.request_id for r in records.records] == ["trace-123", "trace-123"]


async def test_an_id_is_made_when_missing_or_unsafe(records) -> None:
    async with _client() as client:
        made = await client.get("/work/a")
        unsafe = await client.get("/work/b", headers={"X-Request-ID": "x" * 129})
        spaced = await client.get("/work/c", headers={"X-Request-ID": "two words"})
    ids = [r.headers["X-Request-ID"] for r in (made, unsafe, spaced)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == 3
    assert [r.request_id for r in records.records] == [i for i in ids for _ in range(2)]


async def test_concurrent_requests_keep_their_own_ids(records) -> None:
    async with _client() as client:
        responses = await asyncio.gather(
            *(client.get(f"/work/{i}", headers={"X-Request-ID": f"id-{i}"}) for i in range(5))
        )
    assert [r.json()["seen"] for r in responses] == [f"id-{i}" for i in range(5)]
    for record in records.records:
        assert record.request_id == f"id-{record.args[0]}"


async def test_unexpected_errors_are_logged_and_answered_with_the_id(records) -> None:
    error_logger = logging.getLogger("app.api.http_errors")
    error_logger.addHandler(records)
    try:
        async with _client() as client:
            response = await client.get("/boom", headers={"X-Request-ID": "trace-500"})
    finally:
        error_logger.removeHandler(records)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert response.headers["X-Request-ID"] == "trace-500"
    assert [r.request_id for r in records.records] == ["trace-500"]


async def test_bodies_over_the_limit_are_refused_before_and_while_reading() -> None:
    async with _client() as client:
        declared = await client.post("/echo", content=b"x" * 1_001)

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(3):
                yield b"x" * 400

        streamed = await client.post("/echo", content=chunks())
        fits = await client.post("/echo", content=b"x" * 1_000)
    assert declared.status_code == 413 and "TORCHGATE_MAX_UPLOAD_BYTES" in declared.json()["detail"]
    assert declared.headers["connection"] == "close" and "X-Request-ID" in declared.headers
    assert streamed.status_code == 413 and "TORCHGATE_MAX_UPLOAD_BYTES" in streamed.json()["detail"]
    assert fits.status_code == 200 and fits.json() == {"received": 1_000}


def test_request_labels_stay_bounded_whatever_clients_send() -> None:
    """Made-up methods and model names must not create new time series (or memory)."""

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    metrics = Metrics()
    middleware = ServingMiddleware(app, metrics, max_body_bytes=10, budget=UploadBudget(100))

    async def send(message):  # type: ignore[no-untyped-def]
        return None

    async def drive() -> None:
        for i in range(50):
            scope = {
                "type": "http",
                "method": f"M{i}",
                "path": "/x",
                "headers": [],
                "path_params": {"name": f"model-{i}"},
            }
            await middleware(scope, None, send)

    asyncio.run(drive())
    samples = [
        s
        for f in metrics.registry.collect()
        if f.name == "torchgate_http_requests"
        for s in f.samples
        if s.name.endswith("_total")
    ]
    assert len(samples) == 1
    assert samples[0].labels == {
        "model": "unknown",
        "route": "unmatched",
        "method": "OTHER",
        "code": "404",
    }


def _stalling_app():  # type: ignore[no-untyped-def]
    """The middleware around an endpoint that reads a body whose second chunk never comes."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    middleware = ServingMiddleware(
        app, Metrics(), max_body_bytes=1_000, budget=UploadBudget(10_000), chunk_timeout_s=0.2
    )
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]

    async def receive() -> dict:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)  # the client stalls
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "headers": [(b"content-type", b"application/octet-stream")],
        "client": ("127.0.0.1", 9),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "root_path": "",
        "http_version": "1.1",
    }
    return middleware(scope, receive, send), sent


async def test_a_stalled_body_is_answered_408_and_the_connection_closed() -> None:
    call, sent = _stalling_app()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(call, timeout=5)
    assert 0.2 <= loop.time() - started < 1.0  # the chunk timeout, at most a tick late
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = dict(start["headers"])
    assert start["status"] == 408 and headers[b"connection"] == b"close"
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"TORCHGATE_BODY_CHUNK_TIMEOUT_S" in body


async def test_another_cancellation_while_the_body_is_awaited_is_not_a_408() -> None:
    call, sent = _stalling_app()
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0.05)
    task.cancel()  # e.g. the server shutting down: it stays a cancellation
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(m["type"] == "http.response.start" for m in sent)
