"""The dashboard at /ui: static files from the package, the admin panel's whereabouts, and the
training curves and GAN samples that ship with the checkpoints; all read-only, no privilege."""

from __future__ import annotations

import functools
import re
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field

from app.api.deps import RegistryDep, SettingsDep
from app.errors import NotFound
from app.ui import DOCS_ASSETS, STATIC_DIR

# No inline script or style anywhere under /ui: everything the page runs comes from here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
# Images the training CLI writes next to its checkpoints (cnn-curves.png, gan-samples.png)
MAX_LISTED_LABELS = 100  # the Fashion-MNIST models' ten, not ImageNet's thousand
ARTIFACT_NAME = re.compile(r"[a-z0-9]+-(curves|samples)\.png")

router = APIRouter(prefix="/ui", include_in_schema=False)
# /docs and /redoc from the Swagger UI and ReDoc files that fastapi-offline bundles: no CDN.
# Module-level handlers (not closures over the app), so a stopped app can be freed.
docs_router = APIRouter(include_in_schema=False)
DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
DOCS_ASSET_URL = "/static-offline-docs"
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
BLANK_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


class UIConfig(BaseModel):
    admin: Literal["here", "disabled", "separate listener"]
    labels: dict[str, list[str]] = Field(
        description="Class names of the loaded models with few classes (axes, class pickers)."
    )


class ArtifactList(BaseModel):
    artifacts: list[str]


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _artifact_names(settings: SettingsDep) -> list[str]:
    folder = settings.checkpoint_dir
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir() if ARTIFACT_NAME.fullmatch(p.name) and p.is_file()
    )


@router.get("")
async def redirect_to_dashboard() -> RedirectResponse:
    """/ui and /ui/ are the same page; relative asset paths need the slash."""
    return RedirectResponse("/ui/", status_code=307)


@router.get("/")
async def get_dashboard() -> Response:
    """The dashboard page."""
    return _secure(FileResponse(STATIC_DIR / "index.html", media_type="text/html"))


@router.get("/static/{name}")
async def get_static(name: str) -> Response:
    """The page's script and stylesheet (a fixed list: no path reaches the file system)."""
    if name not in STATIC_FILES:
        raise NotFound(f"No dashboard file {name!r}.")
    return _secure(FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name]))


@router.get("/config.json")
async def get_ui_config(settings: SettingsDep, registry: RegistryDep) -> Response:
    """Where the admin API is, so the panel can say so instead of failing."""
    if not settings.admin_enabled:
        admin = "disabled"
    elif settings.admin_port is not None:
        admin = "separate listener"
    else:
        admin = "here"
    labels = {
        name: list(entry.runtime.labels)
        for name, entry in registry.entries.items()
        if entry.runtime is not None and len(entry.runtime.labels) <= MAX_LISTED_LABELS
    }
    body = UIConfig(admin=admin, labels=labels).model_dump_json()
    return _secure(Response(body, media_type="application/json"))


@router.get("/artifacts")
async def list_artifacts(settings: SettingsDep) -> Response:
    """The training curves and GAN samples in the checkpoint dir."""
    body = ArtifactList(artifacts=_artifact_names(settings)).model_dump_json()
    return _secure(Response(body, media_type="application/json"))


@router.get("/artifacts/{name}")
async def get_artifact(name: str, settings: SettingsDep) -> Response:
    """One of those images, by exact name."""
    if name not in _artifact_names(settings):
        raise NotFound(f"No artifact {name!r}; GET /ui/artifacts lists them.")
    return _secure(FileResponse(settings.checkpoint_dir / name, media_type="image/png"))


@docs_router.get("/docs")
async def get_swagger_ui(request: Request) -> Response:
    """Swagger UI over /openapi.json, from local assets."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{DOCS_ASSET_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSET_URL}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSET_URL}/favicon.png",
    )


@docs_router.get("/redoc")
async def get_redoc(request: Request) -> Response:
    """ReDoc over /openapi.json, from local assets and without web fonts."""
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{DOCS_ASSET_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{DOCS_ASSET_URL}/favicon.png",
        with_google_fonts=False,
    )


@docs_router.get(DOCS_ASSET_URL + "/{name}")
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
