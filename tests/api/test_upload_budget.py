"""The process-wide bound on request bytes held at once: taken as bytes arrive (never from a
declared length), a body that does not fit while others are read is answered 503 with
Retry-After on every route (raw, multipart, v2, a body FastAPI parses, chunked), and the bytes
are given back once each request is answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from app.api.upload_budget import UploadBudget
from app.config import Settings
from app.errors import Overloaded
from tests.helpers.apps import admin_headers, running_app
from tests.helpers.images import garment_png

PREDICT = "/v1/models/cnn/predict"

pytestmark = pytest.mark.anyio
LIMIT, IN_FLIGHT, HELD, SENT = 4_000, 5_000, 3_500, 3_000


def test_the_budget_refuses_what_does_not_fit_but_never_a_request_alone() -> None:
    budget = UploadBudget(max_bytes=100)
    budget.take(60)
    with pytest.raises(Overloaded, match="reading 60 bytes of other uploads"):
        budget.take(41)
    budget.take(40)
    budget.give_back(100)
    budget.take(500)  # alone: taken, so a bound below the upload limit refuses nothing alone
    assert budget.held == 500


@pytest.fixture
async def client(settings_factory: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_factory(
        models=("cnn",), max_upload_bytes=LIMIT, max_upload_bytes_in_flight=IN_FLIGHT
    )
    async with running_app(settings) as client:
        yield client


def _budget(client: httpx.AsyncClient) -> UploadBudget:
    return client.app_state.upload_budget  # type: ignore[attr-defined]


async def _slow_upload(client: httpx.AsyncClient, release: asyncio.Event) -> httpx.Response:
    """A raw predict of HELD declared bytes whose body stops after SENT until ``release``."""

    async def body() -> AsyncIterator[bytes]:
        yield b"\0" * SENT
        await release.wait()
        yield b"\0" * (HELD - SENT)

    headers = {"content-type": "image/png", "content-length": str(HELD)}
    return await client.post(PREDICT, content=body(), headers=headers)


async def test_bodies_that_do_not_fit_beside_a_slow_upload_get_503(client) -> None:
    release = asyncio.Event()
    slow = asyncio.create_task(_slow_upload(client, release))
    while _budget(client).held < SENT:
        await asyncio.sleep(0.01)
    big = b"\x89PNG" + b"\0" * 2_500
    refused = [
        await client.post(PREDICT, content=big, headers={"content-type": "image/png"}),  # raw
        await client.post(PREDICT, files=[("file", ("g.png", big, "image/png"))]),  # stack
        await client.post(
            "/v2/models/cnn/infer",
            content=b'{"inputs": []}' + b" " * 2_500,
            headers={"content-type": "application/json"},
        ),
        await client.post(  # a body FastAPI parses itself: still 503, not its 400
            "/admin/models/cnn/reinitialize",
            content=b'{"seed": 2}' + b" " * 2_500,
            headers={"content-type": "application/json", **admin_headers()},
        ),
    ]
    for response in refused:
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "X-Request-ID" in response.headers
    for response in (refused[0], refused[1], refused[3]):
        assert "TORCHGATE_MAX_UPLOAD_BYTES_IN_FLIGHT" in response.json()["detail"]
    assert "TORCHGATE_MAX_UPLOAD_BYTES_IN_FLIGHT" in refused[2].json()["error"]  # v2's key

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"\0" * 1_000

    streamed = await client.post(
        PREDICT, content=chunked(), headers={"content-type": "image/png"}
    )  # no Content-Length: refused once its chunks pass what is left
    assert streamed.status_code == 503
    small = await client.post(PREDICT, content=garment_png(), headers={"content-type": "image/png"})
    assert small.status_code == 200  # what fits is served meanwhile
    release.set()
    answered = await slow
    assert answered.status_code == 415  # the slow body was no image, and it was read whole
    assert _budget(client).held == 0
    again = await client.post(PREDICT, files=[("file", ("g.png", big, "image/png"))])
    assert again.status_code != 503


async def test_a_declared_length_takes_nothing_before_its_bytes_arrive(client) -> None:
    """A client that declares a large body and sends none holds nothing of the budget."""

    async def never() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    headers = {"content-type": "image/png", "content-length": str(LIMIT)}
    stalled = [
        asyncio.create_task(client.post(PREDICT, content=never(), headers=headers))
        for _ in range(5)
    ]
    await asyncio.sleep(0.2)
    assert _budget(client).held == 0
    served = await client.post(
        PREDICT, content=garment_png(), headers={"content-type": "image/png"}
    )
    assert served.status_code == 200
    for task in stalled:
        task.cancel()
    await asyncio.gather(*stalled, return_exceptions=True)


async def test_bytes_are_given_back_after_errors_and_hang_ups(client) -> None:
    junk = await client.post(PREDICT, content=b"junk", headers={"content-type": "image/png"})
    assert junk.status_code == 415 and _budget(client).held == 0
    too_big = await client.post(
        PREDICT, content=b"\0" * (LIMIT + 1), headers={"content-type": "image/png"}
    )
    assert too_big.status_code == 413
    release = asyncio.Event()
    slow = asyncio.create_task(_slow_upload(client, release))
    while _budget(client).held < SENT:
        await asyncio.sleep(0.01)
    slow.cancel()  # the client goes away half-way through its body
    with pytest.raises(asyncio.CancelledError):
        await slow
    for _ in range(100):
        if _budget(client).held == 0:
            break
        await asyncio.sleep(0.01)
    assert _budget(client).held == 0
