"""The committed checkpoints in models/: intact, loadable safely and as good as promised."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from app.datasets import NORMALIZATION, class_names, load_tensors
from app.evaluation import evaluate_classifier, evaluate_gan_consistency
from app.training.artifacts import build_net, sha256_file

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
TARGETS = {"cnn": 0.935, "lstm": 0.90, "judge": 0.90}


def _manifest(name: str) -> dict[str, Any]:
    return json.loads((MODELS / f"{name}.json").read_text())


def _net(name: str) -> nn.Module:
    manifest = _manifest(name)
    state = torch.load(MODELS / manifest["checkpoint"], map_location="cpu", weights_only=True)
    model = build_net(manifest["architecture"])
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def test_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tensor, Tensor]:
    """The shipped Fashion-MNIST test split, read from a copy so the repo stays untouched."""
    data = tmp_path_factory.mktemp("data")
    (data / "fashion-mnist").mkdir()
    for source in (ROOT / "data" / "fashion-mnist").glob("t10k-*.gz"):
        shutil.copy(source, data / "fashion-mnist" / source.name)
    return load_tensors("fashion-mnist", "test", data)


@pytest.mark.parametrize("name", ["cnn", "lstm", "gan", "judge"])
def test_checkpoint_matches_its_manifest_and_loads_safely(name: str) -> None:
    manifest = _manifest(name)
    checkpoint = MODELS / manifest["checkpoint"]
    assert sha256_file(checkpoint) == manifest["sha256"]
    assert checkpoint.stat().st_size < 10 * 2**20
    assert manifest["architecture"]["module"] == f"app.nets.{name}"
    assert manifest["classes"] == class_names("fashion-mnist")
    mean, std = NORMALIZATION["fashion-mnist"]
    assert manifest["normalization"] == {"mean": mean, "std": std}
    _net(name)  # strict load into the net the manifest's kwargs build


@pytest.mark.parametrize("name", ["cnn", "lstm", "judge"])
def test_classifier_reaches_its_target_on_the_test_split(
    name: str, test_split: tuple[Tensor, Tensor]
) -> None:
    model = _net(name)
    rows = name == "lstm"
    with torch.inference_mode():
        result = evaluate_classifier(
            lambda x: model(x[:, 0] if rows else x), *test_split, num_classes=10
        )
    assert result["accuracy"] >= TARGETS[name]
    assert result["accuracy"] == pytest.approx(_manifest(name)["test_accuracy"], abs=5e-4)


def test_gan_makes_what_the_cnn_recognises() -> None:
    gen, cnn = _net("gan"), _net("cnn")
    result = evaluate_gan_consistency(gen, cnn, per_class=100, seed=0)
    assert result["consistency"] >= 0.85
    assert result["all_classes_produced"]
    assert result["consistency"] == pytest.approx(_manifest("gan")["consistency"], abs=2e-3)


def test_the_gan_is_scored_by_the_committed_independent_judge() -> None:
    figures = _manifest("gan")["independent_judge"]
    judge = _manifest("judge")
    assert figures["sha256"] == judge["sha256"]
    assert figures["test_accuracy"] == judge["test_accuracy"]
    assert judge["architecture"]["class"] != _manifest("cnn")["architecture"]["class"]
    assert figures["per_class"] >= 100 and len(figures["per_class_consistency"]) == 10
    diversity = figures["diversity"]
    assert len(diversity["generated"]) == len(diversity["real"]) == 10
    assert (MODELS / "gan-judge.png").is_file()
