"""The admin token: guessable ones refused at start (``create_app`` and a real ``serve``), one
token for every worker of ``serve --workers N``, shown once (in the log, or only in a file)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.admin_token import admin_token, check_token
from app.config import Settings
from app.errors import ConfigurationError
from app.main import create_app
from tests.helpers.apps import admin_headers
from tests.helpers.servers import serve_process, serve_refusal
from tests.helpers.workers import fresh_client

OLD_PLACEHOLDER = "REPLACE-ME-with-openssl-rand-hex-32"  # what deploy/ shipped
LOGGED = re.compile(r"the admin token for this run is: (\S+)")


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (OLD_PLACEHOLDER, "placeholder"),
        ("change-me-" + "5f2a9c04e1d7b3a86c0f4e9d2b7a1c35", "placeholder"),
        ("x" * 31, "31 characters"),
        ("", "0 characters"),
        ("ab" * 20, "fewer than 8 different"),
    ],
)
def test_guessable_tokens_are_refused(token: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=f"TORCHGATE_ADMIN_TOKEN .*{why}"):
        check_token(token, "TORCHGATE_ADMIN_TOKEN")


@pytest.mark.parametrize("make", [secrets.token_hex, secrets.token_urlsafe], ids=["hex", "urlsafe"])
def test_generated_tokens_pass(make: Callable[[int], str]) -> None:
    """What ``openssl rand -hex 32`` and ``secrets`` make passes (ids fixed: xdist workers must
    collect the same tests)."""
    token = make(32)
    assert check_token(token, "TORCHGATE_ADMIN_TOKEN") == token


def test_create_app_refuses_a_placeholder_token(
    settings_factory: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigurationError, match="TORCHGATE_ADMIN_TOKEN is a placeholder"):
        create_app(settings_factory(admin_token=OLD_PLACEHOLDER))


def test_an_app_without_a_token_makes_its_own_and_logs_it_once(
    settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.admin_token"):
        first = create_app(settings_factory(admin_token=None)).state.admin_token
        second = create_app(settings_factory(admin_token=None)).state.admin_token
    assert first != second and len(first) >= 32
    assert [first in message for message in caplog.messages].count(True) == 1


def test_a_token_file_is_read_written_and_checked(
    settings_factory: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "admin-token"
    settings = settings_factory(admin_token=None, admin_token_file=path)
    with caplog.at_level(logging.WARNING, logger="app.admin_token"):
        made = admin_token(settings)  # no file yet: a new token, written there
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == made + "\n"
    assert made not in caplog.text and str(path) in caplog.text
    assert admin_token(settings) == made  # from then on, read back
    path.chmod(0o620)  # whoever else could write it could choose the token
    with pytest.raises(ConfigurationError, match="chmod 600"):
        admin_token(settings)
    path.unlink()
    path.write_text(OLD_PLACEHOLDER + "\n")
    path.chmod(0o400)  # as a Kubernetes Secret volume with defaultMode 0400 would have it
    with pytest.raises(ConfigurationError, match=f"{path} .*placeholder"):
        admin_token(settings)
    both = settings_factory(admin_token=secrets.token_hex(32), admin_token_file=path)
    with pytest.raises(ConfigurationError, match="not both"):
        admin_token(both)


# -- a real `python -m app serve` ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "why"),
    [(OLD_PLACEHOLDER, "is a placeholder"), ("s3cret-but-short", "has 16 characters")],
)
def test_serve_refuses_a_guessable_token(token: str, why: str) -> None:
    env = {**os.environ, "TORCHGATE_ADMIN_TOKEN": token, "TORCHGATE_MODELS": "cnn"}
    env.pop("TORCHGATE_ADMIN_TOKEN_FILE", None)
    done = serve_refusal(env)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: TORCHGATE_ADMIN_TOKEN {why}")
    assert "openssl rand -hex 32" in line and "s3cret" not in line  # a token is never echoed


def _every_worker_accepts(base: str, token: str, workers: int) -> set[str]:
    """Admin calls over fresh connections until each worker answered one: all must be 200.

    /readyz through the port says only that *one* worker is ready; a worker still replaying
    the control store answers 409 (retry), which is not a refusal of the token."""
    answered_by: set[str] = set()
    deadline = time.monotonic() + 120
    with fresh_client(base) as client:
        while len(answered_by) < workers and time.monotonic() < deadline:
            answer = client.get("/admin/models/cnn/accuracy", headers=admin_headers(token))
            if answer.status_code == 409 and "replaying" in answer.json()["detail"]:
                time.sleep(0.2)
                continue
            assert answer.status_code == 200, answer.text  # never 403 from another worker
            answered_by.add(answer.headers["X-Torchgate-Process"])
    return answered_by


def test_workers_share_one_generated_token_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TORCHGATE_ADMIN_TOKEN", "TORCHGATE_ADMIN_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = {"TORCHGATE_MODELS": "cnn", "TORCHGATE_DEVICE": "cpu", "TORCHGATE_TORCH_THREADS": "1"}
    log = tmp_path / "server.log"
    with serve_process(env, log, args=("--workers", "3")) as (port, _):
        (token,) = LOGGED.findall(log.read_text())
        assert len(_every_worker_accepts(f"http://127.0.0.1:{port}", token, 3)) == 3
        assert log.read_text().count(token) == 1


def test_a_generated_token_can_go_to_a_file_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TORCHGATE_ADMIN_TOKEN", raising=False)
    path = tmp_path / "admin-token"
    env = {
        "TORCHGATE_MODELS": "cnn",
        "TORCHGATE_DEVICE": "cpu",
        "TORCHGATE_TORCH_THREADS": "1",
        "TORCHGATE_ADMIN_TOKEN_FILE": str(path),
    }
    log = tmp_path / "server.log"
    with serve_process(env, log, args=("--workers", "2")) as (port, _):
        token = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(_every_worker_accepts(f"http://127.0.0.1:{port}", token, 2)) == 2
        assert token not in log.read_text() and str(path) in log.read_text()
