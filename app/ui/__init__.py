"""The dashboard's static files (``static/``): plain HTML, CSS and JavaScript, no build step."""

from pathlib import Path

import fastapi_offline

STATIC_DIR = Path(__file__).parent / "static"
# Swagger UI and ReDoc, as fastapi-offline bundles them
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
