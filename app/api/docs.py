"""/docs (Swagger UI), /redoc (ReDoc) and /openapi.json, from the files fastapi-offline
bundles (no CDN), under a Content-Security-Policy and the dashboard's other headers: they
share its origin, and with it the admin token the dashboard keeps in ``sessionStorage``."""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse

from app.api.ui import SECURITY_HEADERS
from app.errors import NotFound
from app.ui import DOCS_ASSETS

OPENAPI_URL = "/openapi.json"
DOCS_ASSET_URL = "/static-offline-docs"
DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
BLANK_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
# Both pages: the bundles and the one inline start-up script FastAPI writes, admitted by its
# hash; images from the stylesheets' data: URIs; nothing from another origin, no plugins, no
# framing, no forms.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self'{styles}; "
    "img-src 'self' data:; worker-src 'self'{workers}; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# ReDoc alone writes <style> elements at run time (styled-components; only 'unsafe-inline'
# admits them) and builds its search index in a blob: worker.
SWAGGER_UI = {"styles": "", "workers": ""}
REDOC = {"styles": " 'unsafe-inline'", "workers": " blob:"}
# Data only: a JSON document runs nothing and loads nothing.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# Module-level handlers (not closures over the app), so a stopped app can be freed.
router = APIRouter(include_in_schema=False)


def _page(response: Response, allow: dict[str, str]) -> Response:
    """Headers for a page: its policy admits exactly the inline scripts it carries."""
    hashes = (hashlib.sha256(script).digest() for script in INLINE_SCRIPT.findall(response.body))
    scripts = "".join(f" 'sha256-{base64.b64encode(digest).decode()}'" for digest in hashes)
    return _with(response, PAGE_POLICY.format(scripts=scripts, **allow))


def _with(response: Response, policy: str) -> Response:
    response.headers.update({**SECURITY_HEADERS, "Content-Security-Policy": policy})
    return response


@router.get(OPENAPI_URL)
async def get_openapi(request: Request) -> Response:
    """The OpenAPI document the two pages render."""
    return _with(JSONResponse(request.app.openapi()), DATA_POLICY)


@router.get("/docs")
async def get_swagger_ui(request: Request) -> Response:
    """Swagger UI over /openapi.json, from local assets."""
    return _page(
        get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{request.app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSET_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSET_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSET_URL}/favicon.png",
        ),
        SWAGGER_UI,
    )


@router.get("/redoc")
async def get_redoc(request: Request) -> Response:
    """ReDoc over /openapi.json, from local assets and without web fonts."""
    return _page(
        get_redoc_html(
            openapi_url=OPENAPI_URL,
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSET_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSET_URL}/favicon.png",
            with_google_fonts=False,
        ),
        REDOC,
    )


@router.get(DOCS_ASSET_URL + "/{name}")
async def get_docs_asset(name: str) -> Response:
    """One of the bundled documentation files (a fixed list)."""
    if name not in DOCS_FILES:
        raise NotFound(f"No documentation asset {name!r}.")
    response: Response
    if name == "redoc.standalone.js":
        response = Response(_offline_redoc(), media_type=DOCS_FILES[name])
    else:
        response = FileResponse(DOCS_ASSETS / name, media_type=DOCS_FILES[name])
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@functools.cache
def _offline_redoc() -> bytes:
    """The bundled ReDoc, minus the one thing it fetches from the web: its vendor's logo
    (an inline empty SVG takes its place), so an offline host makes no outside request."""
    return (DOCS_ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, BLANK_SVG)
