"""Property-based fuzz of the whole OpenAPI schema: no 5xx, every response as documented.

Bounded for the README's command (``TORCHGATE_TEST_FUZZ_EXAMPLES`` examples per operation,
default 25: about 15 s on two cores); 2000 for a long run (docs/development.md). The app runs
in-process with alexnet (random weights), cnn, lstm and gan, and every request carries the
admin token so the admin routes are fuzzed past auth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from app.config import Settings
from app.main import create_app
from tests.helpers.apps import ADMIN_TOKEN, admin_headers

# The cnn first: schemathesis' coverage phase sends every boundary body of an operation to the
# first name (about a hundred reinitialize bodies), and a reinitialize of alexnet (61 M
# parameters) costs a third of a second; the fuzzing phase draws every name.
MODELS = ("cnn", "lstm", "gan", "alexnet")
MAX_EXAMPLES = int(os.environ.get("TORCHGATE_TEST_FUZZ_EXAMPLES", "25"))
FUZZ_CHECKS = [
    not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


def _narrow_model_names(document: dict[str, Any]) -> dict[str, Any]:
    """Draw ``{name}`` from the served models (plus one unknown) so cases reach the models;
    arbitrary names only ever meet the registry's 404, which tests/test_hostile_inputs.py covers."""
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "name":
                    parameter["schema"] = {"type": "string", "enum": [*MODELS, "no-such-model"]}
    return document


@pytest.fixture(scope="module")
def fuzz_app(
    weights_dir: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, asgi.ASGIClient]]:
    from tests.helpers.repo import REPO_ROOT

    settings = Settings(
        models=MODELS,
        weights_dir=weights_dir,
        download_weights=False,
        verify_weights=False,
        checkpoint_dir=REPO_ROOT / "models",
        data_dir=REPO_ROOT / "data",
        admin_token=ADMIN_TOKEN,
        device="cpu",
    )  # type: ignore[call-arg]
    app = create_app(settings)
    with asgi.get_client(app) as client:
        deadline = time.monotonic() + 120
        while client.get("http://testserver/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app did not become ready in time"
            time.sleep(0.05)
        client.headers.update(admin_headers())
        yield app, client
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: tuple[Any, asgi.ASGIClient]) -> schemathesis.BaseSchema:
    app, _ = fuzz_app
    schema = schemathesis.openapi.from_dict(_narrow_model_names(app.openapi()))
    schema.app = app
    return schema


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_schema(
    case: schemathesis.Case, fuzz_app: tuple[Any, asgi.ASGIClient]
) -> None:
    _, client = fuzz_app
    case.call_and_validate(session=client, checks=FUZZ_CHECKS)


def test_fuzz_examples_switch() -> None:
    assert MAX_EXAMPLES >= 1, "TORCHGATE_TEST_FUZZ_EXAMPLES must be a positive integer"
