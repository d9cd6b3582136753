"""The inference routes' parameters, read by the routes themselves and declared here for OpenAPI.

Why: FastAPI validates each declared parameter on every request with introspection it does not
cache, which was about a sixth of a small model's CPU per predict. The inference routes take
only the ``Request``, read the model name, version and ``top_k`` with the same checks a
declared parameter would get (``parsing.resolve_top_k``: an integer in range, else 422), and
their OpenAPI operation lists the parameters from here, so clients and fuzzers see them.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.config import Settings
from app.serving.registry import ModelRegistry

# The largest body of a public route that takes a few JSON fields (generate), parsed on the
# event loop: past it, 413 (app/api/parsing.py's read_small_body).
SMALL_JSON_BYTES = 64 * 1024


def serving_state(request: Request) -> tuple[ModelRegistry, Settings]:
    """The process's models and settings (what ``RegistryDep``/``SettingsDep`` give)."""
    state = request.app.state
    return state.registry, state.settings


def path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


MODEL_NAME = path_parameter("name", "The model's name, as GET /v1/models lists it.")
MODEL_VERSION = path_parameter("version", "The model's version (every model has version 1).")
TOP_K = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1},
    "description": "Labels per input, at most the model's class count (default 5).",
}
