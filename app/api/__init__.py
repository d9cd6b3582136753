"""HTTP routes: thin handlers that parse, call the serving layer and shape responses."""

from fastapi import APIRouter

from app.api import admin, docs, explain, health, inference, models, ui, v2

# Gathered in one place, each included straight into the app: FastAPI matches a request by
# walking the included routers in order, level by level, so the inference routers come first
# and nothing is nested (a level more was a tenth of the CPU per predict).
PUBLIC_ROUTERS: tuple[APIRouter, ...] = (
    inference.router,
    explain.router,
    v2.router,
    health.router,
    models.router,
    ui.router,
    docs.router,
)
ADMIN_ROUTER = admin.router
