"""Fine-tuning a torchvision classifier on a tiny ImageFolder (random init: no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import models

from app.training.artifacts import build_net, sha256_file
from app.training.finetune import FINETUNABLE, finetune, split_parameters
from app.training.options import TrainOptions


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/val/test folders of two classes told apart by colour."""
    root = tmp_path_factory.mktemp("folder")
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for cls, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
            directory = root / split / cls
            directory.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40 + i, 48), colour).save(directory / f"{i}.png")
    return root


@pytest.mark.parametrize("name", ["alexnet", "resnet101"])
def test_head_and_backbone_parameters_are_split(name: str) -> None:
    model = models.get_model(name, weights=None)
    backbone, head = split_parameters(model, FINETUNABLE[name].head)
    assert len(backbone) + len(head) == len(list(model.parameters()))
    last = model.fc if name == "resnet101" else model.classifier[-1]
    assert any(p is last.weight for p in head)
    assert not any(p is last.weight for p in backbone)


def test_finetune_writes_a_rebuildable_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    options = TrainOptions(
        epochs=1, batch_size=4, lr=1e-3, dataset=str(image_folder), out=tmp_path, device="cpu"
    )
    result = finetune(
        "alexnet", image_folder, options, head_lr=1e-2, pretrained=False, show_progress=False
    )
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["architecture"] == {
        "module": "torchvision.models",
        "class": "alexnet",
        "kwargs": {"num_classes": 2},
    }
    assert manifest["classes"] == ["blue", "red"]
    assert manifest["optimizer"]["lr_head"] == 1e-2 and manifest["optimizer"]["lr_backbone"] == 1e-3
    assert manifest["test_n"] == 4 and 0.0 <= manifest["test_accuracy"] <= 1.0
    assert manifest["command"].startswith("python -m app train finetune alexnet --image-folder")
    checkpoint = tmp_path / manifest["checkpoint"]
    assert sha256_file(checkpoint) == manifest["sha256"]
    build_net(manifest["architecture"]).load_state_dict(torch.load(checkpoint, weights_only=True))


def test_unknown_model_names_the_choices(image_folder: Path, tmp_path: Path) -> None:
    options = TrainOptions(epochs=1, batch_size=4, lr=1e-3, out=tmp_path)
    with pytest.raises(ValueError, match="alexnet"):
        finetune("lenet", image_folder, options, pretrained=False)
