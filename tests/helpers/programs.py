"""Debian programs that tests drive for real (redis-server, haproxy, wrk, h2load, chromium,
g++)."""

from __future__ import annotations

import os
import shutil

import pytest


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
