"""HTTP routes: thin handlers that parse, call the serving layer and shape responses."""

from fastapi import APIRouter

from app.api import admin, docs, explain, health, inference, models, ui, v2

# Gathered in one place, their routes put into the app as one list (app/api/routes.py):
# Starlette tries them in order, so the inference routes come first.
PUBLIC_ROUTERS: tuple[APIRouter, ...] = (
    inference.router,
    v2.infer_router,
    explain.router,
    v2.router,
    health.router,
    models.router,
    ui.router,
    docs.router,
)
ADMIN_ROUTER = admin.router
