"""Manifests rebuild only app.nets classes and catch a checkpoint that does not match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.nets import FashionCNN, RowLSTM
from app.training.artifacts import (
    ManifestError,
    build_net,
    constructor_kwargs,
    load_net,
    read_manifest,
    save_checkpoint,
    write_manifest,
)
from app.training.options import TrainOptions


def _write(tmp_path: Path, model: torch.nn.Module, kwargs: dict) -> Path:
    sha = save_checkpoint(model.state_dict(), tmp_path / "m.pt")
    manifest = {
        "name": "m",
        "architecture": {
            "module": type(model).__module__,
            "class": type(model).__name__,
            "kwargs": kwargs,
        },
        "checkpoint": "m.pt",
        "sha256": sha,
    }
    write_manifest(manifest, tmp_path / "m.json")
    return tmp_path / "m.json"


def test_round_trip_restores_the_same_weights(tmp_path: Path) -> None:
    kwargs = constructor_kwargs(RowLSTM, {"hidden_size": 16, "num_layers": 1})
    model = RowLSTM(**kwargs)
    rebuilt, manifest = load_net(_write(tmp_path, model, kwargs))
    assert manifest["architecture"]["kwargs"]["hidden_size"] == 16
    assert not rebuilt.training
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)


def test_a_replaced_checkpoint_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, FashionCNN(), constructor_kwargs(FashionCNN))
    torch.save(FashionCNN().state_dict(), tmp_path / "m.pt")
    with pytest.raises(ManifestError, match="sha256"):
        load_net(path)


def test_only_app_nets_and_torchvision_builders_are_built() -> None:
    with pytest.raises(ManifestError, match=r"app\.nets"):
        build_net({"module": "os", "class": "system", "kwargs": {}})
    with pytest.raises(ManifestError, match=r"not an nn\.Module"):
        build_net({"module": "app.nets.cnn", "class": "_block", "kwargs": {}})


def test_a_manifest_without_its_sha256_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ManifestError, match="lacks"):
        read_manifest(tmp_path / "bad.json")


def test_unknown_constructor_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="no keyword"):
        constructor_kwargs(FashionCNN, {"width": 3})


def test_command_repeats_the_run() -> None:
    options = TrainOptions(epochs=15, batch_size=256, lr=3e-3, seed=0)
    assert options.command("cnn") == (
        "python -m app train cnn --epochs 15 --batch-size 256 --lr 0.003 --seed 0 "
        "--dataset fashion-mnist"
    )
