"""The admin token: configured (``TORCHGATE_ADMIN_TOKEN`` or ``TORCHGATE_ADMIN_TOKEN_FILE``)
and refused when it is guessable, or generated once per service and shown once.

``serve`` resolves it in its parent process and hands it to every worker through the
environment, so all workers check the same token and it is shown once; an app built
in-process without one generates its own. docs/security.md#secrets lists the rules.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from app.config import Settings
from app.errors import ConfigurationError

logger = logging.getLogger(__name__)
MIN_LENGTH = 32  # `openssl rand -hex 32` gives 64
MIN_DISTINCT = 8  # "aaaa…" or "0000…" is not a secret
# Refused as they are, whatever their case, and as the start of a token ("changeme-prod-1…"):
# what manifests and guides put where a secret goes, torchgate's own old one first.
PLACEHOLDERS = ("REPLACE-ME-with-openssl-rand-hex-32", "replace-me", "change-me", "changeme")
PLACEHOLDERS += ("placeholder", "your-token", "secret", "password", "example")
FILE_SETTING = "TORCHGATE_ADMIN_TOKEN_FILE"


def _looks_like(token: str, placeholder: str) -> bool:
    def squeeze(text: str) -> str:
        return "".join(char for char in text.lower() if char.isalnum())

    return squeeze(token).startswith(squeeze(placeholder))


def check_token(token: str, source: str) -> str:
    """``token`` if it may guard the admin API; else a ConfigurationError naming ``source``."""
    fix = "make one with `openssl rand -hex 32`, or unset it to have one generated"
    placeholder = next((p for p in PLACEHOLDERS if _looks_like(token, p)), None)
    if placeholder is not None:
        raise ConfigurationError(
            f"{source} is a placeholder ({placeholder!r}), known to anyone who read it: {fix}."
        )
    if len(token) < MIN_LENGTH:
        raise ConfigurationError(
            f"{source} has {len(token)} characters; an admin token needs at least "
            f"{MIN_LENGTH}: {fix}."
        )
    if len(set(token)) < MIN_DISTINCT:
        raise ConfigurationError(
            f"{source} repeats fewer than {MIN_DISTINCT} different characters: {fix}."
        )
    return token


def _read_token_file(path: Path) -> str:
    """The file's token; the file must be writable by its owner only (the server's user or
    root, as for a Kubernetes Secret mount): else anyone who could write it chose the token."""
    try:
        info = path.stat()
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{FILE_SETTING}: cannot read {path} ({exc}).") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"{FILE_SETTING}: {path} is not a regular file.")
    if info.st_uid not in (os.geteuid(), 0) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigurationError(
            f"{FILE_SETTING}: {path} may be written by someone else (owner uid "
            f"{info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}); it must belong to this "
            "user (or root) and be writable by its owner only: chmod 600 it."
        )
    return check_token(text.strip(), f"the token in {path} ({FILE_SETTING})")


def _write_token_file(path: Path, token: str) -> None:
    """A new file, readable and writable by this user only; never follows or reuses one."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigurationError(f"{FILE_SETTING}: cannot create {path} ({exc}).") from exc
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")


def configured_token(settings: Settings) -> str | None:
    """The token the settings give, checked; None when they give none."""
    path = settings.admin_token_file
    if settings.admin_token is not None:
        if path is not None:
            raise ConfigurationError(
                f"set TORCHGATE_ADMIN_TOKEN or {FILE_SETTING}, not both: which one is the token?"
            )
        return check_token(settings.admin_token.get_secret_value(), "TORCHGATE_ADMIN_TOKEN")
    if path is not None and (path.exists() or path.is_symlink()):
        return _read_token_file(path)
    return None


def admin_token(settings: Settings) -> str:
    """The token this service checks: the configured one, else a new one, shown once: logged,
    or written to TORCHGATE_ADMIN_TOKEN_FILE (mode 0600) when that names a file to be."""
    token = configured_token(settings)
    if token is not None:
        return token
    token = secrets.token_urlsafe(32)
    if settings.admin_token_file is None:
        logger.warning(
            "TORCHGATE_ADMIN_TOKEN is not set; the admin token for this run is: %s", token
        )
    else:
        _write_token_file(settings.admin_token_file, token)
        logger.warning(
            "TORCHGATE_ADMIN_TOKEN is not set; a new admin token was written to %s "
            "(readable by this user only)",
            settings.admin_token_file,
        )
    return token
