"""In-process apps: settings for tests, the app's lifespan with an httpx client on it, admin
credentials, and a raw ASGI call for what httpx cannot send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from app.config import Settings
from app.main import create_app
from tests.helpers.repo import REPO_ROOT

ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"  # 32+ characters: app/admin_token.py


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def app_settings(weights_dir: Path, /, **overrides: object) -> Settings:
    """Settings of an in-process app: alexnet from ``weights_dir`` (random weights, not
    verified, never downloaded), the committed checkpoints, CPU, no gRPC port."""
    values: dict[str, object] = {
        "models": ("alexnet",),
        "weights_dir": weights_dir,
        "download_weights": False,
        "verify_weights": False,
        "checkpoint_dir": REPO_ROOT / "models",
        "data_dir": REPO_ROOT / "data",
        "admin_token": ADMIN_TOKEN,
        "device": "cpu",
        "grpc_port": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def wait_ready(client: httpx.AsyncClient, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the app did not become ready in time")


async def graphs_settled(client: httpx.AsyncClient, *names: str, timeout: float = 120.0) -> None:
    """Wait until each model serves its final graph (TorchScript is traced once the model is
    ready, then swapped in): answers compared byte for byte must come from one graph."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for name in names:
        while (await client.get(f"/v1/models/{name}")).json()["graph_pending"]:
            if loop.time() > deadline:
                raise AssertionError(f"{name}'s graph was not ready in time")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_app(settings: Settings, ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an httpx client on it (after loading, by default)."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=120
        ) as client:
            client.app_state = app.state  # type: ignore[attr-defined]  # what tests inspect
            if ready:
                await wait_ready(client)
            yield client


async def hang_up(
    app: Callable[..., Any],
    path: str,
    content_type: bytes,
    more_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> list[dict]:
    """POST ``path`` to the ASGI ``app`` from a client that disconnects before sending its
    body; returns the messages the app sent back."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", content_type), *more_headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent
