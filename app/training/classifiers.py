"""Train the Fashion-MNIST classifiers (cnn, lstm) and write their artifacts."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from app.datasets import NORMALIZATION, class_names
from app.evaluation import evaluate_classifier
from app.nets import FashionCNN, ResNetJudge, RowLSTM
from app.training.artifacts import (
    build_manifest,
    constructor_kwargs,
    load_net,
    save_checkpoint,
    write_manifest,
)
from app.training.data import load_split_data
from app.training.loops import LoopSettings, fit_classifier
from app.training.options import TrainOptions, resolve_device, seed_everything
from app.training.plots import plot_curves

__all__ = ["TrainResult", "image_rows", "train_cnn", "train_judge", "train_lstm"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a trainer wrote: the manifest (also on disk) and the per-epoch curves."""

    manifest: dict[str, Any]
    manifest_path: Path
    history: dict[str, list[float | None]]
    step_losses: list[float]


def image_rows(x: Tensor) -> Tensor:
    """[N, 1, 28, 28] images -> [N, 28, 28] sequences: row t is time step t."""
    return x[:, 0]


def _identity(x: Tensor) -> Tensor:
    return x


def _train_classifier(
    name: str,
    net: type[nn.Module],
    kwargs: dict[str, Any],
    adapt: Callable[[Tensor], Tensor],
    input_spec: dict[str, Any],
    settings: LoopSettings,
    options: TrainOptions,
    show_progress: bool,
) -> TrainResult:
    # The command that repeats the run names the loop's own options too.
    ema = 0.0 if settings.ema_decay is None else settings.ema_decay
    options = dataclasses.replace(
        options,
        extra_args={**options.extra_args, "erase": f"{settings.erase:g}", "ema-decay": f"{ema:g}"},
    )
    seed_everything(options.seed)
    device = resolve_device(options.device)
    data = load_split_data(options.dataset, options.data_dir, options.seed, options.limit)
    if options.dataset != "fashion-mnist":
        settings = dataclasses.replace(settings, flip=False)  # mirrored digits change meaning
    model = net(**kwargs)
    log.info(
        "Training %s (%d parameters) on %s, %d train / %d validation images",
        name,
        sum(p.numel() for p in model.parameters()),
        device,
        data.train[1].numel(),
        data.val[1].numel(),
    )
    start = time.perf_counter()
    fit = fit_classifier(
        model,
        data,
        epochs=options.epochs,
        batch_size=options.batch_size,
        lr=options.lr,
        seed=options.seed,
        device=device,
        adapt=adapt,
        settings=settings,
        show_progress=show_progress,
    )
    wall = time.perf_counter() - start

    out = Path(options.out)
    checkpoint = out / f"{name}.pt"
    sha = save_checkpoint(fit.best_state, checkpoint)
    # Score the file just written, rebuilt from scratch, so the manifest's figures are
    # exactly what an independent evaluation of the checkpoint reports.
    mean, std = NORMALIZATION[options.dataset]
    manifest = build_manifest(
        name=name,
        model=model,
        kwargs=kwargs,
        checkpoint=checkpoint,
        sha256=sha,
        options=options,
        device=device,
        wall_time_s=wall,
        task="classification",
        input=input_spec,
        classes=class_names(options.dataset),
        normalization={"mean": mean, "std": std},
        optimizer={"name": "AdamW", "weight_decay": settings.weight_decay},
        schedule={"name": "OneCycleLR", "max_lr": options.lr, "pct_start": 0.25},
        training={
            **dataclasses.asdict(settings),
            "train_size": data.train[1].numel(),
            "val_size": data.val[1].numel(),
        },
        selection=(
            "best validation accuracy of the weights"
            if settings.ema_decay is None
            else "best validation accuracy of the EMA of the weights, saved as the checkpoint"
        ),
        best_epoch=fit.best_epoch,
        val_accuracy=fit.best_val_accuracy,
    )
    manifest_path = out / f"{name}.json"
    write_manifest(manifest, manifest_path)
    rebuilt, _ = load_net(manifest_path)
    test = evaluate_classifier(lambda x: rebuilt(adapt(x)), *data.test, num_classes=10)
    manifest.update(
        test_accuracy=test["accuracy"],
        test_top5=test["top5"],
        test_loss=test["loss"],
        test_n=test["n"],
        test_per_class_accuracy=test["per_class_accuracy"],
        history=fit.history,
    )
    write_manifest(manifest, manifest_path)
    plot_curves(fit.history, out / f"{name}-curves.png", f"{name} on {options.dataset}")
    log.info(
        "%s: best epoch %d, val_acc %.4f, test_acc %.4f, %.0f s; wrote %s",
        name,
        fit.best_epoch,
        fit.best_val_accuracy,
        test["accuracy"],
        wall,
        manifest_path,
    )
    return TrainResult(manifest, manifest_path, fit.history, fit.step_losses)


_IMAGE_INPUT = {"shape": [1, 28, 28], "layout": "NCHW", "dtype": "float32", "normalized": True}


def train_cnn(
    options: TrainOptions,
    net_kwargs: dict[str, Any] | None = None,
    show_progress: bool = True,
    *,
    erase: float = 0.0,
    ema_decay: float | None = None,
) -> TrainResult:
    """Train :class:`FashionCNN` into ``<out>/cnn.pt`` + ``cnn.json`` + ``cnn-curves.png``.

    ``erase`` is the random-erasing probability; ``ema_decay`` keeps an EMA of the
    weights, which is then what is selected and saved.
    """
    kwargs = constructor_kwargs(FashionCNN, net_kwargs)
    return _train_classifier(
        "cnn",
        FashionCNN,
        kwargs,
        _identity,
        _IMAGE_INPUT,
        LoopSettings(label_smoothing=0.1, erase=erase, ema_decay=ema_decay),
        options,
        show_progress,
    )


def train_lstm(
    options: TrainOptions,
    net_kwargs: dict[str, Any] | None = None,
    show_progress: bool = True,
    *,
    erase: float = 0.0,
    ema_decay: float | None = None,
) -> TrainResult:
    """Train :class:`RowLSTM` (image rows as time steps) into ``<out>/lstm.*``."""
    kwargs = constructor_kwargs(RowLSTM, net_kwargs)
    return _train_classifier(
        "lstm",
        RowLSTM,
        kwargs,
        image_rows,
        {"shape": ["T", 28], "layout": "NTF", "max_T": 28, "dtype": "float32", "normalized": True},
        LoopSettings(
            label_smoothing=0.05,
            shift=1,
            grad_clip=1.0,
            channels_last=False,
            erase=erase,
            ema_decay=ema_decay,
        ),
        options,
        show_progress,
    )


def train_judge(
    options: TrainOptions,
    net_kwargs: dict[str, Any] | None = None,
    show_progress: bool = True,
    *,
    erase: float = 0.0,
    ema_decay: float | None = None,
) -> TrainResult:
    """Train :class:`ResNetJudge`, the GAN's independent judge, into ``<out>/judge.*``.

    The same loop and split as the cnn, but its own architecture and run: it is never
    served, only read by ``train gan-judge``.
    """
    kwargs = constructor_kwargs(ResNetJudge, net_kwargs)
    return _train_classifier(
        "judge",
        ResNetJudge,
        kwargs,
        _identity,
        _IMAGE_INPUT,
        LoopSettings(label_smoothing=0.1, erase=erase, ema_decay=ema_decay),
        options,
        show_progress,
    )
