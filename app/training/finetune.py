"""Fine-tune a torchvision ImageNet classifier on an ImageFolder dataset.

The pretrained backbone and the new classifier head get separate learning rates
(``SGD([{'params': backbone}, {'params': head, 'lr': head_lr}], lr=lr, momentum=0.9)``)
and the images go through the Weights enum's own preprocessing.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.hub import load_state_dict_from_url
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

from app.evaluation import evaluate_loader
from app.training.artifacts import build_manifest, save_checkpoint, write_manifest
from app.training.classifiers import TrainResult
from app.training.imagefolder import image_folder_splits
from app.training.options import TrainOptions, resolve_device, seed_everything
from app.training.plots import plot_curves
from app.training.progress import training_progress

__all__ = ["FINETUNABLE", "finetune", "split_parameters"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Finetunable:
    weights: models.WeightsEnum
    head: str  # attribute holding the classifier head; its last Linear is replaced


FINETUNABLE: dict[str, _Finetunable] = {
    "alexnet": _Finetunable(models.AlexNet_Weights.DEFAULT, "classifier"),
    "vgg16": _Finetunable(models.VGG16_Weights.DEFAULT, "classifier"),
    "resnet101": _Finetunable(models.ResNet101_Weights.DEFAULT, "fc"),
}


def _pretrained_state(weights: models.WeightsEnum, weights_dir: Path | None) -> dict[str, Any]:
    """The official weights from ``weights_dir`` (torch hub layout), downloaded if missing."""
    directory = weights_dir or Path(torch.hub.get_dir()) / "checkpoints"
    filename = weights.url.rsplit("/", 1)[-1]
    try:
        return load_state_dict_from_url(
            weights.url, model_dir=str(directory), map_location="cpu", weights_only=True
        )
    except Exception as exc:  # URLError/HTTPError offline, or a corrupt file
        raise FileNotFoundError(
            f"Pretrained weights {filename} are not in {directory} and could not be downloaded "
            f"({exc}); copy the file there or run `python -m app weights download`."
        ) from exc


def _replace_head(model: nn.Module, head: str, num_classes: int) -> nn.Module:
    module = getattr(model, head)
    if isinstance(module, nn.Linear):
        setattr(model, head, nn.Linear(module.in_features, num_classes))
    else:
        last = len(module) - 1
        module[last] = nn.Linear(module[last].in_features, num_classes)
    return getattr(model, head)


def split_parameters(model: nn.Module, head: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone, head) parameters; the head is the module named ``head``."""
    head_ids = {id(p) for p in getattr(model, head).parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return backbone, list(getattr(model, head).parameters())


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    step_losses: list[float],
    report: Callable[[str], None],
) -> tuple[float, float]:
    """One pass over ``loader``; returns the mean loss and accuracy, appends each step's loss."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        step_losses.append(loss.item())
        loss_sum += step_losses[-1] * y.numel()
        correct += int((logits.argmax(1) == y).sum())
        seen += y.numel()
        report(f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f}")
    return loss_sum / seen, correct / seen


def _command(
    model_name: str, image_folder: Path, options: TrainOptions, head_lr: float, pretrained: bool
) -> str:
    return (
        f"python -m app train finetune {model_name} --image-folder {image_folder} "
        f"--epochs {options.epochs} --batch-size {options.batch_size} --lr {options.lr:g} "
        f"--head-lr {head_lr:g} --seed {options.seed}"
        + ("" if pretrained else " --no-pretrained")
        + ("" if options.limit is None else f" --limit {options.limit}")
    )


def finetune(
    model_name: str,
    image_folder: Path,
    options: TrainOptions,
    head_lr: float = 0.01,
    weights_dir: Path | None = None,
    pretrained: bool = True,
    workers: int = 0,
    show_progress: bool = True,
) -> TrainResult:
    """Fine-tune ``model_name`` on ``image_folder``; writes ``<model>-finetuned.*`` into out.

    ``options.lr`` is the backbone's learning rate, ``head_lr`` the new head's. The
    epoch with the best validation accuracy is kept and scored once on ``test/``
    when the folder has one.
    """
    if model_name not in FINETUNABLE:
        raise ValueError(f"Cannot fine-tune {model_name!r}; choose one of {sorted(FINETUNABLE)}.")
    spec = FINETUNABLE[model_name]
    seed_everything(options.seed)
    device = resolve_device(options.device)
    preprocess = spec.weights.transforms()
    train_tf = transforms.Compose([transforms.RandomHorizontalFlip(), preprocess])
    train_ds, val_ds, test_ds, classes = image_folder_splits(
        Path(image_folder), options.seed, train_tf, preprocess
    )
    if options.limit is not None:
        train_ds = torch.utils.data.Subset(train_ds, range(min(options.limit, len(train_ds))))

    model = models.get_model(model_name, weights=None)
    if pretrained:
        model.load_state_dict(_pretrained_state(spec.weights, weights_dir))
    kwargs = {"num_classes": len(classes)}
    _replace_head(model, spec.head, len(classes))
    model.to(device)
    backbone, head = split_parameters(model, spec.head)
    optimizer = torch.optim.SGD(
        [{"params": backbone}, {"params": head, "lr": head_lr}],
        lr=options.lr,
        momentum=0.9,
        weight_decay=1e-4,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.epochs)
    rng = torch.Generator().manual_seed(options.seed)
    loader = DataLoader(
        train_ds,
        batch_size=options.batch_size,
        shuffle=True,
        generator=rng,
        num_workers=workers,
        drop_last=len(train_ds) > options.batch_size,
    )

    def evaluate(ds: Dataset) -> dict[str, Any]:
        model.eval()
        eval_loader = DataLoader(ds, batch_size=options.batch_size, num_workers=workers)
        return evaluate_loader(lambda x: model(x.to(device)), eval_loader, len(classes))

    history: dict[str, list[float | None]] = {
        "train_loss": [],
        "train_accuracy": [],
        "val_loss": [],
        "val_accuracy": [],
    }
    best_state, best_epoch, best_acc = None, 0, -1.0
    step_losses: list[float] = []
    start = time.perf_counter()
    with training_progress(show_progress) as progress:
        for epoch in range(1, options.epochs + 1):
            task = progress.add_task(
                f"epoch {epoch}/{options.epochs}", total=len(loader), metrics=""
            )
            loss, acc = _train_epoch(
                model,
                loader,
                optimizer,
                device,
                step_losses,
                lambda m, t=task: progress.update(t, advance=1, metrics=m),
            )
            schedule.step()
            val = evaluate(val_ds)
            history["train_loss"].append(loss)
            history["train_accuracy"].append(acc)
            history["val_loss"].append(val["loss"])
            history["val_accuracy"].append(val["accuracy"])
            log.info(
                "epoch %d/%d train_loss %.4f val_acc %.4f",
                epoch,
                options.epochs,
                loss,
                val["accuracy"],
            )
            if val["accuracy"] > best_acc:
                best_state, best_epoch, best_acc = (
                    copy.deepcopy(model.state_dict()),
                    epoch,
                    val["accuracy"],
                )
    wall = time.perf_counter() - start
    assert best_state is not None
    model.load_state_dict(best_state)
    test = evaluate(test_ds) if test_ds is not None else None

    name = f"{model_name}-finetuned"
    out = Path(options.out)
    checkpoint = out / f"{name}.pt"
    sha = save_checkpoint(best_state, checkpoint)
    manifest = build_manifest(
        name=name,
        model=model,
        kwargs=kwargs,
        checkpoint=checkpoint,
        sha256=sha,
        options=options,
        device=device,
        wall_time_s=wall,
        command=_command(model_name, image_folder, options, head_lr, pretrained),
        task="classification",
        base_model=model_name,
        pretrained=str(spec.weights) if pretrained else None,
        classes=classes,
        normalization={"mean": list(preprocess.mean), "std": list(preprocess.std)},
        transforms={
            "resize_size": list(preprocess.resize_size),
            "crop_size": list(preprocess.crop_size),
        },
        optimizer={
            "name": "SGD",
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "lr_backbone": options.lr,
            "lr_head": head_lr,
        },
        schedule={"name": "CosineAnnealingLR", "t_max_epochs": options.epochs},
        best_epoch=best_epoch,
        val_accuracy=best_acc,
        test_accuracy=None if test is None else test["accuracy"],
        test_top5=None if test is None else test.get("top5"),
        test_loss=None if test is None else test["loss"],
        test_n=None if test is None else test["n"],
        history=history,
    )
    # torchvision's builders take num_classes; the classes (e.g. VGG) do not all rebuild alone.
    manifest["architecture"] = {
        "module": "torchvision.models",
        "class": model_name,
        "kwargs": kwargs,
    }
    manifest_path = out / f"{name}.json"
    write_manifest(manifest, manifest_path)
    plot_curves(
        history, out / f"{name}-curves.png", f"{model_name} fine-tuned on {Path(image_folder).name}"
    )
    log.info("%s: best epoch %d, val_acc %.4f, wrote %s", name, best_epoch, best_acc, manifest_path)
    return TrainResult(manifest, manifest_path, history, step_losses)
