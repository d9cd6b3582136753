"""/ui's routes in process: security headers, the admin panel's whereabouts, the artifact
whitelist, and /docs and /redoc pointing only at local assets, under a policy of their own."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest

from app.api.ui import CONTENT_SECURITY_POLICY
from app.config import Settings
from tests.helpers.apps import running_app

pytestmark = pytest.mark.anyio


async def test_dashboard_files_carry_a_strict_policy(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(models=("cnn",))) as client:
        for path, media in [
            ("/ui/", "text/html"),
            ("/ui/static/app.js", "text/javascript"),
            ("/ui/static/precision.js", "text/javascript"),
            ("/ui/static/style.css", "text/css"),
            ("/ui/config.json", "application/json"),
            ("/ui/artifacts/cnn-curves.png", "image/png"),
        ]:
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith(media)
            assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
            assert response.headers["x-content-type-options"] == "nosniff"
        page = (await client.get("/ui/")).text
        assert "<style" not in page
        assert re.search(r"<script(?![^>]*\bsrc=)", page) is None  # no inline script
        assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers
        assert "http://" not in page and "https://" not in page
        assert (await client.get("/ui", follow_redirects=False)).headers["location"] == "/ui/"


async def test_config_names_the_admin_api_and_the_class_labels(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(models=("cnn",))) as client:
        config = (await client.get("/ui/config.json")).json()
    assert config["admin"] == "here"
    assert config["labels"]["cnn"][0] == "T-shirt/top"
    assert len(config["labels"]["cnn"]) == 10
    async with running_app(settings_factory(admin_enabled=False), ready=False) as client:
        assert (await client.get("/ui/config.json")).json()["admin"] == "disabled"
    async with running_app(settings_factory(admin_port=0), ready=False) as client:
        assert (await client.get("/ui/config.json")).json()["admin"] == "separate listener"


async def test_artifacts_are_a_whitelist(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(models=("cnn",))) as client:
        listed = (await client.get("/ui/artifacts")).json()["artifacts"]
        assert {"cnn-curves.png", "gan-samples.png", "gan-judge.png"} <= set(listed)
        for name in ["cnn.pt", "cnn.json", "..%2Fpyproject.toml", "..%2F..%2Fetc%2Fpasswd"]:
            response = await client.get(f"/ui/artifacts/{name}")
            assert response.status_code == 404, name
            assert "detail" in response.json()
        assert (await client.get("/ui/static/index.html")).status_code == 404
        assert (await client.get("/ui/static/..%2F__init__.py")).status_code == 404


async def test_docs_use_local_assets(settings_factory: Callable[..., Settings]) -> None:
    async with running_app(settings_factory(models=("cnn",)), ready=False) as client:
        for path in ["/docs", "/redoc"]:
            page = await client.get(path)
            assert page.status_code == 200
            urls = re.findall(r"(?:src|href)=['\"]([^'\"]+)", page.text)
            assert urls, path
            assert all(url.startswith("/") for url in urls), urls
            assert "https://" not in page.text.replace("https://github.com", "")
            for url in urls:
                assert (await client.get(url)).status_code == 200, url


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (directive.split() for directive in policy.split(";") if directive.strip())
    return {name: sources for name, *sources in parts}


async def test_docs_and_their_schema_carry_the_security_headers(
    settings_factory: Callable[..., Settings],
) -> None:
    """/docs and /redoc share the dashboard's origin, and so its admin token: no framing, no
    other origin, and no inline script but the page's own start-up one, by its hash."""
    async with running_app(settings_factory(models=("cnn",)), ready=False) as client:
        for path in ["/docs", "/redoc", "/openapi.json"]:
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            policy = _directives(response.headers["content-security-policy"])
            assert policy["frame-ancestors"] == policy["base-uri"] == ["'none'"], path
            assert not [s for v in policy.values() for s in v if "://" in s or s == "*"], path
            if path == "/openapi.json":
                assert policy["default-src"] == ["'none'"]  # data: runs and loads nothing
                continue
            scripts = policy["script-src"]
            assert policy["object-src"] == ["'none'"] and "'unsafe-eval'" not in scripts
            assert "'unsafe-inline'" not in scripts
            inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
            digests = [hashlib.sha256(script.encode()).digest() for script in inline]
            hashes = [f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests]
            assert scripts == ["'self'", *hashes]
        assert (
            "'unsafe-inline'" not in (await client.get("/docs")).headers["content-security-policy"]
        )  # Swagger UI needs no inline style; ReDoc's styled-components do
