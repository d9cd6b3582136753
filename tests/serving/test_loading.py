from pathlib import Path

import pytest
import torch
import torchvision

from app.errors import WeightsUnavailable
from app.serving.loading import WeightsLocation, load_model
from app.zoo import SPECS
from tests.conftest import write_random_weights


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
    from tests.conftest import image_bytes

    assert loaded.codec is not None
    tensor = loaded.codec.from_image(image_bytes(), 40_000_000)
    assert tensor.shape == (3, 224, 224)


def test_wrong_architecture_in_the_file_is_unavailable(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(WeightsUnavailable, match="do not fit"):
        load_model(SPECS["alexnet"], _where(tmp_path, tmp_path), torch.device("cpu"))


@pytest.mark.slow
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
