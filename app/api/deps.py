"""Dependencies as ``Annotated`` aliases: settings, registry, jobs, sync and the admin guard."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.config import Settings
from app.errors import Forbidden, Unauthorized
from app.serving.evaluations import Evaluator
from app.serving.jobs import Jobs
from app.serving.precision_jobs import PrecisionTrials
from app.serving.registry import ModelRegistry
from app.serving.sync import ParameterSync

_bearer = HTTPBearer(auto_error=False, description="TORCHGATE_ADMIN_TOKEN")


# Dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` ones in a thread pool,
# which would add two thread hops to every request for a dictionary lookup.


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def liveness_failure(request: Request) -> str | None:
    """Why this process can no longer serve until it restarts (None: it can): its device
    failed, or its control-store sync stalled. The liveness probes ask for that restart.
    Before the lifespan there is no registry, and no failure."""
    registry = getattr(request.app.state, "registry", None)
    return None if registry is None else registry.liveness_failure


async def get_jobs(request: Request) -> Jobs:
    return request.app.state.jobs


async def get_sync(request: Request) -> ParameterSync:
    return request.app.state.sync


async def get_evaluator(request: Request) -> Evaluator:
    return request.app.state.evaluator


async def get_trials(request: Request) -> PrecisionTrials:
    return request.app.state.trials


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Constant-time bearer check: 401 without a token, 403 with a wrong one."""
    if credentials is None:
        raise Unauthorized(
            "this admin endpoint needs 'Authorization: Bearer <token>' "
            "(the token is TORCHGATE_ADMIN_TOKEN, or the one logged at start-up)."
        )
    expected: str | None = request.app.state.admin_token  # None: the admin API is off
    if expected is None or not hmac.compare_digest(
        credentials.credentials.encode(), expected.encode()
    ):
        raise Forbidden("the admin token is not valid.")


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
JobsDep = Annotated[Jobs, Depends(get_jobs)]
SyncDep = Annotated[ParameterSync, Depends(get_sync)]
EvaluatorDep = Annotated[Evaluator, Depends(get_evaluator)]
TrialsDep = Annotated[PrecisionTrials, Depends(get_trials)]
AdminDep = Depends(require_admin)
