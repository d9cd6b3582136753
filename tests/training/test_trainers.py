"""One short epoch of every trainer on 512 images: artifacts written, loadable and honest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from app.datasets import class_names
from app.training.artifacts import build_net, sha256_file
from app.training.classifiers import TrainResult, train_lstm
from app.training.cli import train_app
from app.training.gan import train_gan
from app.training.options import TrainOptions
from tests.helpers.repo import REPO_ROOT

LIMIT = 512


@pytest.fixture(scope="module")
def out(train_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn (through the CLI, with random erasing and an EMA), lstm and gan trained for one
    epoch into one directory."""
    out = tmp_path_factory.mktemp("models")
    args = [
        "cnn",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--limit",
        str(LIMIT),
        "--data-dir",
        str(train_data_dir),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--erase",
        "0.5",
        "--ema-decay",
        "0.9",
        "--quiet",
    ]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def lstm_result(out: Path, train_data_dir: Path) -> TrainResult:
    options = TrainOptions(
        epochs=1,
        batch_size=32,
        lr=3e-3,
        data_dir=train_data_dir,
        out=out,
        limit=LIMIT,
        device="cpu",
    )
    return train_lstm(options, show_progress=False)


@pytest.fixture(scope="module")
def gan_result(out: Path, train_data_dir: Path) -> TrainResult:
    options = TrainOptions(
        epochs=1,
        batch_size=32,
        lr=2e-4,
        data_dir=train_data_dir,
        out=out,
        limit=LIMIT,
        device="cpu",
    )
    return train_gan(options, show_progress=False)


@pytest.mark.parametrize("name", ["cnn", "lstm", "gan"])
def test_checkpoint_is_a_plain_state_dict_matching_its_manifest(
    name: str, out: Path, lstm_result: TrainResult, gan_result: TrainResult
) -> None:
    manifest = json.loads((out / f"{name}.json").read_text())
    checkpoint = out / manifest["checkpoint"]
    assert manifest["sha256"] == sha256_file(checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    build_net(manifest["architecture"]).load_state_dict(state)
    assert manifest["architecture"]["module"] == f"app.nets.{name}"
    assert manifest["classes"] == class_names("fashion-mnist")
    assert manifest["limit"] == LIMIT and f"--limit {LIMIT}" in manifest["command"]
    assert manifest["command"].startswith(f"python -m app train {name} --epochs 1")
    for key in (
        "seed",
        "lr",
        "batch_size",
        "epochs",
        "wall_time_s",
        "device",
        "torch_version",
        "created_at",
        "normalization",
        "dataset",
    ):
        assert key in manifest, key
    assert (out / f"{name}-curves.png").stat().st_size > 0


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_classifier_is_scored_once_on_the_whole_test_split(
    name: str, out: Path, lstm_result: TrainResult
) -> None:
    manifest = json.loads((out / f"{name}.json").read_text())
    assert manifest["test_n"] == 10_000
    assert 0.1 < manifest["test_accuracy"] <= 1.0 and len(manifest["test_per_class_accuracy"]) == 10
    assert 0.0 <= manifest["val_accuracy"] <= 1.0 and manifest["best_epoch"] == 1


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_classifier_loss_goes_down(name: str, out: Path, lstm_result: TrainResult) -> None:
    history = json.loads((out / f"{name}.json").read_text())["history"]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["train_loss"][0] is None  # epoch 0 is the untrained network


def test_cnn_keeps_the_ema_and_records_the_recipe_that_repeats_it(out: Path) -> None:
    manifest = json.loads((out / "cnn.json").read_text())
    assert manifest["training"]["erase"] == 0.5 and manifest["training"]["ema_decay"] == 0.9
    assert manifest["command"].endswith("--erase 0.5 --ema-decay 0.9")
    history = manifest["history"]
    assert len(history["ema_val_accuracy"]) == len(history["val_accuracy"]) == 2
    assert manifest["val_accuracy"] == history["ema_val_accuracy"][1]  # the EMA was selected
    assert "EMA" in manifest["selection"]


def test_lstm_without_the_loop_options_records_them_off(
    out: Path, lstm_result: TrainResult
) -> None:
    manifest = lstm_result.manifest
    assert manifest["training"]["erase"] == 0.0 and manifest["training"]["ema_decay"] is None
    assert manifest["command"].endswith("--erase 0 --ema-decay 0")
    assert "ema_val_accuracy" not in manifest["history"]


def test_lstm_steps_reduce_the_training_loss(lstm_result: TrainResult) -> None:
    losses = lstm_result.step_losses
    assert len(losses) == LIMIT // 32
    assert sum(losses[-4:]) < sum(losses[:4])


def test_gan_writes_samples_and_a_consistency_score(out: Path, gan_result: TrainResult) -> None:
    manifest = gan_result.manifest
    assert (out / "gan-samples.png").stat().st_size > 0
    assert 0.0 <= manifest["consistency"] <= 1.0
    assert len(manifest["per_class_consistency"]) == 10
    assert manifest["judge"]["sha256"] == json.loads((out / "cnn.json").read_text())["sha256"]
    assert manifest["architecture"]["kwargs"]["z_dim"] == 100


def test_gan_discriminator_loss_goes_down(gan_result: TrainResult) -> None:
    losses = gan_result.step_losses
    assert sum(losses[-4:]) < sum(losses[:4])


def test_gan_without_a_trained_cnn_says_to_train_it(
    train_data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = CliRunner().invoke(
        train_app, ["gan", "--data-dir", str(train_data_dir), "--out", str(tmp_path), "--quiet"]
    )
    assert result.exit_code == 1
    assert "run `python -m app train cnn` first" in caplog.text
    assert not (tmp_path / "gan.pt").exists()


def test_lstm_cli_defaults_are_the_committed_recipe(train_data_dir: Path, tmp_path: Path) -> None:
    """`train lstm` without options trains what models/lstm.json records (the mean readout,
    random erasing, the EMA), and its manifest's command repeats it."""
    args = ["lstm", "--epochs", "1", "--batch-size", "64", "--limit", "256", "--quiet"]
    args += ["--data-dir", str(train_data_dir), "--out", str(tmp_path), "--device", "cpu"]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "lstm.json").read_text())
    committed = json.loads((REPO_ROOT / "models" / "lstm.json").read_text())
    kwargs = manifest["architecture"]["kwargs"]
    assert kwargs["readout"] == committed["architecture"]["kwargs"]["readout"] == "last_mean"
    for key in ("erase", "ema_decay", "label_smoothing", "grad_clip"):
        assert manifest["training"][key] == committed["training"][key], key
    assert manifest["command"].endswith("--readout last_mean --erase 0.25 --ema-decay 0.999")


def test_gan_with_the_auxiliary_classifier_records_it(
    out: Path, train_data_dir: Path, tmp_path: Path
) -> None:
    options = TrainOptions(
        epochs=1,
        batch_size=32,
        lr=2e-4,
        data_dir=train_data_dir,
        out=tmp_path,
        limit=256,
        device="cpu",
    )
    result = train_gan(options, judge=out / "cnn.json", show_progress=False, aux_weight=0.5)
    manifest = result.manifest
    assert manifest["training"]["auxiliary"]["weight"] == 0.5
    assert manifest["command"].endswith("--aux-weight 0.5")
    fake_accuracy = manifest["history"]["aux_fake_accuracy"]
    assert fake_accuracy[0] is None and 0.0 <= fake_accuracy[1] <= 1.0
    assert (tmp_path / "gan.pt").exists() and not (tmp_path / "aux.pt").exists()


def test_a_run_shorter_than_the_schedule_warm_up_still_trains(
    train_data_dir: Path, tmp_path: Path
) -> None:
    args = ["cnn", "--epochs", "1", "--batch-size", "64", "--limit", "200", "--quiet"]
    args += ["--data-dir", str(train_data_dir), "--out", str(tmp_path), "--device", "cpu"]
    result = CliRunner().invoke(train_app, args)  # 3 steps: OneCycleLR's warm-up would be 0
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cnn.json").read_text())["test_n"] == 10_000


def test_gan_cli_defaults_are_the_committed_recipe() -> None:
    """`train gan` without options trains what models/gan.json records."""
    command = typer.main.get_command(train_app).commands["gan"]
    defaults = {param.name: param.default for param in command.params}
    committed = json.loads((REPO_ROOT / "models" / "gan.json").read_text())
    assert defaults["aux_weight"] == committed["training"]["auxiliary"]["weight"] == 1.0
    assert (defaults["epochs"], defaults["batch_size"]) == (
        committed["epochs"],
        committed["batch_size"],
    )
    assert defaults["lr"] == committed["lr"] and defaults["seed"] == committed["seed"]
