"""How a Redis control store is reached beyond its URL: the password and the TLS files from
the settings, as redis-py's connection options, checked before any process starts; and the
setting to look at when Redis refuses us for good (a password, a certificate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.config import Settings
from app.errors import ConfigurationError
from app.serving.store.base import redact

# redis-py's keyword -> the setting that gives it
SETTINGS = {
    "password": "TORCHGATE_STATE_PASSWORD",
    "ssl_ca_certs": "TORCHGATE_STATE_TLS_CA_FILE",
    "ssl_certfile": "TORCHGATE_STATE_TLS_CERT_FILE",
    "ssl_keyfile": "TORCHGATE_STATE_TLS_KEY_FILE",
}
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _given(settings: Settings) -> dict[str, Any]:
    files = {
        "ssl_ca_certs": settings.state_tls_ca_file,
        "ssl_certfile": settings.state_tls_cert_file,
        "ssl_keyfile": settings.state_tls_key_file,
    }
    options: dict[str, Any] = {key: str(path) for key, path in files.items() if path is not None}
    if settings.state_password is not None:
        options["password"] = settings.state_password.get_secret_value()
    return options


def redis_options(settings: Settings, url: str) -> dict[str, Any]:
    """The keyword arguments redis-py needs for ``url`` beyond the URL itself."""
    options = _given(settings)
    names = ", ".join(SETTINGS[key] for key in options)
    if not options:
        return {}
    shown = repr(redact(settings.state_url)) if settings.state_url else "unset (SQLite)"
    if not url.startswith(REDIS_SCHEMES):
        raise ConfigurationError(
            f"{names}: for a Redis store only (redis://, rediss://), and TORCHGATE_STATE_URL "
            f"is {shown}."
        )
    tls = [key for key in options if key.startswith("ssl_")]
    if tls and not url.startswith("rediss://"):
        raise ConfigurationError(
            f"{names}: TLS needs a rediss:// TORCHGATE_STATE_URL, and it is {shown}."
        )
    if ("ssl_certfile" in options) != ("ssl_keyfile" in options):
        raise ConfigurationError(
            "TORCHGATE_STATE_TLS_CERT_FILE and TORCHGATE_STATE_TLS_KEY_FILE go together."
        )
    for key in tls:
        if not Path(options[key]).is_file():
            raise ConfigurationError(f"{SETTINGS[key]}: no file {options[key]}.")
    from redis.connection import parse_url  # here: a SQLite store never imports redis

    twice = sorted(set(options) & set(parse_url(url)))
    if twice:
        settings_named = ", ".join(SETTINGS[key] for key in twice)
        raise ConfigurationError(
            f"TORCHGATE_STATE_URL already gives {', '.join(twice)}; set it there or in "
            f"{settings_named}, not both."
        )
    return options


def refusal_hint(exc: Exception) -> str:
    """What to change when Redis refuses the client rather than being unreachable ('' when
    waiting may cure it)."""
    from redis.exceptions import AuthenticationError

    text = str(exc)
    if isinstance(exc, AuthenticationError) or text.startswith(("NOAUTH", "WRONGPASS")):
        return (
            "; it refused the credentials: check TORCHGATE_STATE_PASSWORD (or the URL's "
            "user and password)"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "; its TLS certificate was not trusted: check TORCHGATE_STATE_TLS_CA_FILE"
    return ""
