"""A real ``python -m app serve`` process on a free loopback port, driven with httpx."""

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.apps import ADMIN_TOKEN
from tests.helpers.images import image_bytes
from tests.helpers.servers import free_port, serve_process


@pytest.fixture
def server(weights_dir: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    env = {
        "TORCHGATE_MODELS": "alexnet,vgg16",
        "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_VERIFY_WEIGHTS": "false",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    with serve_process(env, tmp_path / "server.log") as (port, process):
        yield f"http://127.0.0.1:{port}", process


@pytest.mark.integration
def test_real_server_serves_predictions_and_admin(server: tuple[str, subprocess.Popen]) -> None:
    base, process = server
    with httpx.Client(base_url=base, timeout=60) as client:
        assert client.get("/healthz").status_code == 200
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models["alexnet"]["status"] == "ready"
        assert models["vgg16"]["status"] == "unavailable"
        assert "vgg16-397923af.pth" in models["vgg16"]["reason"]
        response = client.post(
            "/v1/models/alexnet/predict",
            files=[("file", ("a.jpg", image_bytes(), "image/jpeg"))],
            params={"top_k": 2},
        )
        assert response.status_code == 200
        assert len(response.json()["predictions"][0]) == 2
        reinit = client.post(
            "/admin/models/alexnet/reinitialize",
            json={"seed": 3},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert reinit.status_code == 200
        assert client.post("/admin/models/alexnet/reload").status_code == 401
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


@pytest.mark.integration
def test_admin_api_on_its_own_listener(weights_dir: Path, tmp_path: Path) -> None:
    """TORCHGATE_ADMIN_PORT moves /admin off the public port; both share one set of models."""
    admin_port = free_port()
    env = {
        "TORCHGATE_MODELS": "alexnet",
        "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_VERIFY_WEIGHTS": "false",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_ADMIN_PORT": str(admin_port),
    }
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with serve_process(env, tmp_path / "server.log") as (port, process):
        public = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        admin = httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", timeout=60)
        before = public.get("/v1/models/alexnet").json()["parameters_sha256"]
        hidden = public.post(
            "/admin/models/alexnet/reinitialize", json={"seed": 1}, headers=headers
        )
        assert hidden.status_code == 404
        reinit = admin.post("/admin/models/alexnet/reinitialize", json={"seed": 1}, headers=headers)
        assert reinit.status_code == 200
        assert admin.post("/admin/models/alexnet/reload").status_code == 401
        after = public.get("/v1/models/alexnet").json()["parameters_sha256"]
        assert after == reinit.json()["parameters_sha256"] != before
        assert admin.get("/v1/models").status_code == 404  # the admin listener serves admin only
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_admin_api_can_be_disabled(settings_factory) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app(settings_factory(admin_enabled=False))
    paths = app.openapi()["paths"]
    assert not [path for path in paths if path.startswith("/admin")]
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.post("/admin/models/alexnet/reload", headers=headers).status_code == 404
