"""How path operations reach the app: the routers' routes as one flat list (their prefixes,
dependencies and order kept), ``RequestRoute`` for endpoints that take the Request alone, and
FastAPI's native OpenTelemetry only when asked for."""

from collections.abc import Callable

import httpx
import opentelemetry.trace
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.api import PUBLIC_ROUTERS, inference, v2
from app.api.routes import RequestRoute, add_routes
from app.config import Settings
from tests.helpers.apps import running_app

pytestmark = pytest.mark.anyio


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def _mark(response: Response) -> None:
    response.headers["X-Guarded"] = "yes"


async def test_routers_become_one_list_with_their_prefixes_dependencies_and_order() -> None:
    first = APIRouter(prefix="/a", dependencies=[Depends(_mark)])
    second = APIRouter(prefix="/a")

    @first.get("/{name}")
    async def by_first(name: str) -> dict[str, str]:
        return {"by": "first", "name": name}

    @second.get("/same")
    async def by_second() -> dict[str, str]:  # shadowed: the first router's route matches
        return {"by": "second"}

    @second.get("/x/y")
    async def deeper() -> dict[str, str]:
        return {"by": "second"}

    app = FastAPI()
    add_routes(app, [first, second])
    assert app.router.routes[-3:] == [*first.routes, *second.routes]
    async with _client(app) as client:
        same = await client.get("/a/same")
        assert same.json() == {"by": "first", "name": "same"}
        assert same.headers["X-Guarded"] == "yes"  # the router's dependency still runs
        deep = await client.get("/a/x/y")
        assert deep.json() == {"by": "second"} and "X-Guarded" not in deep.headers
        assert (await client.get("/b/same")).status_code == 404


class _Answer(BaseModel):
    length: int


async def test_a_request_route_calls_its_endpoint_and_documents_it_as_any_path_operation() -> None:
    router = APIRouter(prefix="/v9", route_class=RequestRoute)
    calls: list[Request] = []

    @router.post(
        "/things/{name}",
        response_model=_Answer,
        responses={413: {"description": "too large"}},
        openapi_extra={"requestBody": {"content": {"image/png": {"schema": {"type": "string"}}}}},
    )
    async def things(request: Request) -> Response:
        """Count a body."""
        calls.append(request)
        body = await request.body()
        name = request.path_params["name"]
        return Response(
            f'{{"length": {len(body)}}}', media_type="application/json", headers={"X-Name": name}
        )

    app = FastAPI()
    add_routes(app, [router])
    async with _client(app) as client:
        answer = await client.post("/v9/things/cnn", content=b"12345")
        assert answer.json() == {"length": 5} and answer.headers["X-Name"] == "cnn"
        assert (await client.get("/v9/things/cnn")).status_code == 405
    assert len(calls) == 1
    operation = app.openapi()["paths"]["/v9/things/{name}"]["post"]
    assert operation["summary"] == "Things" and operation["description"] == "Count a body."
    assert "image/png" in operation["requestBody"]["content"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/_Answer"
    }
    assert "413" in operation["responses"]


def _with_parameter(request: Request, top_k: int) -> Response:
    raise AssertionError("never called")


def _with_response(request: Request, response: Response) -> Response:
    raise AssertionError("never called")


async def _dependency() -> None:
    return None


@pytest.mark.parametrize(
    "endpoint, options",
    [
        (_with_parameter, {}),
        (_with_response, {}),
        (lambda: Response(), {}),
        (lambda request: Response(), {"dependencies": [Depends(_dependency)]}),
    ],
    ids=["a query parameter", "a response parameter", "no request", "a dependency"],
)
def test_a_request_route_refuses_an_endpoint_that_needs_fastapis_machinery(
    endpoint: Callable[..., Response], options: dict[str, object]
) -> None:
    router = APIRouter(route_class=RequestRoute, **options)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes the Request alone"):
        router.post("/x")(endpoint)


def test_the_inference_endpoints_are_request_routes_and_lead_the_route_list() -> None:
    assert PUBLIC_ROUTERS[:2] == (inference.router, v2.infer_router)
    lean = [*inference.router.routes, *v2.infer_router.routes]
    assert {route.path for route in lean} >= {  # type: ignore[attr-defined]
        "/v1/models/{name}/predict",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    assert all(type(route) is RequestRoute for route in lean)
    # everything else is an ordinary path operation, with FastAPI's parameters and dependencies
    assert all(type(route) is APIRoute for router in PUBLIC_ROUTERS[2:] for route in router.routes)


class _ProviderLookups:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = opentelemetry.trace.get_tracer_provider

        def counted() -> opentelemetry.trace.TracerProvider:
            self.count += 1
            return original()

        monkeypatch.setattr(opentelemetry.trace, "get_tracer_provider", counted)


@pytest.mark.parametrize("enabled", [False, True])
async def test_fastapis_opentelemetry_looks_for_providers_only_when_enabled(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    settings = settings_factory(models=("cnn",), opentelemetry=enabled)
    async with running_app(settings) as client:
        lookups = _ProviderLookups(monkeypatch)
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
    assert (lookups.count >= 3) if enabled else (lookups.count == 0)
