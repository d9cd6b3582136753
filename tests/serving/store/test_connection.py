"""A Redis control store behind a password and behind (mutual) TLS, against real redis-servers:
the store connects with the settings that say how, a wrong password or an untrusted
certificate is an error naming the setting to fix, and settings that cannot work are refused
before anything starts."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.errors import ConfigurationError
from app.serving.store import ControlStore, StoreUnavailable, open_store
from app.serving.store.connection import redis_options
from tests.helpers.apps import admin_headers, running_app
from tests.helpers.redis_server import RedisServer

PASSWORD = secrets.token_hex(16)


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path_factory.mktemp("redis"), persist=False, options=("--requirepass", PASSWORD)
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
) -> Iterator[RedisServer]:
    """TLS only, a client certificate required, and a password: the whole of it."""
    files = ("--tls-cert-file", pki["server"], "--tls-key-file", pki["server_key"])
    files += ("--tls-ca-cert-file", pki["ca"], "--tls-auth-clients", "yes")
    server = RedisServer(
        tmp_path_factory.mktemp("redis-tls"),
        persist=False,
        tls=True,
        options=(*map(str, files), "--requirepass", PASSWORD),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connect(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., ControlStore]]:
    """The store the app opens for these settings (main.create_app's two calls)."""
    stores: list[ControlStore] = []

    def open_for(url: str, **settings: object) -> ControlStore:
        chosen = settings_factory(state_url=url, **settings)
        store = open_store(url, 5, 10, **redis_options(chosen, url))
        stores.append(store)
        return store

    yield open_for
    for store in stores:
        store.close()


def _round_trip(store: ControlStore) -> None:
    record = store.append_record("cnn", "reload", {}, "test:1", floor=1)
    assert store.records_after("cnn", record.version - 1) == [record]


def test_the_password_setting_or_the_urls_opens_the_store(
    password_server: RedisServer, connect: Callable[..., ControlStore]
) -> None:
    _round_trip(connect(password_server.url, state_password=PASSWORD))
    with_password = password_server.url.replace("redis://", f"redis://:{PASSWORD}@")
    _round_trip(connect(with_password))


@pytest.mark.parametrize("password", ["wrong-password", None])
def test_a_wrong_or_missing_password_names_the_setting(
    password_server: RedisServer,
    connect: Callable[..., ControlStore],
    password: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = connect(password_server.url, state_password=password)
    with pytest.raises(StoreUnavailable, match="refused the credentials") as refused:
        _round_trip(store)
    assert "TORCHGATE_STATE_PASSWORD" in str(refused.value)
    assert PASSWORD not in str(refused.value) and "wrong-password" not in str(refused.value)
    store.watch(lambda: None)  # the log of a running process says it too, once
    deadline = time.monotonic() + 10
    while "TORCHGATE_STATE_PASSWORD" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "refused the credentials: check TORCHGATE_STATE_PASSWORD" in caplog.text


def test_tls_with_a_client_certificate_opens_the_store(
    tls_server: RedisServer, connect: Callable[..., ControlStore], pki: dict[str, Path]
) -> None:
    assert tls_server.url.startswith("rediss://")
    tls = {"state_tls_cert_file": pki["client"], "state_tls_key_file": pki["client_key"]}
    _round_trip(
        connect(tls_server.url, state_password=PASSWORD, state_tls_ca_file=pki["ca"], **tls)
    )


def test_an_untrusted_server_certificate_names_the_ca_setting(
    tls_server: RedisServer, connect: Callable[..., ControlStore]
) -> None:
    store = connect(tls_server.url, state_password=PASSWORD)  # the system's CAs only
    with pytest.raises(StoreUnavailable, match="TORCHGATE_STATE_TLS_CA_FILE"):
        _round_trip(store)


def test_tls_without_a_client_certificate_or_tls_is_refused(
    tls_server: RedisServer, connect: Callable[..., ControlStore], pki: dict[str, Path]
) -> None:
    no_certificate = connect(tls_server.url, state_password=PASSWORD, state_tls_ca_file=pki["ca"])
    with pytest.raises(StoreUnavailable, match="unreachable"):
        _round_trip(no_certificate)
    plain = connect(tls_server.url.replace("rediss://", "redis://"), state_password=PASSWORD)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        _round_trip(plain)


@pytest.mark.anyio
async def test_the_app_runs_on_a_tls_store_with_a_password(
    tls_server: RedisServer, settings_factory: Callable[..., Settings], pki: dict[str, Path]
) -> None:
    settings = settings_factory(
        models=("cnn",),
        state_url=tls_server.url,
        state_password=PASSWORD,
        state_tls_ca_file=pki["ca"],
        state_tls_cert_file=pki["client"],
        state_tls_key_file=pki["client_key"],
    )
    async with running_app(settings) as client:
        answer = await client.post("/admin/models/cnn/reload", headers=admin_headers())
    assert answer.status_code == 200, answer.text
    assert answer.json()["converged"] and len(answer.json()["processes"]) == 1


@pytest.mark.parametrize(
    ("url", "settings", "refusal"),
    [
        ("sqlite://", {"state_password": "x"}, "for a Redis store only"),
        ("redis://h:6379/0", {"state_tls_ca_file": "ca"}, "TLS needs a rediss://"),
        ("rediss://h:6379/0", {"state_tls_cert_file": "c"}, "go together"),
        ("rediss://h:6379/0", {"state_tls_ca_file": "/nonexistent/ca.pem"}, "no file"),
        ("redis://:pw@h:6379/0", {"state_password": "pw"}, "not both"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_the_start(
    settings_factory: Callable[..., Settings],
    url: str,
    settings: dict[str, object],
    refusal: str,
) -> None:
    with pytest.raises(ConfigurationError, match=refusal) as refused:
        redis_options(settings_factory(state_url=url, **settings), url)
    assert "pw" not in str(refused.value).replace("password", "")  # the URL's is redacted
