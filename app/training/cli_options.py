"""The options the `python -m app train ...` commands share: choices and typed typer options."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class DatasetName(StrEnum):
    fashion_mnist = "fashion-mnist"
    mnist = "mnist"


class LstmReadout(StrEnum):
    last = "last"
    last_mean = "last_mean"


class FinetuneModel(StrEnum):
    alexnet = "alexnet"
    vgg16 = "vgg16"
    resnet101 = "resnet101"


Epochs = Annotated[int, typer.Option(min=1, help="Passes over the training set.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per optimisation step.")]
Lr = Annotated[float, typer.Option(min=0.0, help="Peak learning rate.")]
Seed = Annotated[int, typer.Option(help="Seeds the split, the initialisation and the batches.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Dataset = Annotated[DatasetName, typer.Option(help="Training dataset.")]
DataDir = Annotated[Path, typer.Option(help="Where datasets are found or unpacked.")]
Out = Annotated[Path, typer.Option(help="Where checkpoint, manifest and plots are written.")]
Limit = Annotated[int | None, typer.Option(min=1, help="Use only this many training images.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bar (logs only).")]
Erase = Annotated[
    float, typer.Option(min=0.0, max=1.0, help="Random-erasing probability per image (0: off).")
]
EmaDecay = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=0.99999,
        help="Keep an EMA of the weights with this decay per step; it is validated, selected "
        "and saved (0: off, the raw weights are).",
    ),
]
