"""Shared fixtures: test weights files, settings and an app client that has finished loading."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import torchvision
from asgi_lifespan import LifespanManager
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.datasets import class_names
from app.main import create_app
from app.nets.gan import ConditionalGenerator
from app.serving.weights import file_sha256, pretrained_filename
from app.zoo import SPECS

ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"  # 32+ characters: app/admin_token.py
REPO_ROOT = Path(__file__).resolve().parent.parent
# In-process apps never open the gRPC port (8001 by default), so tests can run side by side;
# a real server gets a free one from serve_process, and a test that wants it passes its own.
os.environ.setdefault("TORCHGATE_GRPC_PORT", "0")
# Servers compile AOTInductor graphs in the background (minutes of CPU for the ImageNet nets); the
# tests of that turn it on themselves, every other app and server serves eager.
os.environ.setdefault("TORCHGATE_COMPILE_GRAPHS", "false")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_random_weights(name: str, directory: Path, seed: int = 0) -> Path:
    """A randomly initialised state dict saved under the official file name (hash won't match)."""
    spec = SPECS[name]
    assert spec.pretrained is not None
    path = directory / pretrained_filename(spec.pretrained)
    if not path.exists():
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None)
        torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights dir holding alexnet test weights (the big networks are added on demand)."""
    directory = tmp_path_factory.mktemp("weights")
    write_random_weights("alexnet", directory)
    return directory


@pytest.fixture
def settings_factory(weights_dir: Path, tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
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

    return build


async def wait_ready(client: httpx.AsyncClient, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the app did not become ready in time")


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


@pytest.fixture
async def alexnet_client(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings_factory()) as client:
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


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def image_bytes(
    size: tuple[int, int] = (500, 375),
    color: tuple[int, int, int] = (200, 30, 30),
    fmt: str = "JPEG",
    mode: str = "RGB",
) -> bytes:
    """A small synthetic image; a gradient so that different colours give different inputs."""
    image = Image.new(mode, size, color if mode == "RGB" else 128)
    if mode == "RGB":
        for x in range(0, size[0], 7):
            for y in range(0, size[1], 11):
                image.putpixel((x, y), (x % 256, y % 256, (x + y) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def fashion_checkpoints(directory: Path) -> Path:
    """cnn, lstm and gan checkpoints: the trained ones in models/, and for the gan, until it is
    trained, a randomly initialised generator with a valid manifest (same serving path)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("cnn", "lstm", "gan"):
        manifest = REPO_ROOT / "models" / f"{name}.json"
        if manifest.is_file():
            checkpoint = json.loads(manifest.read_text())["checkpoint"]
            shutil.copy(manifest, directory)
            shutil.copy(REPO_ROOT / "models" / checkpoint, directory)
    if not (directory / "gan.json").is_file():
        torch.manual_seed(0)
        torch.save(ConditionalGenerator().state_dict(), directory / "gan.pt")
        architecture = {"module": "app.nets.gan", "class": "ConditionalGenerator", "kwargs": {}}
        manifest_data = {
            "name": "gan",
            "architecture": architecture,
            "checkpoint": "gan.pt",
            "sha256": file_sha256(directory / "gan.pt"),
            "classes": class_names("fashion-mnist"),
        }
        (directory / "gan.json").write_text(json.dumps(manifest_data))
    return directory


def assert_same_images_as_v1(images: np.ndarray, encoded_pngs: list[str]) -> None:
    """Generator outputs in [-1, 1] ([N,1,28,28]) against v1 generate's base64 PNGs: the same
    pixels, give or take one level of rounding."""
    pixels = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
    for mine, encoded in zip(pixels, encoded_pngs, strict=True):
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))
        assert np.abs(mine[0].astype(int) - png).max() <= 1


def metric_total(metrics_text: str, family: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include ``labels`` (Prometheus text)."""
    found = next(f for f in text_string_to_metric_families(metrics_text) if f.name == family)
    return sum(
        sample.value
        for sample in found.samples
        if all(sample.labels.get(key) == value for key, value in labels.items())
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    env: dict[str, str],
    log_path: Path,
    port: int | None = None,
    wait_ready: bool = True,
    args: tuple[str, ...] = (),
) -> Iterator[tuple[int, subprocess.Popen]]:
    """A real ``python -m app serve [args]`` on a loopback port (a free one unless given),
    ready unless told not to wait; the port and process.

    ``env`` is added to this process's environment; the server's output goes to ``log_path``.
    """
    port = port or free_port()
    full_env = {
        **os.environ,
        "TORCHGATE_PORT": str(port),
        "TORCHGATE_GRPC_PORT": str(free_port()),  # never Triton's 8001: tests run side by side
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", *args],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a hung one can be killed whole
        )
        try:
            deadline = time.monotonic() + 120
            while wait_ready and time.monotonic() < deadline:
                assert process.poll() is None, log_path.read_text()
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            else:
                if wait_ready:
                    raise AssertionError("server did not become ready")
            yield port, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:  # never leave a server (and its workers) behind
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
                    raise


@dataclass(frozen=True)
class RealServer:
    """A real server's HTTP base URL, gRPC target (host:port) and log file (JSON lines)."""

    http: str
    grpc: str
    log: Path


# What the modules that drive a real server with Triton's clients share: one server, booted once.
REAL_SERVER_MAX_UPLOAD_BYTES = 4_000_000


@contextmanager
def real_server_process(weights_dir: Path, directory: Path) -> Iterator[RealServer]:
    """``python -m app serve`` with alexnet (random weights), cnn, lstm and gan, over HTTP and
    gRPC, with a 4 MB message limit."""
    grpc_port = free_port()
    env = {
        "TORCHGATE_MODELS": "alexnet,cnn,lstm,gan",
        "TORCHGATE_WEIGHTS_DIR": str(weights_dir),
        "TORCHGATE_CHECKPOINT_DIR": str(fashion_checkpoints(directory / "models")),
        "TORCHGATE_DOWNLOAD_WEIGHTS": "false",
        "TORCHGATE_VERIFY_WEIGHTS": "false",
        "TORCHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_LOG_FORMAT": "json",
        "TORCHGATE_GRPC_PORT": str(grpc_port),
        "TORCHGATE_MAX_UPLOAD_BYTES": str(REAL_SERVER_MAX_UPLOAD_BYTES),
    }
    log = directory / "server.log"
    with serve_process(env, log) as (port, _):
        yield RealServer(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", log)


@pytest.fixture(scope="session")
def real_server(
    weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealServer]:
    """One real server, booted once for the modules that share it."""
    with real_server_process(weights_dir, tmp_path_factory.mktemp("real-server")) as server:
        yield server


def require_binary(name: str, package: str) -> str:
    """The path of a Debian-packaged program a test drives. CI installs them all (.ci/run),
    and there a missing one fails; elsewhere the test is skipped with how to install it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed: apt-get install -y {package} (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    """Debian's redis-server on a loopback port, persisting to ``folder`` (append-only file),
    so a test can stop it and start it again with its data, as a real deployment would;
    ``tls``: that port speaks TLS only (``options`` then name the certificates), and
    ``options`` are more redis-server flags (``--requirepass``, ...)."""

    def __init__(
        self, folder: Path, persist: bool = True, tls: bool = False, options: tuple[str, ...] = ()
    ) -> None:
        self.binary = require_binary("redis-server", "redis-server")
        self.folder = folder
        self.persist = persist
        self.tls = tls
        self.options = options
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        port = str(self.port)
        ports = ["--port", "0", "--tls-port", port] if self.tls else ["--port", port]
        command = [self.binary, *ports]
        command += ["--bind", "127.0.0.1", "--save", "", *self.options]
        command += ["--appendonly", "yes" if self.persist else "no", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"redis-server exited (port {self.port} taken?)"
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA, and a server and a client certificate it signed, as PEM files."""
    from tests.helpers.pki import make_pki  # cryptography, for the TLS tests only

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def haproxy(backend_ports: list[int], folder: Path) -> Iterator[int]:
    """Debian's haproxy in front of ``backend_ports``, round-robin per request, health-checked
    on /readyz; yields its port."""
    binary = require_binary("haproxy", "haproxy")
    port = free_port()
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{p} check inter 200ms fall 1 rise 1"
        for i, p in enumerate(backend_ports)
    )
    config = folder / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n"
        "    timeout server 60s\n    retries 3\n    option redispatch\n"
        f"frontend front\n    bind 127.0.0.1:{port}\n    default_backend replicas\n"
        "backend replicas\n    balance roundrobin\n    option httpchk GET /readyz\n"
        f"{servers}\n"
    )
    process = subprocess.Popen(
        [binary, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.1)
        else:
            raise AssertionError("haproxy did not come up")
        yield port
    finally:
        process.terminate()
        process.wait(10)
