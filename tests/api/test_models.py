from collections.abc import Callable

import pytest

from app.config import Settings
from tests.conftest import running_app

pytestmark = pytest.mark.anyio


async def test_list_models_describes_each_enabled_model(
    settings_factory: Callable[..., Settings],
) -> None:
    async with running_app(settings_factory(models=("alexnet", "resnet101"))) as client:
        response = await client.get("/v1/models")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    alexnet, resnet = models["alexnet"], models["resnet101"]
    assert alexnet["status"] == "ready" and alexnet["reason"] is None
    assert alexnet["device"] == "cpu" and alexnet["dtype"] == "float32"
    assert alexnet["training"] is False
    assert alexnet["parameter_count"] == 61_100_840
    assert alexnet["labels"] == 1000
    assert len(alexnet["parameters_sha256"]) == 64
    assert alexnet["weights_source"].endswith("alexnet-owt-7be5be79.pth")
    assert "[N,3,H,W]" in alexnet["input"]
    assert alexnet["graph"].split(" + ")[0] in ("eager", "aot", "script", "compile")
    assert resnet["status"] == "unavailable"
    assert "resnet101-cd907fc2.pth" in resnet["reason"]


async def test_get_one_model(alexnet_client) -> None:
    response = await alexnet_client.get("/v1/models/alexnet")
    assert response.status_code == 200
    assert response.json()["name"] == "alexnet"


async def test_unknown_model_is_404_listing_the_valid_names(alexnet_client) -> None:
    response = await alexnet_client.get("/v1/models/bert")
    assert response.status_code == 404
    assert "alexnet" in response.json()["detail"] and "gan" in response.json()["detail"]


async def test_known_but_disabled_model_is_404(alexnet_client) -> None:
    response = await alexnet_client.get("/v1/models/vgg16")
    assert response.status_code == 404
    assert "TORCHGATE_MODELS" in response.json()["detail"]
