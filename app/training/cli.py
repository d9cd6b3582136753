"""`python -m app train ...`: the typer sub-application mounted by app/__main__.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.logging import RichHandler

from app.datasets import DatasetNotFound
from app.training.artifacts import ManifestError
from app.training.cli_options import (
    BatchSize,
    DataDir,
    Dataset,
    DatasetName,
    Device,
    EmaDecay,
    Epochs,
    Erase,
    FinetuneModel,
    Limit,
    Lr,
    LstmReadout,
    Out,
    Quiet,
    Seed,
)
from app.training.options import TrainOptions

if TYPE_CHECKING:
    from app.training.classifiers import TrainResult

# The trainers (and matplotlib) are imported inside each command: `python -m app serve` builds
# this CLI too and should not pay for them at start-up.

__all__ = ["train_app"]

log = logging.getLogger(__name__)

train_app = typer.Typer(
    help="Train the Fashion-MNIST models (cnn, lstm, gan, the gan's judge) or fine-tune an "
    "ImageNet classifier.",
    no_args_is_help=True,
)


@train_app.callback()
def _logging() -> None:
    """Log through rich unless the host program configured logging already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)]
        )


def _run(train: Callable[..., TrainResult], *args: object, **kwargs: object) -> TrainResult:
    """Run a trainer, turning the errors a user can fix into one logged sentence and exit 1."""
    try:
        return train(*args, **kwargs)
    except (DatasetNotFound, FileNotFoundError, ManifestError, ValueError) as exc:
        log.error("%s", exc)
        raise typer.Exit(code=1) from exc


@train_app.command()
def cnn(
    epochs: Epochs = 60,
    batch_size: BatchSize = 256,
    lr: Lr = 3e-3,
    seed: Seed = 0,
    device: Device = "auto",
    dataset: Dataset = DatasetName.fashion_mnist,
    data_dir: DataDir = Path("data"),
    out: Out = Path("models"),
    limit: Limit = None,
    erase: Erase = 0.25,
    ema_decay: EmaDecay = 0.999,
    quiet: Quiet = False,
) -> None:
    """Train the CNN classifier (AdamW + OneCycleLR, random erasing, the EMA of the weights of
    the best validation epoch kept): the defaults are the committed model's recipe."""
    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        dataset=dataset.value,
        data_dir=data_dir,
        out=out,
        limit=limit,
    )
    from app.training.classifiers import train_cnn

    _run(train_cnn, options, show_progress=not quiet, erase=erase, ema_decay=ema_decay or None)


@train_app.command()
def lstm(
    epochs: Epochs = 40,
    batch_size: BatchSize = 256,
    lr: Lr = 3e-3,
    seed: Seed = 0,
    device: Device = "auto",
    dataset: Dataset = DatasetName.fashion_mnist,
    data_dir: DataDir = Path("data"),
    out: Out = Path("models"),
    limit: Limit = None,
    erase: Erase = 0.25,
    ema_decay: EmaDecay = 0.999,
    readout: Annotated[
        LstmReadout,
        typer.Option(help="What the head reads: the last states, or those and the mean output."),
    ] = LstmReadout.last_mean,
    quiet: Quiet = False,
) -> None:
    """Train the bidirectional LSTM that reads an image row by row (AdamW + OneCycleLR, random
    erasing, the EMA of the weights kept): the defaults are the committed model's recipe."""
    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        dataset=dataset.value,
        data_dir=data_dir,
        out=out,
        limit=limit,
        extra_args={"readout": readout.value},
    )
    from app.training.classifiers import train_lstm

    _run(
        train_lstm,
        options,
        {"readout": readout.value},
        show_progress=not quiet,
        erase=erase,
        ema_decay=ema_decay or None,
    )


@train_app.command()
def gan(
    epochs: Epochs = 15,
    batch_size: BatchSize = 128,
    lr: Lr = 2e-4,
    seed: Seed = 0,
    device: Device = "auto",
    dataset: Dataset = DatasetName.fashion_mnist,
    data_dir: DataDir = Path("data"),
    out: Out = Path("models"),
    limit: Limit = None,
    judge: Annotated[
        Path | None,
        typer.Option(help="The cnn manifest that scores the GAN (default: OUT/cnn.json)."),
    ] = None,
    aux_weight: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of the auxiliary classifier's loss on the fakes (AC-GAN; 0: off).",
        ),
    ] = 1.0,
    quiet: Quiet = False,
) -> None:
    """Train the class-conditional GAN; needs the trained cnn to pick the best epoch."""
    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        dataset=dataset.value,
        data_dir=data_dir,
        out=out,
        limit=limit,
    )
    from app.training.gan import train_gan

    _run(train_gan, options, judge=judge, show_progress=not quiet, aux_weight=aux_weight)


@train_app.command()
def judge(
    epochs: Epochs = 8,
    batch_size: BatchSize = 256,
    lr: Lr = 3e-3,
    seed: Seed = 0,
    device: Device = "auto",
    data_dir: DataDir = Path("data"),
    out: Out = Path("models"),
    limit: Limit = None,
    erase: Erase = 0.0,
    ema_decay: EmaDecay = 0.0,
    quiet: Quiet = False,
) -> None:
    """Train the GAN's independent judge, a small ResNet unlike the served cnn (not served)."""
    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        data_dir=data_dir,
        out=out,
        limit=limit,
    )
    from app.training.classifiers import train_judge

    _run(train_judge, options, show_progress=not quiet, erase=erase, ema_decay=ema_decay or None)


@train_app.command("gan-judge")
def gan_judge(
    out: Out = Path("models"),
    judge: Annotated[Path | None, typer.Option(help="Default: OUT/judge.json.")] = None,
    data_dir: DataDir = Path("data"),
    per_class: Annotated[int, typer.Option(min=2, help="Generated images per class.")] = 500,
    seed: Annotated[int, typer.Option(help="Seeds the generator's noise.")] = 0,
) -> None:
    """Score the trained GAN with the independent judge: consistency and diversity per class."""
    from app.training.gan_judge import judge_gan

    try:
        judge_gan(out, judge, data_dir=data_dir, per_class=per_class, seed=seed)
    except (DatasetNotFound, FileNotFoundError, ManifestError, ValueError) as exc:
        log.error("%s", exc)
        raise typer.Exit(code=1) from exc


@train_app.command("gan-rejudge")
def gan_rejudge(
    out: Out = Path("models"),
    judge: Annotated[
        Path | None,
        typer.Option(help="The cnn manifest that scores the GAN (default: OUT/cnn.json)."),
    ] = None,
) -> None:
    """Score the trained GAN again with a retrained cnn; its weights stay as they are."""
    from app.training.gan_rejudge import rejudge_gan

    try:
        rejudge_gan(out, judge)
    except (FileNotFoundError, ManifestError, ValueError) as exc:
        log.error("%s", exc)
        raise typer.Exit(code=1) from exc


@train_app.command()
def finetune(
    model: Annotated[FinetuneModel, typer.Argument(help="The torchvision classifier.")],
    image_folder: Annotated[
        Path, typer.Option(exists=True, file_okay=False, help="ImageFolder root (train/, val/).")
    ],
    epochs: Epochs = 5,
    batch_size: BatchSize = 32,
    lr: Annotated[float, typer.Option(min=0.0, help="Backbone learning rate.")] = 1e-3,
    head_lr: Annotated[float, typer.Option(min=0.0, help="Classifier head learning rate.")] = 1e-2,
    seed: Seed = 0,
    device: Device = "auto",
    weights_dir: Annotated[
        Path | None,
        typer.Option(help="Pretrained weights, torch hub layout (default: the hub dir)."),
    ] = None,
    pretrained: Annotated[bool, typer.Option(help="Start from the ImageNet weights.")] = True,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    out: Out = Path("models"),
    limit: Limit = None,
    quiet: Quiet = False,
) -> None:
    """Fine-tune alexnet, vgg16 or resnet101 with separate backbone and head learning rates."""
    from app.training.finetune import finetune as finetune_model

    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        dataset=str(image_folder),
        out=out,
        limit=limit,
    )
    _run(
        finetune_model,
        model.value,
        image_folder,
        options,
        head_lr=head_lr,
        weights_dir=weights_dir,
        pretrained=pretrained,
        workers=workers,
        show_progress=not quiet,
    )
