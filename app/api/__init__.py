"""HTTP routes: thin handlers that parse, call the serving layer and shape responses."""

from fastapi import APIRouter

from app.api import admin, health, inference, models, v2

public_router = APIRouter()
public_router.include_router(health.router)
public_router.include_router(models.router)
public_router.include_router(inference.router)
public_router.include_router(v2.router)

admin_router = admin.router
