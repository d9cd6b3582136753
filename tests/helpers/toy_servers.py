"""The bench tests' toy servers (tests/bench/conftest.py fixtures): what each records, for the
tests that drive them, and the toy HTTP app."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@dataclass
class ToyServer:
    """Counts what it answered per route; ``expected_upload`` is what /upload must receive."""

    base_url: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    expected_upload: tuple[str, str, bytes] | None = None


@dataclass
class EchoServer:
    """A gRPC server whose ModelInfer answers any message with an empty one, and fails a
    message of b"fail"; ``received`` counts the messages it got, by content."""

    port: int = 0
    received: Counter[bytes] = field(default_factory=Counter)


@dataclass
class MetricsServer:
    """Serves ``text`` at any path, as a server's /metrics (change it between scrapes)."""

    base_url: str = ""
    text: str = ""
    cpu: float = 0.0

    def cpu_seconds(self) -> float:  # as ServerProcess's, for code that reads both
        return self.cpu


def toy_app(state: ToyServer) -> Starlette:
    """The toy server's routes: /ok, /fail (500) and /upload (checks one expected file)."""

    async def ok(request: Request) -> PlainTextResponse:
        state.counts["ok"] += 1
        return PlainTextResponse("ok")

    async def fail(request: Request) -> PlainTextResponse:
        state.counts["fail"] += 1
        return PlainTextResponse("broken", status_code=500)

    async def upload(request: Request) -> PlainTextResponse:
        """200 only when the body holds exactly the expected file as a 'file' part."""
        async with request.form() as form:
            parts = form.getlist("file")
            expected = state.expected_upload
            good = (
                expected is not None
                and len(parts) == 1
                and not isinstance(parts[0], str)
                and (parts[0].filename, parts[0].content_type, await parts[0].read()) == expected
            )
        state.counts["upload_good" if good else "upload_bad"] += 1
        return PlainTextResponse("ok" if good else "wrong body", status_code=200 if good else 400)

    routes = [
        Route("/ok", ok),
        Route("/fail", fail),
        Route("/upload", upload, methods=["POST"]),
    ]
    return Starlette(routes=routes)
