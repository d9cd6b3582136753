"""The dashboard at /ui: static files from the package, the admin panel's whereabouts, and the
training curves and GAN samples that ship with the checkpoints; all read-only, no privilege."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field

from app.api.deps import RegistryDep, SettingsDep
from app.errors import NotFound
from app.ui import STATIC_DIR

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
STATIC_FILES = {
    "app.js": "text/javascript",
    "precision.js": "text/javascript",
    "style.css": "text/css",
}
# Images the training CLI writes next to its checkpoints (cnn-curves.png, gan-samples.png,
# gan-judge.png)
MAX_LISTED_LABELS = 100  # the Fashion-MNIST models' ten, not ImageNet's thousand
ARTIFACT_NAME = re.compile(r"[a-z0-9]+-(curves|samples|judge)\.png")

router = APIRouter(prefix="/ui", include_in_schema=False)


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
