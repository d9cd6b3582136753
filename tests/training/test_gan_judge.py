"""The independent judge: trained through the CLI, then scoring the committed GAN."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from app.training.cli import train_app
from app.training.gan_judge import mean_pairwise_distance

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def out(train_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch judge next to a copy of the committed GAN, then `train gan-judge`."""
    out = tmp_path_factory.mktemp("models")
    for name in ("gan.json", "gan.pt"):
        shutil.copy(MODELS / name, out / name)
    common = ["--out", str(out), "--data-dir", str(train_data_dir)]
    quick = ["--epochs", "1", "--batch-size", "64", "--limit", "512", "--device", "cpu"]
    trained = CliRunner().invoke(train_app, ["judge", *quick, *common, "--quiet"])
    assert trained.exit_code == 0, trained.output
    judged = CliRunner().invoke(train_app, ["gan-judge", "--per-class", "16", *common])
    assert judged.exit_code == 0, judged.output
    return out


def test_the_judge_is_its_own_classifier_scored_on_the_test_split(out: Path) -> None:
    manifest = json.loads((out / "judge.json").read_text())
    assert manifest["architecture"]["module"] == "app.nets.judge"
    assert manifest["test_n"] == 10_000 and 0.0 < manifest["test_accuracy"] <= 1.0
    assert manifest["command"].startswith("python -m app train judge --epochs 1")


def test_gan_judge_records_consistency_and_diversity_and_keeps_the_rest(out: Path) -> None:
    committed = json.loads((MODELS / "gan.json").read_text())
    manifest = json.loads((out / "gan.json").read_text())
    figures = manifest.pop("independent_judge")
    committed.pop("independent_judge", None)
    assert manifest == committed  # the served figures and weights are untouched
    judge = json.loads((out / "judge.json").read_text())
    assert figures["sha256"] == judge["sha256"]
    assert figures["test_accuracy"] == judge["test_accuracy"]
    assert figures["n"] == 160 and len(figures["per_class_consistency"]) == 10
    hits = [row[i] for i, row in enumerate(figures["confusion_matrix"])]
    assert figures["consistency"] == sum(hits) / 160
    diversity = figures["diversity"]
    assert len(diversity["generated"]) == len(diversity["real"]) == 10
    assert all(value > 0 for value in diversity["generated"] + diversity["real"])
    assert (out / "gan-judge.png").stat().st_size > 0


def test_gan_judge_without_a_judge_says_to_train_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = CliRunner().invoke(train_app, ["gan-judge", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "run `python -m app train judge` first" in caplog.text


def test_mean_pairwise_distance_counts_each_pair_of_distinct_rows() -> None:
    square = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(square) == pytest.approx((5 + 5 + 0) * 2 / 6)
    assert mean_pairwise_distance(torch.ones(5, 3)) == 0.0
    with pytest.raises(ValueError, match="fewer than two"):
        mean_pairwise_distance(torch.ones(1, 3))
