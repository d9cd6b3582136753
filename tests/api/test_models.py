from collections.abc import Callable

import anyio
import pytest

from app.config import Settings
from tests.helpers.apps import running_app

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


async def test_a_traced_graph_replaces_eager_after_readiness(
    settings_factory: Callable[..., Settings],
) -> None:
    """The cnn serves eager as soon as it is ready; its TorchScript graph (the CPU default,
    with oneDNN's inference passes) is traced in the background and swapped in, and
    /v1/models says which one answers."""
    async with running_app(settings_factory(models=("cnn",))) as client:
        body = (await client.get("/v1/models/cnn")).json()
        assert body["graph"].split(" + ")[0] in ("eager", "script-onednn")  # may be swapped
        for _ in range(300):
            if not body["graph_pending"]:
                break
            await anyio.sleep(0.05)
            body = (await client.get("/v1/models/cnn")).json()
    assert not body["graph_pending"] and body["graph"] == "script-onednn + channels_last"
