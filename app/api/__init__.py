"""HTTP routes: thin handlers that parse, call the serving layer and shape responses."""

from fastapi import APIRouter

from app.api import admin, health, inference, models, v2

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(models.router)
api_router.include_router(inference.router)
api_router.include_router(admin.router)
api_router.include_router(v2.router)
