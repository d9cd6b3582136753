"""Response helpers shared by the HTTP routes: orjson bodies and the parameter-version headers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def version_headers(version: int, sha256: str) -> dict[str, str]:
    """Which parameters answered (v1 and v2 REST alike; gRPC sends them as response
    parameters), so answers from before and after a reinitialize or reload can be told apart."""
    return {"X-Model-Version": str(version), "X-Model-Parameters-SHA256": sha256}
