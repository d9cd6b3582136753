"""Fixtures of the API tests: one app shared by the Open Inference Protocol (v2) modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.helpers.apps import ADMIN_TOKEN, running_app
from tests.helpers.weights import fashion_checkpoints


@pytest.fixture(scope="package")
def anyio_backend() -> str:
    """Package-wide, so that the shared app's event loop outlives each module."""
    return "asyncio"


@pytest.fixture(scope="package")
async def v2_client(
    weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """One app, booted once, for every v2 test module (they leave its parameters as found)."""
    settings = Settings(
        models=("cnn", "lstm", "gan", "alexnet", "vgg16"),  # vgg16: no weights, unavailable
        weights_dir=weights_dir,
        download_weights=False,
        verify_weights=False,
        checkpoint_dir=fashion_checkpoints(tmp_path_factory.mktemp("checkpoints")),
        admin_token=ADMIN_TOKEN,
        device="cpu",
    )
    async with running_app(settings) as client:
        yield client
