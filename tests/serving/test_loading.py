import importlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torchvision

from app.errors import WeightsUnavailable
from app.serving import loading
from app.serving.loading import WeightsLocation, load_model
from app.zoo import SPECS
from tests.helpers.repo import REPO_ROOT
from tests.helpers.weights import write_random_weights


def _where(weights_dir: Path, tmp_path: Path) -> WeightsLocation:
    return WeightsLocation(weights_dir, tmp_path, download=False, verify=False)


def test_pretrained_model_loads_its_file_exactly(weights_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(SPECS["alexnet"], _where(weights_dir, tmp_path), torch.device("cpu"))
    reference = torchvision.models.alexnet()
    reference.load_state_dict(torch.load(weights_dir / "alexnet-owt-7be5be79.pth"))
    reference.eval()
    assert not loaded.module.training
    assert len(loaded.labels) == 1000 and loaded.labels[0] == "tench"
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), reference(x))
    assert all(not p.is_meta for p in loaded.module.parameters())
    assert loaded.source.endswith("alexnet-owt-7be5be79.pth")


def test_preprocessing_comes_from_the_weights_enum(weights_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(SPECS["alexnet"], _where(weights_dir, tmp_path), torch.device("cpu"))
    from tests.helpers.images import image_bytes

    assert loaded.codec is not None
    tensor = loaded.codec.from_image(image_bytes(), 40_000_000)
    assert tensor.shape == (3, 224, 224)


def test_wrong_architecture_in_the_file_is_unavailable(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(WeightsUnavailable, match="do not fit"):
        load_model(SPECS["alexnet"], _where(tmp_path, tmp_path), torch.device("cpu"))


@pytest.mark.parametrize("name", ["vgg16", "resnet101"])
def test_large_imagenet_models_load_and_classify(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp(name)
    path = write_random_weights(name, directory)
    loaded = load_model(SPECS[name], _where(directory, directory), torch.device("cpu"))
    reference = torchvision.models.get_model(name)
    reference.load_state_dict(torch.load(path))
    reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded.module(x), reference(x), atol=1e-5)
    assert not loaded.module.training and len(loaded.labels) == 1000


def test_models_load_side_by_side_importing_one_module_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry loads models on several threads. cnn, lstm and gan all import app.nets,
    and two threads importing one package at once can fail a load with Python's import
    deadlock error (seen in CI), so loads must import one module at a time."""
    inside, most = 0, 0
    count = threading.Lock()
    real_import = importlib.import_module

    def slow_import(name: str) -> object:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
        time.sleep(0.1)  # as a cold import from a slow disk would
        with count:
            inside -= 1
        return real_import(name)

    monkeypatch.setattr(loading.importlib, "import_module", slow_import)
    where = WeightsLocation(tmp_path, REPO_ROOT / "models", download=False, verify=True)
    names = ["cnn", "lstm", "gan"]
    start = threading.Barrier(len(names))

    def load(name: str) -> str:
        start.wait()
        return type(load_model(SPECS[name], where, torch.device("cpu")).module).__name__

    with ThreadPoolExecutor(len(names)) as pool:
        built = list(pool.map(load, names))
    assert built == ["FashionCNN", "RowLSTM", "ConditionalGenerator"]
    assert most == 1
